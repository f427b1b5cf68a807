"""Whether the reader of our standard output has gone (``tts-ops discovery watch | head -1``).

A command that follows something (a watch, events) may have nothing to write for hours; a
write is how a pipe's writer learns that its reader left, so without looking it would
stay. The write end of a pipe whose reader closed reports POLLERR, which is what GNU tail
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
