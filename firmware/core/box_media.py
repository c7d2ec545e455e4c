"""The box's own media on a call: voicemail, what a waiting caller hears (ringback, position, the
callback offer), and the apology call of an expired callback.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING

from ..anchor import CallMedia
from ..callback import CallbackCall
from ..calls import Call, CallInfo, CallState
from ..legs import NobodyCalling
from ..media import sdp
from ..media.session import MediaSession
from ..routing.scheme import QueueSettings
from ..voicemail import (
    ApologyScript,
    LocalParty,
    PromptCall,
    QueueScript,
    Script,
    UnavailableScript,
    VoicemailScript,
    VoicemailSettings,
)
from .distribution import DepartmentCall, department_call

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


class BoxMedia:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def voicemail(self, call: Call, mailbox: str, now: float) -> None:
        """Answer the caller and take a message for `mailbox` (RFC 3264: our SDP answers the
        caller's offer; an INVITE without one gets our offer, answered in the ACK)."""
        script: Script = VoicemailScript(call_id=call.id, mailbox=mailbox,
                                         caller=call.info.caller, settings=VoicemailSettings())
        if self.core.storage_full:  # no room for a message: the caller is told so (issue 16)
            script = UnavailableScript()
        anchor = call.anchor
        if isinstance(anchor, CallMedia) and not anchor.bridged:
            # The caller already hears the box (the queue's early media): the same session
            # and the same SDP answer carry on into the 2xx (RFC 3261 §13.2.1).
            anchor.release_member_port()
            call.anchor = None
            party = anchor.party
            party.on_hang_up(call.hang_up_local)
            party.switch(script, now)
            LOGGER.info("call %s: voicemail for mailbox %s", call.id, mailbox)
            call.answer_locally(party, anchor.caller_answer, now)
            return
        self.answer(call, script, now, what=f"voicemail for mailbox {mailbox}")

    def answer(self, call: Call, script: Script, now: float, *, what: str) -> None:
        """The box answers the caller itself and runs `script` on the call (voicemail, a menu's
        greeting recorded by phone): our SDP answers the caller's offer; an INVITE without one
        gets our offer, answered in the ACK (RFC 3264)."""
        port = self.core.open_media_port()
        if port is None:
            call.fail(503, f"no media port for {what}", now, outcome="missed")
            return
        offer = call.caller.offer.body if call.caller.offer is not None else b""
        try:
            if offer:
                body, choice = sdp.answer(offer, host=self.core.local_host, port=port)
            else:
                body = sdp.offer(host=self.core.local_host, port=port)
                choice = sdp.awaiting_answer()
        except sdp.SdpError as exc:
            self.core.close_media(port)
            LOGGER.info("call %s: %s cannot take the caller's SDP: %s", call.id, what, exc)
            # RFC 3261 §21.4.26: no common format.
            call.fail(488, "no common audio format", now, outcome="missed")
            return
        party = self._local_party(port, choice, script, now, awaiting_answer=not offer)
        party.on_hang_up(call.hang_up_local)
        LOGGER.info("call %s: %s", call.id, what)
        if call.answer_locally(party, body, now) and offer:
            party.start(now)

    def start_queue_media(self, call: Call, settings: QueueSettings, now: float) -> None:
        """Early media for a caller who starts to wait: the box answers their offer in a 183
        and plays ringback, their position and the callback offer, hearing keys in the RTP
        (RFC 4733 or in-band). Without an offer, or without a common format, the caller hears
        plain ringing (180) as before."""
        anchor = call.anchor
        if (isinstance(anchor, CallMedia) and not anchor.bridged and not anchor.party.closed
                and settings.announce_s > 0 and not isinstance(anchor.party.script, QueueScript)):
            # The caller already hears the box (a voice menu): the queue takes it over.
            anchor.party.switch(self._queue_script(call, settings), now)
            return
        if settings.announce_s > 0:
            self.start_early_media(call, self._queue_script(call, settings), now)

    def start_early_media(self, call: Call, script: Script, now: float) -> bool:
        """The box answers the caller's offer in a 183 and runs `script` on it, holding the
        call's media from now on (firmware/anchor.py); False when it cannot (no offer, no
        common format, no free port, or the media is held already)."""
        offer = call.caller.offer.body if call.caller.offer is not None else b""
        if call.anchor is not None or not offer:
            return False
        port = self.core.open_media_port()
        member_port = self.core.open_media_port() if port is not None else None
        if port is None or member_port is None:
            if port is not None:
                self.core.close_media(port)
            return False
        try:
            body, choice = sdp.answer(offer, host=self.core.local_host, port=port)
        except sdp.SdpError as exc:
            self.core.close_media(port)
            self.core.close_media(member_port)
            LOGGER.info("call %s: no early media: %s", call.id, exc)
            return False
        party = self._local_party(port, choice, script, now)
        media = CallMedia(self.core, party, body, member_port=member_port)
        call.start_early_media(media, body, now)
        party.start(now)
        return True

    def _queue_script(self, call: Call, settings: QueueSettings) -> QueueScript:
        callback = settings.callback
        return QueueScript(
            position=partial(self._queue_position, call),
            callback_key=callback.key if callback is not None else None,
            on_key=partial(self._key_pressed_while_waiting, call),
            announce_s=settings.announce_s,
        )

    def _local_party(self, port: int, choice: sdp.AudioChoice, script: Script, now: float, *,
                     awaiting_answer: bool = False) -> LocalParty:
        """The box's end of a call on `port`, taking the datagrams that arrive there."""
        party = LocalParty(services=self.core,
                           session=MediaSession(local_port=port, choice=choice, now=now),
                           script=script, local_host=self.core.local_host,
                           awaiting_answer=awaiting_answer)
        self.core.route_media(port, party.receive)
        return party

    def _queue_position(self, call: Call) -> int | None:
        ctx = call.context
        waiting = (self.core.queues.get(ctx.department, []) if isinstance(ctx, DepartmentCall)
                   else [])
        if call.state != CallState.QUEUED or call not in waiting:
            return None
        return waiting.index(call) + 1

    def _key_pressed_while_waiting(self, call: Call, key: str, now: float) -> None:
        LOGGER.info("call %s: caller pressed %s while waiting (RTP)", call.id, key)
        self.core.edge.key_while_waiting(call, key, now)

    def apologise(self, callback: CallbackCall, now: float) -> None:
        """The callback request expired: ring the customer, apologise, and offer to take a
        message for the department."""
        leg, channel = self.core.callbacks.customer_leg(callback)
        if leg is None:
            return
        call_id = uuid.uuid4().hex
        port = self.core.open_media_port()
        if port is None:
            if channel is not None:
                self.core.channels.release([channel])
            return
        ctx = department_call(callback)
        info = callback.info
        party = self._local_party(
            port, sdp.awaiting_answer(), ApologyScript(VoicemailScript(
                call_id=call_id, mailbox=ctx.department, caller=callback.customer,
                settings=VoicemailSettings(), greet=False)),
            now, awaiting_answer=True)
        call = PromptCall(
            services=self.core, caller=NobodyCalling(), key=f"apology:{call_id}", id=call_id,
            signalling_id=callback.signalling_id, started_at=now,
            info=CallInfo(direction="callback", source="apology", caller=info.caller,
                          dialed=info.dialed, number=info.number, department=ctx.department),
            local=party, local_side="b",
            local_answer=sdp.offer(host=self.core.local_host, port=port),
            caller_id=info.number or info.dialed, origin_call_id=callback.origin_call_id,
        )
        party.on_hang_up(call.hang_up_local)
        if channel is not None:
            call.channels.append(channel)
        self.core.calls[call.key] = call
        LOGGER.info("callback %s expired: calling %s to apologise", callback.origin_call_id,
                    callback.customer)
        ring_s = self.core.callbacks.callback_settings(callback).customer_ring_s
        call.ring_legs([leg], ring_s, now)
