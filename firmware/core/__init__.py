"""The gateway core, a room per concern: see docs/design.md."""

from .gateway import Gateway
from .lookups import WebhookRequested
from .records import CallRecorder, MemoryRecorder

__all__ = ["CallRecorder", "Gateway", "MemoryRecorder", "WebhookRequested"]
