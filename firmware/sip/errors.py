"""Exceptions of the SIP stack: one root, split by whose fault the problem is.

A peer's malformed or unacceptable message raises `RemoteProtocolError` carrying the status code the
transport should answer with (RFC 3261 §8.2, §21.4); our own misuse of the API raises
`LocalProtocolError`, which is always a bug in Linebox.
"""

from __future__ import annotations


class SipError(Exception):
    """Root of every error raised by `firmware.sip`."""


class RemoteProtocolError(SipError):
    """The peer sent something we cannot accept.

    `status_hint` is the response code to send when the offending message is a request
    (400 Bad Request unless a more specific code applies, e.g. 505 for a wrong SIP version).
    Responses that raise this are silently discarded (RFC 3261 §18.1.2).
    """

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class LocalProtocolError(SipError):
    """Linebox itself tried to do something the protocol or the state machine forbids."""
