"""The entry point of tts-ops-manual: registers the ``manual`` backend.

Kept apart from the package ``__init__`` so that the supervisor process
(``python -m tts_ops_manual.supervise``) never imports pluggy.
"""

from __future__ import annotations

from tts_ops import hookimpl


def _manual(context):
    from tts_ops_manual.backend import ManualBackend  # imported only when used

    return ManualBackend(context)


@hookimpl
def tts_ops_register_backends(register) -> None:
    register.add("manual", _manual, auto_order=30)  # needs nothing: tried last
