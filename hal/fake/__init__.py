"""Fake modems on pseudo-terminals that answer like the devices, quirks included (tests, `linebox dev fake-modem`)."""
