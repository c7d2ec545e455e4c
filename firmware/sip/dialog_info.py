"""The dialog event package's body (RFC 4235): what a busy lamp is told of one extension.

`DialogView` is one dialog of the watched extension as the notifier describes it (RFC 4235
§4.1: its identifiers, state, direction, and the two parties); `dialog_info_xml` renders a
full-state `application/dialog-info+xml` document of such views. Pure data to bytes: no
transactions, no timers, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"

# RFC 4235 §3.7.1: the states a dialog element may report.
DIALOG_STATES = frozenset({"trying", "proceeding", "early", "confirmed", "terminated"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogView:
    """One dialog of the watched entity (RFC 4235 §4.1.1). `local_tag` is the watched
    phone's own tag, `remote_tag` the other end's (the box's), as a phone needs them for an
    INVITE with Replaces (RFC 3891) that picks a ringing call up."""

    id: str
    state: str
    direction: str | None = None  # "initiator" | "recipient" (§4.1.1)
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    local_identity: str | None = None
    remote_identity: str | None = None
    remote_display: str | None = None

    def __post_init__(self) -> None:
        if self.state not in DIALOG_STATES:
            raise ValueError(f"not a dialog state: {self.state!r}")

    def terminated(self) -> DialogView:
        """The same dialog, ended (§3.7.1: a dialog leaves through `terminated`)."""
        return DialogView(
            id=self.id, state="terminated", direction=self.direction, call_id=self.call_id,
            local_tag=self.local_tag, remote_tag=self.remote_tag,
            local_identity=self.local_identity, remote_identity=self.remote_identity,
            remote_display=self.remote_display,
        )


def _attributes(pairs: list[tuple[str, str | None]]) -> str:
    return "".join(f" {name}={quoteattr(value)}" for name, value in pairs if value is not None)


def _dialog_xml(view: DialogView) -> str:
    attrs = _attributes([
        ("id", view.id), ("call-id", view.call_id), ("local-tag", view.local_tag),
        ("remote-tag", view.remote_tag), ("direction", view.direction),
    ])
    # §4.1.1 schema order: state, then local, then remote.
    parts = [f"  <dialog{attrs}>", f"    <state>{escape(view.state)}</state>"]
    if view.local_identity is not None:
        parts += ["    <local>",
                  f"      <identity>{escape(view.local_identity)}</identity>",
                  f"      <target uri={quoteattr(view.local_identity)}/>",
                  "    </local>"]
    if view.remote_identity is not None:
        display = _attributes([("display", view.remote_display)])
        parts += ["    <remote>",
                  f"      <identity{display}>{escape(view.remote_identity)}</identity>",
                  f"      <target uri={quoteattr(view.remote_identity)}/>",
                  "    </remote>"]
    parts.append("  </dialog>")
    return "\n".join(parts)


def dialog_info_xml(entity: str, version: int, dialogs: list[DialogView]) -> bytes:
    """A full-state dialog-info document (§4.1: `state="full"`, `version` counting from 0 per
    subscription, §4.1.2); no dialog element says the entity is idle."""
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<dialog-info xmlns={quoteattr(NAMESPACE)} version=\"{version}\" "
            f"state=\"full\" entity={quoteattr(entity)}>")
    body = [head, *(_dialog_xml(view) for view in dialogs), "</dialog-info>", ""]
    return "\n".join(body).encode("utf-8")
