"""The registrar for the office's phones (RFC 3261 §10.3): bindings of extension → contacts.

Pure: each call takes `now`. Authentication happens before `register` is called; this module only
applies §10.3 steps 2–8 to an authenticated REGISTER and builds the 200 (or 400/423/500) answer.
Bindings live in memory and are kept in the database too (issue 16): the registrar notes which
extensions' bindings changed (`take_changed`), the daemon writes their `rows` in its recorder
thread, and a restart `restore`s the live ones at once — as Asterisk keeps them in its astdb —
instead of leaving every phone unreachable, and a stranger to the rate limiter, until its next
REGISTER.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .sip.errors import RemoteProtocolError
from .sip.message import Request, Response, make_response
from .sip.transaction import Address
from .sip.uri import NameAddr, SipUri, parse_name_addr

LOGGER = logging.getLogger(__name__)

MIN_EXPIRES_S = 60
MAX_EXPIRES_S = 3600
DEFAULT_EXPIRES_S = 3600
MAX_CONTACTS_PER_AOR = 10


@dataclass(slots=True, kw_only=True)
class Binding:
    extension: str
    contact: NameAddr
    contact_text: str  # the URI as the phone wrote it: bindings compare on it (§10.3 step 6)
    expires_at: float
    call_id: str
    cseq: int
    source: Address
    user_agent: str
    registered_at: float

    @property
    def destination(self) -> Address:
        """Where requests for this binding go.

        The Contact's address, over the Contact's transport — unless the Contact names another
        host than the packet came from: then the phone is behind NAT and only its public source
        address (and, over TCP, its own connection) reaches it (Asterisk's nat=force_rport,
        RFC 5626's connection reuse).
        """
        uri = self.contact.uri
        if not isinstance(uri, SipUri) or uri.host != self.source.host:
            return self.source
        transport = uri.params.get("transport")
        transport = transport.lower() if transport else self.source.transport
        default_port = 5061 if transport == "tls" else 5060
        return Address(transport=transport, host=uri.host, port=uri.port or default_port)


class Registrar:
    def __init__(
        self,
        *,
        min_expires_s: int = MIN_EXPIRES_S,
        max_expires_s: int = MAX_EXPIRES_S,
        default_expires_s: int = DEFAULT_EXPIRES_S,
    ) -> None:
        self.min_expires_s = min_expires_s
        self.max_expires_s = max_expires_s
        self.default_expires_s = default_expires_s
        self._bindings: dict[str, list[Binding]] = {}
        self._hosts: set[str] | None = None  # cache of registered source hosts
        # Cache of (extension, transport, host, port) of live bindings' sources.
        self._sources: set[tuple[str, str, str, int]] | None = None
        self._changed: set[str] = set()  # extensions whose bindings changed since take_changed

    @staticmethod
    def check_aor(request: Request) -> None:
        """§10.3 step 4-5: the To header must name a sip/sips AOR (RFC 4475 unksm2)."""
        if not isinstance(request.to.uri, SipUri):
            raise RemoteProtocolError("address-of-record must be a sip or sips URI")

    def register(
        self, request: Request, extension: str, source: Address, now: float, *, to_tag: str
    ) -> Response:
        """Apply an authenticated REGISTER for `extension`; return the response to send."""
        self.check_aor(request)
        header_expires = request.expires
        current = [b for b in self._bindings.get(extension, []) if b.expires_at > now]
        call_id, cseq = request.call_id, request.cseq.seq
        if request.is_wildcard_contact:
            # §10.3 step 6: "*" only with Expires: 0, and it removes every binding.
            if header_expires != 0 or len(request.headers.get_list("Contact")) != 1:
                raise RemoteProtocolError("Contact * requires Expires: 0 and no other contact")
            for binding in current:
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return make_response(request, 500, "Out of order CSeq", to_tag=to_tag)
            self._bindings.pop(extension, None)
            self._hosts = self._sources = None
            self._changed.add(extension)
            LOGGER.info("extension %s unregistered every contact", extension)
            return self._ok(request, extension, now, to_tag=to_tag)
        updates: list[tuple[str, NameAddr, int]] = []
        for contact in request.contacts:
            expires = self._requested_expires(contact, header_expires)
            if 0 < expires < self.min_expires_s:
                return make_response(
                    request, 423, to_tag=to_tag,
                    headers=[("Min-Expires", str(self.min_expires_s))],
                )
            updates.append((str(contact.uri), contact, min(expires, self.max_expires_s)))
        by_uri = {b.contact_text: b for b in current}
        user_agent = request.headers.get("User-Agent") or ""
        for contact_text, contact, expires in updates:
            existing = by_uri.get(contact_text)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                # §10.3 step 7: same Call-ID and a CSeq not higher: the update is aborted.
                return make_response(request, 500, "Out of order CSeq", to_tag=to_tag)
            if expires == 0:
                by_uri.pop(contact_text, None)
                continue
            by_uri[contact_text] = Binding(
                extension=extension, contact=contact, contact_text=contact_text,
                expires_at=now + expires, call_id=call_id, cseq=cseq, source=source,
                user_agent=user_agent,
                registered_at=existing.registered_at if existing else now,
            )
        if len(by_uri) > MAX_CONTACTS_PER_AOR:
            return make_response(request, 403, "Too many contacts", to_tag=to_tag)
        if by_uri:
            self._bindings[extension] = list(by_uri.values())
        else:
            self._bindings.pop(extension, None)
        self._hosts = self._sources = None
        self._changed.add(extension)
        return self._ok(request, extension, now, to_tag=to_tag)

    def _requested_expires(self, contact: NameAddr, header_expires: int | None) -> int:
        value = contact.params.get("expires")
        if value is not None:
            if not value.isdigit():
                raise RemoteProtocolError(f"bad expires parameter {value!r}")
            return int(value)
        if header_expires is not None:
            return header_expires
        return self.default_expires_s

    def _ok(self, request: Request, extension: str, now: float, *, to_tag: str) -> Response:
        # §10.3 step 8: the 200 lists every current binding with its remaining lifetime.
        headers = [
            ("Contact", f"<{b.contact_text}>;expires={max(0, int(b.expires_at - now))}")
            for b in self.bindings(extension, now)
        ]
        return make_response(request, 200, to_tag=to_tag, headers=headers)

    def bindings(self, extension: str, now: float) -> list[Binding]:
        return [b for b in self._bindings.get(extension, []) if b.expires_at > now]

    def is_registered(self, extension: str, now: float) -> bool:
        return bool(self.bindings(extension, now))

    def all_bindings(self, now: float) -> list[Binding]:
        return [b for bs in self._bindings.values() for b in bs if b.expires_at > now]

    def registered_hosts(self) -> set[str]:
        """Source hosts of live bindings as of the last `expire` (trusted by the rate limiter)."""
        if self._hosts is None:
            self._hosts = {b.source.host for bs in self._bindings.values() for b in bs}
        return self._hosts

    def is_binding_source(self, source: Address, extension: str | None = None) -> bool:
        """Whether `source` is exactly where a registered phone (of `extension`, if given)
        sends from, as of the last `expire`: such a phone is served even while its address is
        banned for someone else's guessing behind the same NAT."""
        if self._sources is None:
            self._sources = {
                (ext, b.source.transport, b.source.host, b.source.port)
                for ext, bs in self._bindings.items() for b in bs
            }
            # The same without the extension, for "any phone's source" in one look-up.
            self._sources.update(("", *key[1:]) for key in list(self._sources))
        return (extension or "", source.transport, source.host, source.port) in self._sources

    def expire(self, now: float) -> list[Binding]:
        """Drop expired bindings; returns them (for logging)."""
        gone: list[Binding] = []
        for extension in list(self._bindings):
            keep: list[Binding] = []
            for binding in self._bindings[extension]:
                (keep if binding.expires_at > now else gone).append(binding)
            if len(keep) == len(self._bindings[extension]):
                continue
            self._changed.add(extension)
            if keep:
                self._bindings[extension] = keep
            else:
                del self._bindings[extension]
        if gone:
            self._hosts = self._sources = None
        return gone

    def forget(self, extension: str) -> None:
        """The extension was removed from the configuration."""
        self._bindings.pop(extension, None)
        self._hosts = self._sources = None
        self._changed.add(extension)

    # ------------------------------------------------------------------ kept across restarts
    def take_changed(self) -> set[str]:
        """Extensions whose bindings changed since the last call (to write them down)."""
        changed, self._changed = self._changed, set()
        return changed

    def rows(self, extension: str, wall_offset_s: float) -> list[dict[str, object]]:
        """`extension`'s bindings as rows of the `registrations` table, times in wall-clock
        seconds (this module's `now` + `wall_offset_s`)."""
        return [
            {"extension": b.extension, "contact_text": b.contact_text,
             "contact": str(b.contact), "expires_at": b.expires_at + wall_offset_s,
             "call_id": b.call_id, "cseq": b.cseq, "source_transport": b.source.transport,
             "source_host": b.source.host, "source_port": b.source.port,
             "user_agent": b.user_agent, "registered_at": b.registered_at + wall_offset_s}
            for b in self._bindings.get(extension, [])
        ]

    def restore(self, rows: list[dict[str, object]], now: float, wall_offset_s: float) -> int:
        """Take back bindings kept before a restart (`rows` as `rows` made them; times
        wall-clock, `now` + `wall_offset_s` is the wall time now). Expired ones and rows that
        no longer parse are skipped; how many were taken."""
        taken = 0
        for row in rows:
            try:
                expires_at = float(str(row["expires_at"])) - wall_offset_s
                if expires_at <= now:
                    continue
                binding = Binding(
                    extension=str(row["extension"]),
                    contact=parse_name_addr(str(row["contact"])),
                    contact_text=str(row["contact_text"]), expires_at=expires_at,
                    call_id=str(row["call_id"]), cseq=int(str(row["cseq"])),
                    source=Address(str(row["source_transport"]), str(row["source_host"]),
                                   int(str(row["source_port"]))),
                    user_agent=str(row["user_agent"]),
                    registered_at=float(str(row["registered_at"])) - wall_offset_s,
                )
            except (RemoteProtocolError, ValueError, KeyError) as exc:
                LOGGER.warning("kept registration of %s not restored: %s",
                               row.get("extension"), exc)
                continue
            current = [b for b in self._bindings.get(binding.extension, [])
                       if b.contact_text != binding.contact_text]
            if len(current) >= MAX_CONTACTS_PER_AOR:
                continue
            self._bindings[binding.extension] = [*current, binding]
            taken += 1
        self._hosts = self._sources = None
        return taken
