"""Where a service's log lines come from, whatever the backend: the sinks' readers.

A reader yields ``(path, lines)`` for every file of a service, oldest first, reading
rotated and gzipped files transparently and streaming. Problems (an unreadable file, a
corrupt gzip member) are reported through ``skip`` and reading goes on with the rest.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tts_ops.logread import all_files, open_log
from tts_ops.logwriter import rotated_files


def supervisor_backups(path: Path) -> list[Path]:
    """supervisord's own rotation: NAME.log.N, highest N oldest."""
    prefix = path.name + "."
    found = [p for p in path.parent.glob(path.name + ".*")
             if p.name[len(prefix):].isdigit()]  # NAME.log.N exactly, not our timestamps
    return sorted(found, key=lambda p: -int(p.name[len(prefix):]))


def files_for(path: Path) -> list[Path]:
    return [*supervisor_backups(path), *rotated_files(path), *([path] if path.exists() else [])]


def iter_lines(files: list[Path], skip: Callable[[str], None]) -> Iterator[tuple[Path, bytes]]:
    for file in files:
        try:
            fh = open_log(file)
        except OSError as exc:
            skip(f"{file}: cannot read it ({exc.strerror or exc})")
            continue
        with fh:
            try:
                for line in fh:
                    yield file, line
            except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
                skip(f"{file}: corrupt or truncated ({exc}); the rest of it was skipped")


__all__ = ["all_files", "files_for", "iter_lines"]
