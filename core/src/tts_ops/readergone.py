"""Whether the reader of our standard output has gone (``tts-ops ... | head -4``).

A command may have nothing to write for a long time (a watch, a deploy draining for 30 s);
a write is how a pipe's writer learns that its reader left, so without looking it would go
on. The write end of a pipe whose reader closed reports POLLERR, which is what GNU tail
checks too. A terminal, a file or an in-process runner never does.
"""

from __future__ import annotations

import select
import sys


def output_gone() -> bool:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
