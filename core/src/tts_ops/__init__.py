"""tts-ops: deploy, supervise, discover and roll out a text-to-speech HTTP service.

A plugin needs one import::

    from tts_ops import hookimpl

`hookimpl` is resolved lazily so that `tts-ops --version` and the manual backend's
supervisor process never pay for importing pluggy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from tts_ops.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'tts_ops' has no attribute {name!r}")
