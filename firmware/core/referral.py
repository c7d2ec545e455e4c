"""The REFER side of a transfer (RFC 3515): what a REFER names (its one Refer-To, an embedded
Replaces for an attended transfer, RFC 3891 §7.1), and the implicit subscription that tells
the referrer how it goes — NOTIFYs with `Event: refer` and a `message/sipfrag` body, `SIP/2.0
100 Trying` first, then the final status (§2.4.4–2.4.5) — after which the referrer is hung up
unless it left by itself (RFC 5589 §6.1). Shared by blind (transfer.py) and attended
(attended.py) transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..calls import Call
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from ..sip.message import Request, Response
from ..sip.transaction import Address, new_branch
from ..sip.uri import OtherUri, SipUri, parse_name_addr
from ..sip_legs import SipCaller, SipLeg
from .modem_lines import ModemCaller

if TYPE_CHECKING:
    from ..calls import Timer
    from .gateway import Gateway

SIPFRAG = "message/sipfrag;version=2.0"
# How long the implicit subscription lasts (RFC 3515 §2.4.4 lets the notifier choose).
SUBSCRIPTION_S = 60
# After the final NOTIFY the referrer usually hangs up itself (RFC 5589 §6.1); if it has not
# within this time, the box sends the BYE.
REFERRER_BYE_GRACE_S = 2.0
NOT_TRANSFERABLE = "This call cannot be transferred"

SipParty = SipCaller | SipLeg
Transferee = SipCaller | SipLeg | ModemCaller


def via_header(core: Gateway, destination: Address) -> str:
    return (f"SIP/2.0/{destination.transport.upper()} {core.local_host}:{core.local_port};"
            f"branch={new_branch()};rport")

def refer_target(request: Request) -> str:
    """The user part of the one Refer-To URI (RFC 3515 §2.4.1: exactly one, else 400); an
    attended transfer's embedded Replaces is refused by the caller of this function."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise RemoteProtocolError("REFER needs exactly one Refer-To", status_hint=400)
    uri = parse_name_addr(values[0]).uri
    user = uri.user_unescaped if isinstance(uri, SipUri | OtherUri) else None
    if not user:
        raise RemoteProtocolError("Refer-To names no number", status_hint=400)
    return user

def embeds_replaces(request: Request) -> bool:
    value = request.headers.get("Refer-To") or ""
    uri = parse_name_addr(value).uri
    return isinstance(uri, SipUri) and "replaces=" in uri.headers.lower()

def embedded_replaces(request: Request) -> str:
    """The Replaces header embedded in the Refer-To URI (RFC 3515 §2.1, RFC 3891 §7.1: an
    escaped URI header, `?Replaces=callid%3Bto-tag%3D...%3Bfrom-tag%3D...`)."""
    uri = parse_name_addr(request.headers.get("Refer-To") or "").uri
    headers = uri.headers if isinstance(uri, SipUri) else ""
    for header in headers.split("&"):
        name, _, value = header.partition("=")
        if name.strip().lower() == "replaces":
            return unquote(value)
    return ""

@dataclass(eq=False, slots=True, kw_only=True)
class Referral:
    """One REFER: the referrer's dialog (for the NOTIFYs), and what became of it."""

    core: Gateway
    referrer: SipParty
    target: str
    notify: bool = True  # False with `Refer-Sub: false` (RFC 4488)
    final_status: int | None = None
    referrer_gone: bool = False
    bye_timer: Timer | None = None

    @property
    def dialog(self) -> Dialog:
        assert self.referrer.dialog is not None
        return self.referrer.dialog

    def send_notify(self, status: int, reason: str, now: float) -> None:
        """A NOTIFY with the target's progress as a sipfrag status line (RFC 3515 §2.4.5)."""
        final = status >= 200
        if not self.notify or self.referrer_gone:
            return
        state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_S}"
        notify = self.dialog.create_request(
            "NOTIFY", via=via_header(self.core, self.referrer.destination),
            headers=[("Event", "refer"), ("Subscription-State", state),
                     ("Content-Type", SIPFRAG), ("User-Agent", self.core.user_agent)],
            body=f"SIP/2.0 {status} {reason}\r\n".encode())
        self.core.send_request(notify, self.referrer.destination, now,
                               on_response=_ignore_response, on_timeout=_ignore_timeout)

    def finished(self, status: int, reason: str, now: float) -> None:
        """The target answered or failed: the final NOTIFY, then the referrer is hung up
        unless it does that itself within the grace time."""
        if self.final_status is not None:
            return
        self.final_status = status
        self.send_notify(status, reason, now)
        if not self.referrer_gone:
            self.bye_timer = self.core.call_at(now + REFERRER_BYE_GRACE_S, self.hang_up_referrer)

    def hang_up_referrer(self, now: float) -> None:
        if self.referrer_gone:
            return
        self.referrer_gone = True
        self.referrer.hang_up(now)
        self.core.transfer.forget(self)

    def referrer_hung_up(self, now: float) -> None:
        self.referrer_gone = True
        if self.bye_timer is not None:
            self.bye_timer.cancel()
        self.core.transfer.forget(self)

def _ignore_response(tx: str, response: Response, now: float) -> None:
    pass

def _ignore_timeout(tx: str, now: float) -> None:
    pass

REASONS = {480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
            603: "Decline", 408: "Request Timeout", 404: "Not Found", 503: "Service Unavailable"}

def transferee_number(call: Call, transferee: Transferee) -> str:
    """The number of an answered leg (the outside number or the extension it rang)."""
    if isinstance(transferee, SipLeg):
        return transferee.label
    return call.info.dialed


def unwrapped(party: object) -> object:
    """The party itself behind a `TransferredParty` (transfer.py): a call transferred once is
    transferred again with the party it wraps."""
    return getattr(party, "wrapped", party)
