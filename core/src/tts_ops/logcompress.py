"""``python -m tts_ops.logcompress FILE``: gzip a rotated log file next to itself, atomically.

Writes a new temp file, fsyncs, renames it to ``FILE.gz``, then removes ``FILE``; an
interruption leaves ``FILE`` intact (readers may briefly see both, never neither).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys


def compress(path: str) -> None:
    from tts_ops.statefile import atomic_file, open_nofollow

    src_fd = open_nofollow(path, os.O_RDONLY)
    mode = os.fstat(src_fd).st_mode & 0o777
    name = os.path.basename(path)
    with os.fdopen(src_fd, "rb") as src, atomic_file(path + ".gz", mode) as raw, \
            gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.unlink(path)


if __name__ == "__main__":
    # background work: it runs only on a CPU nothing else wants, never at the expense of
    # the services whose logs these are (SCHED_IDLE; nice 19 where that is refused)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    for name in sys.argv[1:]:
        try:
            compress(name)
        except (FileNotFoundError, PermissionError):
            pass  # gone, or not a file we may read: leave it as it is
