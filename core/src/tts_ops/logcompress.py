"""``python -m tts_ops.logcompress FILE``: gzip a rotated log file next to itself, atomically.

Writes ``FILE.gz.tmp``, fsyncs, renames to ``FILE.gz``, then removes ``FILE``; an
interruption leaves ``FILE`` intact (readers may briefly see both, never neither).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys


def compress(path: str) -> None:
    tmp = path + ".gz.tmp"
    mode = os.stat(path).st_mode & 0o777
    with open(path, "rb") as src, open(tmp, "wb") as raw:
        os.fchmod(raw.fileno(), mode)
        with gzip.GzipFile(filename=os.path.basename(path), mode="wb", fileobj=raw,
                           compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path + ".gz")
    os.unlink(path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        try:
            compress(name)
        except FileNotFoundError:
            pass
