"""The gateway core, a room per concern: see docs/design.md."""

from .events import Event, WebhookRequested
from .gateway import Gateway
from .records import CallRecorder, MemoryRecorder, write_record

__all__ = ["CallRecorder", "Event", "Gateway", "MemoryRecorder", "WebhookRequested", "write_record"]
