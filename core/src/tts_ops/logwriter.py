"""The rotating log writer: one implementation for the manual backend and the file sink.

Rotated files are named ``NAME.log.YYYYmmddTHHMMSS.ffffff`` (then ``.gz``) rather than
shifted ``.1 .2 ...``: nothing is ever renamed twice, so a background compressor never
races a rotation, and a line is written whole to exactly one file. Standard library only.
"""

from __future__ import annotations

import errno
import glob
import os
import sys
import time
from pathlib import Path

from tts_ops.statefile import open_nofollow, private_dir

LOG_MODE = 0o640
# a disk that is full or failing: lines are dropped and counted, writing resumes when it can
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})


def claim_log_file(path: Path, service: str) -> Path:
    """Create ``path`` (0640, parents 0750) or check it, before any process manager opens it.

    supervisord and systemd open a log themselves, as root, following links: a link, a FIFO
    or another user's file planted at the path is refused here, in one line, instead.
    """
    from tts_ops.errors import ConfigError

    try:
        private_dir(path.parent, 0o750)
        os.close(open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE))
    except ConfigError as exc:  # UnsafeFile
        raise ConfigError(f"{service}: log_file {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{service}: log_file {path}: {exc.strerror}") from None
    return path


def rotated_files(path: Path) -> list[Path]:
    """Rotated files of ``path``, oldest first (compressed or not)."""
    by_stem: dict[str, Path] = {}
    for name in glob.glob(glob.escape(str(path)) + ".*T*"):
        if name.endswith(".tmp"):
            continue
        # while a compressor finishes, FILE and FILE.gz may both exist: both are whole
        by_stem.setdefault(name.removesuffix(".gz"), Path(name))
    return [by_stem[stem] for stem in sorted(by_stem)]


class RotatingLogWriter:
    """Append lines to ``path``; rotate when a write would pass ``max_bytes``.

    ``backups`` rotated files are kept (0 keeps none: the file is truncated instead).
    Rotated files are gzipped by a separate process so the writer never blocks;
    `spawned` holds their pids; `reap` collects the finished ones (a caller that reaps
    every child itself, as the supervisor does, may simply ignore them).

    With ``compress_delay``, rotated files wait in `pending` (like logrotate's
    ``delaycompress``) and one compressor takes them all when the caller calls
    `compress_pending` at `compress_due`, or at `close`: a burst of output is written
    first, without compressors started in its middle competing for the CPU.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        *,
        compress: bool = True,
        mode: int = LOG_MODE,
        compress_delay: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.compress = compress
        self._last_rotation_ns = 0
        self.mode = mode
        self.spawned: list[int] = []
        self.compress_delay = compress_delay
        self.pending: list[Path] = []  # rotated, waiting for the compressor
        self.compress_due: float | None = None  # time.monotonic() to call compress_pending
        self.dropped = 0  # lines lost to a full or failing disk (counted, never fatal)
        self._torn = False  # a write stopped mid-line: the next one starts a new line
        private_dir(self.path.parent, 0o750)
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
        os.fchmod(self._fd, self.mode)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Write whole lines (``data`` ends with a newline). Rotates first if needed."""
        if self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        self._append(data, 0, len(data))

    def write_lines(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        """Write a block of whole lines (``data[start:end]``), rotating between lines where
        the limit falls.

        Found by offset (``rfind``), not by splitting the block into lines: a 1 MiB read of
        short lines would otherwise make tens of thousands of objects at every rotation;
        and written from the caller's buffer, never a copy of a part of it (each fresh MiB
        costs page faults, more than the write itself).
        """
        pos, end = start, len(data) if end is None else end
        while self._size + (end - pos) > self.max_bytes:
            room = self.max_bytes - self._size
            cut = data.rfind(b"\n", pos, pos + max(room, 0)) + 1  # the last line that fits
            if cut > pos:
                self._append(data, pos, cut)
                pos = cut
            elif self._size == 0:  # a line longer than a whole file goes in alone
                cut = data.find(b"\n", pos, end) + 1 or end
                self._append(data, pos, cut)
                pos = cut
            if pos == end:
                return
            if self._size:
                self.rotate()
        self._append(data, pos, end)

    def _append(self, data: bytes, start: int, end: int) -> None:
        if self._fd < 0:  # a rotation could not open the new file: try again now
            try:
                self._open()
            except OSError as exc:
                if exc.errno not in DISK_ERRORS:
                    raise
                self.dropped += data.count(b"\n", start, end)
                return
        if self._torn:  # end the fragment a full disk left
            try:
                os.write(self._fd, b"\n")
            except OSError as exc:
                if exc.errno not in DISK_ERRORS:
                    raise
                self.dropped += data.count(b"\n", start, end)
                return
            self._torn = False
            self._size += 1
        self._write_all(data, start, end)

    def _write_all(self, data: bytes, start: int, end: int) -> None:
        """Write ``data[start:end]``; on a full or failing disk count the lines lost and
        note whether the file now ends mid-line."""
        view = memoryview(data)[start:end]
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:
                raise
            self.dropped += data.count(b"\n", start + written, end)
            if written:  # else the file still ends as it did: torn or not
                self._torn = data[start + written - 1 : start + written] != b"\n"
            self._size += written
            return
        finally:
            view.release()
        self._torn = False
        self._size += written

    def rotate(self) -> Path | None:
        """Close the file, rename it aside, open a fresh one, compress in the background."""
        if self._size == 0 or self._fd < 0:
            return None
        rotated: Path | None = None
        if self.backups > 0:
            os.close(self._fd)
            self._fd = -1
            # one clock reading for both parts (two could straddle a second and sort a
            # newer file before an older one), and never the same name twice
            now = max(time.time_ns(), self._last_rotation_ns + 1)
            self._last_rotation_ns = now
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
            rotated = self.path.with_name(f"{self.path.name}.{stamp}.{now % 10**9:09d}")
            os.rename(self.path, rotated)
            self._torn = False
            try:
                self._open()
            except OSError as exc:
                if exc.errno not in DISK_ERRORS:
                    raise  # else the next write tries again
        else:
            os.ftruncate(self._fd, 0)  # through our fd: never a path someone swapped
            self._size = 0
        if rotated is not None:
            self._prune()
            if self.compress:
                self.pending.append(rotated)
                if self.compress_delay <= 0:
                    self.compress_pending()
                elif self.compress_due is None:
                    self.compress_due = time.monotonic() + self.compress_delay
        return rotated

    def compress_pending(self) -> None:
        """Start one compressor for every rotated file still waiting (those pruned since
        are skipped by it)."""
        self.compress_due = None
        if not self.pending:
            return
        from tts_ops.spawn import spawn

        files, self.pending = self.pending, []
        self.reap()
        self.spawned.append(spawn([sys.executable, "-m", "tts_ops.logcompress",
                                   *map(str, files)], env=dict(os.environ), idle=True))

    def _prune(self) -> None:
        old = rotated_files(self.path)
        for stale in old[: max(0, len(old) - self.backups)]:
            try:
                stale.unlink()
            except FileNotFoundError:
                pass

    def reap(self) -> None:
        alive = []
        for pid in self.spawned:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # someone else reaped it
            if done == 0:
                alive.append(pid)
        self.spawned = alive

    def close(self) -> None:
        if self.pending:
            self.compress_pending()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
