"""tts-ops-manual: supervision with no init system, one small supervisor per service.

Registers the ``manual`` process backend through the ``tts_ops_register_backends`` hook.
"""

from __future__ import annotations

from tts_ops import hookimpl

__version__ = "0.1.0"


@hookimpl
def tts_ops_register_backends(register) -> None:
    from tts_ops_manual.backend import ManualBackend

    register.add("manual", ManualBackend)
