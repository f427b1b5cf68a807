"""`App`: the name the CLI gives the core's `tts_ops.runtime.Runtime` (click passes it to
each command as ``ctx.obj``); the commands are a thin shell over it."""

from tts_ops.runtime.core import Runtime as App
from tts_ops.runtime.core import unknown_service

__all__ = ["App", "unknown_service"]
