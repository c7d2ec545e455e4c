"""Which fake device `linebox dev fake-modem KIND` makes: one line per kind of modem.

A kind's factory takes keyword arguments `link` (a by-id style symlink to create, or None) and,
for GSM modems, `imei`; what it returns starts with start(), stops with stop() and names the
port a client opens in `port` (and `audio_port` when voice travels on a second port).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .gsm import FakeHuawei, FakeQuectel, FakeSimcom
from .v253 import FakeV253Modem

FAKE_MODEMS: dict[str, Callable[..., Any]] = {
    "huawei": FakeHuawei,
    "quectel": FakeQuectel,
    "simcom": FakeSimcom,
    "v253": FakeV253Modem,
}
