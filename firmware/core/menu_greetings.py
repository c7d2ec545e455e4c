"""A voice menu's greeting recorded by phone: an extension allowed by `site.greeting_recorders`
dials the greeting code and the menu's number (`*97` + `1`); the box answers and says "1 to
record, 2 to listen, 3 to save" (firmware/ivr.py `GreetingRecordingScript`). Saving hands the
recording to the daemon as `MenuGreetingRecorded`, which stores it exactly as a web UI upload
(the greeting `menu:NAME`) and tells the call how it went (`saved`). Others are refused with 403
(RFC 3261 §21.4.4: understood, not allowed), the refusal logged.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from ..callerid import display_name
from ..calls import Call, CallInfo
from ..ivr import GreetingRecordingScript
from ..routing.menu import GREETING_CODE, Menu, by_number, greeting_key
from ..sip.message import Request
from ..sip.transaction import Address
from ..voicemail import LocalParty
from .events import MenuGreetingRecorded

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

# The same limit as a greeting uploaded in the web UI (webui/voicemail.py GREETING_MAX_S) and
# what the daemon plays of one (firmware/daemon.py MAX_GREETING_S).
GREETING_MAX_S = 120.0


class MenuGreetings:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self._saving: dict[str, Call] = {}  # call id → the call waiting for the store

    def on_invite(self, tx_id: str, request: Request, source: Address, caller: str,
                  dialed: str, now: float) -> bool:
        """A phone's INVITE to the greeting code; False when `dialed` is something else."""
        if not dialed.startswith(GREETING_CODE):
            return False
        number = dialed.removeprefix(GREETING_CODE)
        menu = by_number(self.core.config.menus, number)
        if menu is None:
            self.core.reply(tx_id, request, 404, now, reason=f"No menu number {number}")
            return True
        if caller not in self.core.config.site.greeting_recorders:
            LOGGER.warning("extension %s may not record the greeting of menu %s (not in "
                           "site.greeting_recorders): refused", caller, menu.name)
            self.core.reply(tx_id, request, 403, now, reason="Not allowed to record greetings")
            return True
        info = CallInfo(direction="internal", source="sip", caller=caller, dialed=dialed,
                        display=display_name(request.from_.display))
        call = self.core.new_sip_call(tx_id, request, source, info, [], now)
        script = GreetingRecordingScript(menu=menu.name, current=self.core.menus.greeting(menu),
                                         max_s=GREETING_MAX_S,
                                         on_save=partial(self._save, call, menu))
        LOGGER.info("extension %s records the greeting of menu %s", caller, menu.name)
        self.core.box_media.answer(call, script, now, what=f"greeting of menu {menu.name}")
        return True

    def _save(self, call: Call, menu: Menu, pcm: bytes, now: float) -> None:
        self._saving[call.id] = call
        self.core.emit(MenuGreetingRecorded(call_id=call.id, menu=menu.name,
                                            key=greeting_key(menu.name), pcm=pcm,
                                            wall_time=now + self.core.wall_offset_s))

    def saved(self, call_id: str, ok: bool, now: float) -> None:
        """The daemon stored the greeting (`ok`) or could not: the caller hears which."""
        call = self._saving.pop(call_id, None)
        local = call.local if call is not None else None
        if isinstance(local, LocalParty) and isinstance(local.script, GreetingRecordingScript):
            local.script.saved(local, ok)
