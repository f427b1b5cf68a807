"""Reading log files written by `RotatingLogWriter`: tail across rotations, and follow.

Rotated files may be plain or gzipped; a file that is compressed while we read it is
looked for again under its ``.gz`` name.
"""

from __future__ import annotations

import gzip
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from tts_ops.logwriter import rotated_files


def open_log(path: Path):
    """Open a live, rotated or gzipped log file for binary reading."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        gz = path.with_name(path.name + ".gz")
        if gz.exists():
            return gzip.open(gz, "rb")
        raise


def all_files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the live file (if it exists)."""
    files = rotated_files(path)
    if path.exists():
        files.append(path)
    return files


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines across the live file and as many rotated ones as needed."""
    if lines <= 0:
        return []
    found: deque[str] = deque(maxlen=lines)
    chunks: list[list[str]] = []
    need = lines
    for file in reversed(all_files(path)):
        try:
            with open_log(file) as fh:
                last = deque((raw.decode("utf-8", "replace").rstrip("\n") for raw in fh),
                             maxlen=need)
        except (FileNotFoundError, OSError, EOFError):
            continue
        chunks.append(list(last))
        need -= len(last)
        if need <= 0:
            break
    for chunk in reversed(chunks):
        found.extend(chunk)
    return list(found)


def follow(path: Path, *, poll: float = 0.2, stop=None) -> Iterator[str]:
    """New lines of ``path`` as they are written; survives rotation and re-creation."""
    fh = None
    inode = None
    partial = b""
    at_end = True  # the first file is followed from its end; files after rotation from 0
    while stop is None or not stop():
        if fh is None:
            try:
                fh = open(path, "rb")
                st = os.fstat(fh.fileno())
                inode = st.st_ino
                if at_end:
                    fh.seek(0, os.SEEK_END)
                    at_end = False
            except FileNotFoundError:
                at_end = False  # it did not exist yet: everything written to it is new
                time.sleep(poll)
                continue
        data = fh.read(1 << 16)
        if data:
            partial += data
            *complete, partial = partial.split(b"\n")
            for raw in complete:
                yield raw.decode("utf-8", "replace")
            continue
        try:
            st = os.stat(path)
            rotated = st.st_ino != inode or st.st_size < fh.tell()
        except FileNotFoundError:
            rotated = True
        if rotated:
            rest = fh.read()
            partial += rest
            fh.close()
            fh = None
            continue
        time.sleep(poll)
