"""The core's runtime: one `Runtime` per config and state dir (`tts_ops.runtime.core`), and
the model of what runs for a service (`tts_ops.runtime.model`). Imports no click."""

from tts_ops.runtime.core import Runtime
from tts_ops.runtime.model import Generation, Instance, Service

__all__ = ["Generation", "Instance", "Runtime", "Service"]
