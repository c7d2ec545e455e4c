"""Busy lamps (issue 14): a phone SUBSCRIBEs to an extension's dialog state (RFC 4235 over
RFC 6665) and is NOTIFYed of it — idle, ringing (`early`, with what a pickup needs), talking
(`confirmed`), ended (`terminated`) — with refresh, expiry and unsubscribing on stepped time."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from firmware.core.presence import MAX_EXPIRES_S, MIN_EXPIRES_S
from firmware.sip.auth import build_authorization, choose_challenge
from firmware.sip.message import Request, Response, make_response
from tests.core.network import (
    GATEWAY,
    PASSWORDS,
    SLOW_DID,
    TIMEOUT_S,
    Office,
    Peer,
    authorised_call,
    request,
)

NS = {"d": "urn:ietf:params:xml:ns:dialog-info"}
WATCHED = "103"  # department 400 (SLOW_DID) rings 103 alone


@dataclass
class Lamp:
    """A BLF key of `phone` for extension `extension`: one subscription dialog."""

    phone: Peer
    extension: str
    call_id: str = field(default_factory=lambda: f"blf-{secrets.token_hex(6)}@phone")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    to_tag: str | None = None
    cseq: int = 0

    def _build(self, expires: int, event: str, authorization: str | None) -> Request:
        self.cseq += 1
        to = f"<sip:{self.extension}@{GATEWAY.host}>"
        if self.to_tag is not None:
            to += f";tag={self.to_tag}"
        address = self.phone.address
        headers = [
            ("Via", self.phone.via()), ("Max-Forwards", "70"),
            ("From", f"<sip:{self.phone.user}@{GATEWAY.host}>;tag={self.from_tag}"),
            ("To", to), ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} SUBSCRIBE"),
            ("Contact", f"<sip:{self.phone.user}@{address.host}:{address.port}>"),
            ("Event", event), ("Accept", "application/dialog-info+xml"),
            ("Expires", str(expires)),
        ]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        return request("SUBSCRIBE", f"sip:{self.extension}@{GATEWAY.host}", headers)

    def subscribe(self, expires: int = 600, *, event: str = "dialog",
                  password: str | None = None, authenticate: bool = True) -> Response:
        """SUBSCRIBE (a new one, or inside the subscription once it has a To tag), answering
        the digest challenge; the final response."""
        self.phone.send(self._build(expires, event, None))
        response = self.last_response()
        if response.status != 401 or not authenticate:
            return response
        chosen = choose_challenge(response.headers.get_all("WWW-Authenticate"))
        assert chosen is not None
        uri = f"sip:{self.extension}@{GATEWAY.host}"
        authorization = build_authorization(
            chosen, method="SUBSCRIBE", uri=uri, username=self.phone.user,
            password=password or PASSWORDS[self.phone.user], cnonce=secrets.token_hex(4), nc=1,
        )
        self.phone.send(self._build(expires, event, authorization))
        response = self.last_response()
        if response.status == 200 and self.to_tag is None:
            self.to_tag = response.to.tag
        return response

    def last_response(self) -> Response:
        return [r for r in self.phone.responses("SUBSCRIBE") if r.call_id == self.call_id][-1]

    def notifies(self) -> list[Request]:
        return [n for n in self.phone.requests("NOTIFY") if n.call_id == self.call_id]

    def states(self) -> list[list[str]]:
        """Per NOTIFY, the states of its dialog elements ([] = idle)."""
        return [[d.findtext("d:state", namespaces=NS) or "" for d in dialogs(n)]
                for n in self.notifies()]


def dialogs(notify: Request) -> list[ET.Element]:
    return ET.fromstring(notify.body).findall("d:dialog", NS)


def watching(o: Office, phone: str = "101", extension: str = WATCHED) -> Lamp:
    lamp = Lamp(o.phones[phone], extension)
    assert lamp.subscribe().status == 200
    return lamp


def test_a_subscription_is_answered_200_and_notified_at_once_as_idle(o: Office) -> None:
    lamp = Lamp(o.phones["101"], WATCHED)
    response = lamp.subscribe(expires=600)
    assert response.status == 200
    assert response.headers.get("Expires") == "600"
    assert response.to.tag and response.headers.get("Contact")
    (notify,) = lamp.notifies()
    assert notify.headers.get("Event") == "dialog"
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    assert notify.headers.get("Content-Type") == "application/dialog-info+xml"
    assert notify.from_.tag == response.to.tag and notify.to.tag == lamp.from_tag
    document = ET.fromstring(notify.body)
    assert (document.get("version"), document.get("state"), document.get("entity")) == (
        "0", "full", f"sip:{WATCHED}@{GATEWAY.host}")
    assert dialogs(notify) == []


def test_a_call_ringing_the_extension_is_early_with_what_a_pickup_needs(o: Office) -> None:
    lamp = watching(o)
    o.provider.call(SLOW_DID)
    ringing = o.phones[WATCHED].ringing_invite()
    phone_tag = o.phones[WATCHED].incoming[ringing.top_via.branch or ""].tag
    assert lamp.states()[-1] == ["early"]
    (dialog,) = dialogs(lamp.notifies()[-1])
    assert dialog.get("direction") == "recipient"
    assert (dialog.get("call-id"), dialog.get("local-tag"), dialog.get("remote-tag")) == (
        ringing.call_id, phone_tag, ringing.from_.tag)
    identity = dialog.findtext("d:remote/d:identity", namespaces=NS)
    assert identity == f"sip:{o.provider.user}@{GATEWAY.host}"


def test_a_phone_that_has_not_rung_yet_leaves_the_lamp_idle(o: Office) -> None:
    lamp = watching(o)
    phone = o.phones[WATCHED]
    phone.rings = False
    o.provider.call(SLOW_DID)
    assert lamp.states() == [[]]
    phone.reply(phone.ringing_invite(), 180)
    assert lamp.states() == [[], ["early"]]


def test_answered_is_confirmed_and_hanging_up_terminated_then_idle(o: Office) -> None:
    lamp = watching(o)
    invite = o.provider.call(SLOW_DID)
    o.phones[WATCHED].answer()
    assert lamp.states()[-1] == ["confirmed"]
    o.provider.bye(invite)
    assert lamp.states()[-1] == ["terminated"]
    versions = [ET.fromstring(n.body).get("version") for n in lamp.notifies()]
    assert versions == [str(v) for v in range(len(versions))]
    assert all((n.headers.get("Subscription-State") or "").startswith("active")
               for n in lamp.notifies())
    # The next change reports the extension idle: the ended call is not repeated.
    o.provider.call(SLOW_DID)
    o.phones[WATCHED].decline_busy()
    assert lamp.states()[-2:] == [["early"], ["terminated"]]


def test_a_call_the_extension_places_shows_busy_not_ringing(o: Office) -> None:
    lamp = watching(o, extension="102")
    authorised_call(o.phones["102"], "103")
    (dialog,) = dialogs(lamp.notifies()[-1])
    assert dialog.findtext("d:state", namespaces=NS) == "confirmed"
    assert dialog.get("direction") == "initiator"
    assert dialog.findtext("d:remote/d:identity", namespaces=NS) == f"sip:103@{GATEWAY.host}"


def test_two_lamps_on_one_extension_both_hear_and_unchanged_state_sends_nothing(
    o: Office,
) -> None:
    first, second = watching(o, "101"), watching(o, "102")
    o.net.advance(5)
    assert (len(first.notifies()), len(second.notifies())) == (1, 1)
    o.provider.call(SLOW_DID)
    assert first.states()[-1] == second.states()[-1] == ["early"]


def test_a_refresh_is_answered_with_the_state_and_moves_the_expiry(o: Office) -> None:
    lamp = watching(o)
    o.net.advance(500)
    assert lamp.subscribe(expires=600).status == 200
    assert len(lamp.notifies()) == 2
    assert lamp.notifies()[-1].headers.get("Subscription-State") == "active;expires=600"
    o.net.advance(200)  # past the first expiry (600 s)
    assert all((n.headers.get("Subscription-State") or "").startswith("active")
               for n in lamp.notifies())
    o.provider.call(SLOW_DID)
    assert lamp.states()[-1] == ["early"]


def test_without_a_refresh_the_subscription_expires_with_reason_timeout(o: Office) -> None:
    lamp = watching(o)
    lamp.subscribe(expires=120)
    o.net.advance(119)
    count = len(lamp.notifies())
    o.net.advance(2)
    (final,) = lamp.notifies()[count:]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    o.provider.call(SLOW_DID)
    assert len(lamp.notifies()) == count + 1
    assert o.net.gateway.presence.subscriptions == {}


def test_expires_are_bounded_too_short_is_423(o: Office) -> None:
    lamp = Lamp(o.phones["101"], WATCHED)
    too_short = lamp.subscribe(expires=MIN_EXPIRES_S - 1)
    assert too_short.status == 423
    assert too_short.headers.get("Min-Expires") == str(MIN_EXPIRES_S)
    assert lamp.subscribe(expires=MAX_EXPIRES_S * 10).headers.get("Expires") == str(
        MAX_EXPIRES_S)


def test_unsubscribing_sends_a_final_terminated_notify(o: Office) -> None:
    lamp = watching(o)
    response = lamp.subscribe(expires=0)
    assert (response.status, response.headers.get("Expires")) == (200, "0")
    final = lamp.notifies()[-1]
    assert (final.headers.get("Subscription-State") or "").startswith("terminated")
    o.provider.call(SLOW_DID)
    assert lamp.notifies()[-1] is final
    assert o.net.gateway.presence.subscriptions == {}


def test_a_refresh_of_an_unknown_subscription_is_481(o: Office) -> None:
    lamp = Lamp(o.phones["101"], WATCHED, to_tag="nosuchtag")
    assert lamp.subscribe().status == 481
    assert lamp.notifies() == []


def test_another_event_package_is_489_with_the_ones_supported(o: Office) -> None:
    lamp = Lamp(o.phones["101"], WATCHED)
    response = lamp.subscribe(event="message-summary")
    assert response.status == 489
    assert response.headers.get("Allow-Events") == "dialog"


def test_an_unknown_extension_is_404(o: Office) -> None:
    lamp = Lamp(o.phones["101"], "999")
    assert lamp.subscribe().status == 404
    assert lamp.notifies() == []


def test_without_credentials_a_subscription_is_challenged_and_nothing_notified(
    o: Office,
) -> None:
    lamp = Lamp(o.phones["101"], WATCHED)
    response = lamp.subscribe(authenticate=False)
    assert response.status == 401 and response.headers.get("WWW-Authenticate")
    assert lamp.subscribe(password="wrong-password").status == 403
    assert lamp.notifies() == []


def test_a_notify_answered_481_ends_the_subscription(o: Office) -> None:
    lamp = watching(o)
    phone = o.phones["101"]
    phone.silent = True
    o.provider.call(SLOW_DID)
    notify = lamp.notifies()[-1]
    phone.send(make_response(notify, 481))
    assert o.net.gateway.presence.subscriptions == {}
    phone.silent = False
    o.phones[WATCHED].answer()
    assert lamp.notifies()[-1] is notify


def test_a_notify_nobody_answers_ends_the_subscription_after_timer_f(o: Office) -> None:
    lamp = watching(o)
    o.phones["101"].silent = True
    o.provider.call(SLOW_DID)
    o.net.advance(TIMEOUT_S + 1)
    assert o.net.gateway.presence.subscriptions == {}
    assert lamp.states()[-1] == ["early"]


CALLER_SDP = (b"v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
              b"m=audio 50000 RTP/AVP 0\r\n")
PICKER_SDP = (b"v=0\r\no=picker 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\n"
              b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")


def press_lamp(phone: Peer, extension: str, replaces: str) -> Response:
    """The phone's INVITE with Replaces (RFC 3891) to the lamp's extension, answering the
    digest challenge; the last response."""
    extra = [("Replaces", replaces), ("Require", "replaces")]
    return authorised_call(phone, extension, sdp=PICKER_SDP, extra=extra)[1]


def replaces_of(notify: Request) -> str:
    """What a Yealink puts in Replaces from the lamp's early dialog: call-id, to-tag = the
    dialog's remote-tag, from-tag = its local-tag."""
    (dialog,) = dialogs(notify)
    return (f"{dialog.get('call-id')};to-tag={dialog.get('remote-tag')};"
            f"from-tag={dialog.get('local-tag')}")


def test_a_press_on_a_ringing_lamp_picks_the_call_up_with_replaces(o: Office) -> None:
    lamp = watching(o)
    invite = o.provider.call(SLOW_DID, sdp=CALLER_SDP)
    response = press_lamp(o.phones["101"], WATCHED, replaces_of(lamp.notifies()[-1]))
    assert response.status == 200
    assert response.body == invite.body  # the caller's offer reaches the picker
    assert o.provider.outgoing[-1].answer is not None
    assert o.provider.outgoing[-1].answer.body == PICKER_SDP  # and the picker's the caller
    assert o.phones[WATCHED].requests("CANCEL"), "the ringing phone stops ringing"
    assert o.net.calls()[0]["answered_by"] == "101"
    assert lamp.states()[-1] == ["terminated"]


def test_a_press_naming_no_ringing_dialog_is_481_and_a_talking_one_486(o: Office) -> None:
    lamp = watching(o)
    assert press_lamp(o.phones["101"], WATCHED, "nosuchcall;to-tag=a;from-tag=b").status == 481
    o.provider.call(SLOW_DID, sdp=CALLER_SDP)
    replaces = replaces_of(lamp.notifies()[-1])
    o.phones[WATCHED].answer()
    # Pressed too late: the call was answered meanwhile (the same tags as while it rang).
    assert press_lamp(o.phones["101"], WATCHED, replaces).status == 486
    assert press_lamp(o.phones["101"], WATCHED, replaces_of(lamp.notifies()[-1])).status == 486
    assert o.net.calls()[0]["answered_by"] == WATCHED


def test_options_and_405_say_subscribe_is_allowed(o: Office) -> None:
    phone = o.phones["101"]
    phone.send(request("OPTIONS", f"sip:{GATEWAY.host}", [
        ("Via", phone.via()), ("Max-Forwards", "70"),
        ("From", f"<sip:101@{GATEWAY.host}>;tag=opt"), ("To", f"<sip:{GATEWAY.host}>"),
        ("Call-ID", "options-blf"), ("CSeq", "1 OPTIONS"),
    ]))
    answer = phone.responses("OPTIONS")[-1]
    assert "SUBSCRIBE" in (answer.headers.get("Allow") or "")
    assert answer.headers.get("Allow-Events") == "dialog"
