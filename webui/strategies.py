"""The distribution strategies as the office knows them: a name and one plain sentence each."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

# In the order the department form lists them.
STRATEGY_CHOICES: tuple[tuple[str, LazyString, LazyString], ...] = (
    ("ring_all", _l("All at once"),
     _l("Every free phone rings together; the first to answer takes the call.")),
    ("longest_idle", _l("Evenly"),
     _l("The manager who has gone longest without a call rings first, then the next.")),
    ("round_robin", _l("In turn"),
     _l("Managers take turns; the next call starts after whoever was offered the last one.")),
    ("in_order", _l("In order"),
     _l("Phones ring one after another in the list's order, each for its own ring time.")),
    ("cascading", _l("Cascading"),
     _l("Phones are added one by one every few seconds; earlier ones keep ringing.")),
    ("by_rank", _l("By qualification"),
     _l("The best-ranked free manager first (rank set by hand or from sales conversion).")),
    ("tiers", _l("Qualification tiers"),
     _l("All of tier 1 ring together; after the tier's time tier 2 joins, and so on.")),
    ("weighted", _l("By percentage"),
     _l("Calls are shared out exactly by the weights you set, e.g. 50 / 30 / 20.")),
    ("least_talk_time", _l("Least talk time"),
     _l("The manager who has talked least today rings first.")),
    ("fewest_calls", _l("Fewest calls"),
     _l("The manager who has answered fewest calls today rings first.")),
    ("random", _l("Random"), _l("A random free manager rings first.")),
    ("skills", _l("By skills"),
     _l("Managers with the skills the call needs (e.g. a language) ring first, then the rest.")),
)
STRATEGY_NAMES = {value: name for value, name, _ in STRATEGY_CHOICES}
