"""How a command that follows something (a watch, events, a log) ends when nobody stops it
with Ctrl-C: its reader leaves, or it is sent SIGTERM.

SIGTERM (``kill``, ``systemctl stop``, ``timeout``): by default Python dies of it without a
word or its cleanup. `end_on_sigterm` makes it end the command as Ctrl-C does (the same
``finally`` blocks, streams shut down), then say ``tts-ops: terminated`` and exit 143;
`following` wraps a command's loop: Ctrl-C ends it quietly, SIGTERM with that line.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM to a following command: everything that cleans up after Ctrl-C runs."""


def end_on_sigterm() -> None:
    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    try:
        signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (an in-process runner): default behaviour
        pass


@contextlib.contextmanager
def following(sigterm: bool = True) -> Iterator[None]:
    """Around the loop of a command that runs until it is stopped: Ctrl-C is how one stops
    it, so it ends quietly; SIGTERM (when ``sigterm``) ends it with its one line."""
    if sigterm:
        end_on_sigterm()
    try:
        yield
    except Terminated:
        raise
    except KeyboardInterrupt:
        pass
