"""Voice menus on a call: the box answers the caller's SDP in a 183 and speaks the menu as early
media (RFC 3960 §3.1, as the queue does), so the caller pays nothing while choosing; the choice
routes the call as a number's destination would — a department, an employee, voicemail, an
external number through a line, another menu — on the same anchored media, so the member who
answers is bridged to the caller (firmware/anchor.py).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from ..anchor import CallMedia
from ..calls import Call, CallState
from ..ivr import MenuScript, RingbackScript
from ..routing.menu import HANGUP, Menu, greeting_key, menu_name
from ..routing.scheme import voicemail_box

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

# A chain of menus entered without the caller pressing anything is refused by the configuration;
# this bounds it anyway (a webhook may name a menu too).
MAX_MENUS_PER_CALL = 50


class Menus:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self._entered: dict[str, int] = {}  # call id → menus entered

    def by_name(self, name: str) -> Menu | None:
        return next((m for m in self.core.config.menus if m.name == name), None)

    def is_menu(self, destination: str) -> bool:
        name = menu_name(destination)
        return name is not None and self.by_name(name) is not None

    def enter(self, call: Call, destination: str, now: float) -> None:
        """Play the menu `destination` (`menu:NAME`) to the caller."""
        name = menu_name(destination) or ""
        menu = self.by_name(name)
        if menu is None:
            call.fail(404, f"no menu {name}", now, outcome="failed")
            return
        entered = self._entered.get(call.id, 0) + 1
        self._entered[call.id] = entered
        if entered > MAX_MENUS_PER_CALL:
            call.fail(482, "menus lead round in a loop", now, outcome="failed")
            return
        script = MenuScript(menu=menu, greeting=self.greeting(menu), targets=self._targets(),
                            on_choice=partial(self._chosen, call))
        call.info.department = None
        LOGGER.info("call %s: menu %s", call.id, menu.name)
        anchor = call.anchor
        if isinstance(anchor, CallMedia) and not anchor.bridged and not anchor.party.closed:
            # Already hearing the box (a menu, a queue): the same early media goes on.
            anchor.party.switch(script, now)
            return
        if not self.core.box_media.start_early_media(call, script, now):
            # No SDP to answer (a late offer) or no port: a menu cannot be heard, so the
            # call goes where the menu sends callers who choose nothing.
            LOGGER.warning("call %s: menu %s cannot be played; taking its timeout action",
                           call.id, menu.name)
            self._route(call, menu.then or menu.timeout, now)

    def greeting(self, menu: Menu) -> list[tuple[str, bytes]]:
        """The office's recording for the menu, else its built-in prompts in order."""
        uploaded = self.core.greeting(greeting_key(menu.name))
        if uploaded:
            return [("uploaded", uploaded)]
        return [(name, self.core.prompt(name)) for name in menu.greeting]

    def _targets(self) -> set[str]:
        """What a caller may dial directly: the office's extensions and departments."""
        return set(self.core.extensions) | set(self.core.departments)

    def key(self, call: Call, key: str, now: float) -> bool:
        """A key from SIP INFO (RFC 6086) for a call in a menu; False if it is in none."""
        anchor = call.anchor
        if not isinstance(anchor, CallMedia) or anchor.bridged or anchor.party.closed:
            return False
        if not isinstance(anchor.party.script, MenuScript):
            return False
        anchor.party.key_pressed(key, now)
        return True

    def _chosen(self, call: Call, destination: str, now: float) -> None:
        if call.state in (CallState.ANSWERED, CallState.ENDED):
            return
        self._route(call, destination, now)

    def _route(self, call: Call, destination: str, now: float) -> None:
        if destination == HANGUP:
            call.fail(480, "no choice made in the menu", now, outcome="missed")
            return
        if menu_name(destination) is not None:
            self.enter(call, destination, now)
            return
        anchor = call.anchor
        if (voicemail_box(destination) is None and isinstance(anchor, CallMedia)
                and not anchor.bridged and not anchor.party.closed):
            # While the choice rings, the caller hears ringback on the same early media; a
            # queue replaces it with its own announcements.
            anchor.party.switch(RingbackScript(), now)
        exclude = frozenset({call.info.caller}) if call.info.direction == "internal" else (
            frozenset())
        self.core.distribution.route_internal(call, destination, exclude=exclude, now=now)

    def call_ended(self, call: Call) -> None:
        self._entered.pop(call.id, None)
