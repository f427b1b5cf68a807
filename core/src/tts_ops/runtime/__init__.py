"""The core's runtime: one `Runtime` per config and state dir (`tts_ops.runtime.core`), and
the model of what runs for a service (`tts_ops.runtime.model`). Imports no click.

Names load on first use (PEP 562): ``status`` imports only what it reads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Generation", "Instance", "Runtime", "Service"]
_WHERE = {"Runtime": "tts_ops.runtime.core", "Generation": "tts_ops.runtime.model",
          "Instance": "tts_ops.runtime.model", "Service": "tts_ops.runtime.model"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"tts_ops.runtime has no name {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime as Runtime
    from tts_ops.runtime.model import Generation as Generation
    from tts_ops.runtime.model import Instance as Instance
    from tts_ops.runtime.model import Service as Service
