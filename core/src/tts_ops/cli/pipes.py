"""How a command that follows something (a watch, events, a log) ends when nobody stops it
with Ctrl-C: its reader leaves, or it is sent SIGTERM.

Whether the reader of our standard output has gone (``tts-ops discovery watch | head -1``):
such a command may have nothing to write for hours; a write is how a pipe's writer learns
that its reader left, so without looking it would stay. The write end of a pipe whose
reader closed reports POLLERR, which is what GNU tail checks too. A terminal, a file or an
in-process runner never does.

SIGTERM (``kill``, ``systemctl stop``, ``timeout``): by default Python dies of it without a
word or its cleanup. `end_on_sigterm` makes it end the command as Ctrl-C does (the same
``finally`` blocks, streams shut down), then say ``tts-ops: terminated`` and exit 143;
`following` wraps a command's loop: Ctrl-C ends it quietly, SIGTERM with that line.
"""

from __future__ import annotations

import contextlib
import select
import signal
import sys
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


def output_gone() -> bool:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
