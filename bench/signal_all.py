"""The least any ``stop --all`` of the manual backend can take: no tts-ops import, no config,
no records. SIGTERM every supervisor named in ``STATE/manual/*/status.json``, then wait on
their pidfds until each has exited (``python bench/signal_all.py STATE``). Standard library
only, so its time is Python's start plus the supervisors' own exits."""

from __future__ import annotations

import json
import os
import select
import signal
import sys


def main(state: str) -> int:
    root = os.path.join(state, "manual")
    waiting = select.poll()
    left = 0
    for name in sorted(os.listdir(root)):
        try:
            with open(os.path.join(root, name, "status.json"), "rb") as fh:
                pid = json.load(fh).get("supervisor_pid")
            if not isinstance(pid, int) or pid <= 0:
                continue
            fd = os.pidfd_open(pid)
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        waiting.register(fd, select.POLLIN)
        left += 1
    while left:
        for fd, _event in waiting.poll():
            waiting.unregister(fd)
            os.close(fd)
            left -= 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
