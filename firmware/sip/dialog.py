"""SIP dialogs (RFC 3261 §12): the state two user agents share for the life of a call.

A `Dialog` is built from the request and response that establish it (§12.1.1 as UAS, §12.1.2
as UAC), builds the requests we send within it (§12.2.1.1: CSeq, tags, route set with loose or
strict routing) and checks the requests the peer sends within it (§12.2.2: CSeq order, target
refresh). It is pure data plus rules: no transactions, no timers, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError
from .message import Headers, Request, Response
from .uri import MAX_CSEQ, NameAddr, SipUri, Uri

MAX_FORWARDS = 70  # §8.1.1.6

# Requests that may change the remote target (§12.2: INVITE and UPDATE; RFC 6665 §4.1.2 and
# §4.1.3 make SUBSCRIBE and NOTIFY target refreshes, RFC 3515 §2.4.2 REFER).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

# URI parameters a Request-URI may not carry (§19.1.1, table 1): "method" only makes sense in a
# URI used for redirection.
_NOT_IN_REQUEST_URI = frozenset({"method"})

DialogId = tuple[str, str, str | None]


def _without_tag(address: NameAddr) -> NameAddr:
    if "tag" not in address.params:
        return address
    params = {k: v for k, v in address.params.items() if k != "tag"}
    return NameAddr(display=address.display, uri=address.uri, params=params)


def _contact_uri(message: Request | Response, what: str) -> Uri:
    contacts = message.contacts
    if not contacts:
        raise RemoteProtocolError(f"{what} without Contact cannot establish a dialog")
    return contacts[0].uri


@dataclass(slots=True, kw_only=True, eq=False)
class Dialog:
    """The dialog state of §12: identity, sequence numbers, remote target and route set."""

    call_id: str
    local_tag: str
    remote_tag: str | None  # None when an RFC 2543 peer sent no tag (§12.1.1, §12.1.2)
    local_uri: NameAddr  # our From (To in what the peer sends), without the tag
    remote_uri: NameAddr  # the peer's, without the tag
    remote_target: Uri  # from the peer's Contact
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0  # 0: empty (§12.1.1); the next request we send uses local_seq + 1
    remote_seq: int | None = None
    secure: bool = False
    local_contact: str = ""

    @classmethod
    def as_uas(cls, request: Request, *, local_tag: str, local_contact: str) -> Dialog:
        """The dialog a UAS creates when it answers `request` with a 1xx/2xx carrying
        `local_tag` in To (§12.1.1)."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            # An RFC 2543 client may leave Contact out (RFC 4475 §3.4.1 inv2543); its From
            # address is then where requests reach it, as RFC 2543 §6.13 had it.
            remote_target=(
                _contact_uri(request, request.method) if request.headers.get("Contact")
                else request.from_.uri
            ),
            route_set=list(request.record_routes),  # §12.1.1: in order
            remote_seq=request.cseq.seq,
            local_contact=local_contact,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, *, local_contact: str) -> Dialog:
        """The dialog a UAC creates from a 1xx (with To tag) or 2xx to `request` (§12.1.2)."""
        local_tag = request.from_.tag
        if local_tag is None:
            raise LocalProtocolError("a request we sent has no From tag")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=response.to.tag,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            remote_target=_contact_uri(response, f"{response.status} response"),
            route_set=list(reversed(response.record_routes)),  # §12.1.2: reversed
            local_seq=request.cseq.seq,
            local_contact=local_contact,
        )

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- requests we send (§12.2.1.1) ----------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A new request within the dialog; takes the next local CSeq number.

        `via` is the complete top Via value with a fresh branch (the transport knows sent-by).
        """
        if method == "ACK":
            raise LocalProtocolError("an ACK reuses the INVITE's CSeq: use create_ack")
        if method == "CANCEL":
            raise LocalProtocolError("a CANCEL copies the INVITE (§9.1): use make_cancel")
        if self.local_seq >= MAX_CSEQ:
            raise LocalProtocolError("local CSeq exhausted")  # §8.1.1.5: below 2**31
        self.local_seq += 1
        request = self._build(method, self.local_seq, via, headers, body)
        if method in TARGET_REFRESH_METHODS and self.local_contact:
            request.headers.add("Contact", self.local_contact)
        return request

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """The ACK for a 2xx to our INVITE (§13.2.2.4): same CSeq number as the INVITE, new
        branch, routed like any request of the dialog; the local CSeq does not move."""
        return self._build("ACK", invite_cseq, via, headers, body)

    def _build(
        self,
        method: str,
        seq: int,
        via: str,
        extra: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Request:
        request_uri, routes = self._routing()
        out = Headers()
        out.add("Via", via)
        out.add("Max-Forwards", str(MAX_FORWARDS))
        for route in routes:
            out.add("Route", route)
        out.add("From", str(self.local_uri.with_params(tag=self.local_tag)))
        remote = self.remote_uri
        if self.remote_tag is not None:
            remote = remote.with_params(tag=self.remote_tag)
        out.add("To", str(remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{seq} {method}")
        for name, value in extra:
            out.add(name, value)
        return Request(method, request_uri, out, body)

    def _routing(self) -> tuple[Uri, list[str]]:
        """Request-URI and Route values (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and "lr" in first.uri.params:
            # Loose routing: the remote target stays in the Request-URI.
            return self.remote_target, [str(route) for route in self.route_set]
        # Strict routing: the first route becomes the Request-URI (stripped of parameters not
        # allowed there) and the remote target goes last in Route.
        request_uri = first.uri
        if isinstance(request_uri, SipUri):
            params = {
                k: v for k, v in request_uri.params.items() if k not in _NOT_IN_REQUEST_URI
            }
            request_uri = dataclasses.replace(request_uri, params=params, headers="")
        routes = [str(route) for route in self.route_set[1:]]
        routes.append(f"<{self.remote_target}>")
        return request_uri, routes

    # --- what the peer sends ---------------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Check and absorb a request the peer sent within this dialog (§12.2.2).

        Raises `RemoteProtocolError(status_hint=500)` for a request out of order.
        """
        if request.method in ("ACK", "CANCEL"):
            return  # they carry the CSeq number of the INVITE they belong to
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} lower than {self.remote_seq}: out of order", status_hint=500
            )
        self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS:
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    def update_from_response(self, response: Response) -> None:
        """A 2xx to our target refresh replaces the remote target with its Contact (§12.2.1.2)."""
        if not 200 <= response.status < 300:
            return
        if response.cseq.method not in TARGET_REFRESH_METHODS:
            return
        contacts = response.contacts
        if contacts:
            self.remote_target = contacts[0].uri


def dialog_id_of(message: Request | Response, *, incoming: bool) -> DialogId:
    """(Call-ID, local tag, remote tag) of the dialog `message` belongs to (§12).

    `incoming` says whether we received it. In a request the sender's tag is in From; in a
    response, the tag of the side that sent the request is in From. Raises when the local tag is
    missing: the message is not within a dialog (check `to.tag` of a new request first).
    """
    ours_in_to = isinstance(message, Request) == incoming
    local, remote = (message.to, message.from_) if ours_in_to else (message.from_, message.to)
    if local.tag is None:
        if incoming:
            raise RemoteProtocolError(
                "message without our tag is not within a dialog", status_hint=481
            )
        raise LocalProtocolError("a message we send within a dialog lacks our tag")
    return (message.call_id, local.tag, remote.tag)
