"""The owner's questions answered from the office's own calls (issue 17).

- `history`: a department's recorded period, read from the store.
- `behaviour`: who answers how fast (Kaplan–Meier over every ring), callers' patience, talk.
- `replay`: the period replayed through the routing core (strategies.plan, AgentBook) under a
  variant's settings, with a simulated clock and a seed.
- `variants`: `key=value` changes applied to the configuration and checked by its own parser.
- `summary`: each variant over 20 seeds, figures with their 5–95 % spread.
- `erlang`, `sizing`: Erlang B channels and Erlang C agents from the busy hour.
- `cli`: `linebox whatif` and `linebox sizing`.
"""
