"""Fake modems on pseudo-terminals that answer like the devices, quirks included (for tests and
`linebox dev fake-modem`)."""
