"""A bounded audio cache shared by a server's workers, and one synthesis for identical
requests (``--cache-bytes``, default 64 MiB; 0 turns both off).

Answers are files in a private directory (0700, made by the main process before it forks,
removed when it exits), written atomically (a temp name, then a rename), so every worker
reads what any worker stored. The key is a digest of everything that changes the audio:
the engine, the voice and its model file's digest, the text exactly as synthesized, the
rate or speed, the format. Least recently used out: a hit touches its file's time, and a
store evicts the oldest files until the directory is within the bound (under a lock, so
two workers never evict at once). The bytes are counted from the directory itself, never
from a worker's own tally.

Identical requests at the same time cause one synthesis: in a worker, later ones await
the first one's task (shielded: a client that leaves does not cancel it for the others);
across workers, the first takes an exclusive lock on the key (a byte of one lock file at
an offset from the key: POSIX record locks, so no file per key), and the others wait for
it and then read what it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEFAULT_BYTES = 64 * 1024 * 1024
SUFFIX = ".audio"
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def make_directory() -> str:
    """A private directory for one server's cache (its workers share it)."""
    return tempfile.mkdtemp(prefix="tts-server-cache-")


def key_of(*parts: Any) -> str:
    """The cache key of an answer: a digest of every part that changes its bytes."""
    return hashlib.sha256(json.dumps(parts, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


class AudioCache:
    def __init__(self, directory: str | Path, max_bytes: int, metrics: Any = None) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._inflight: dict[str, asyncio.Future] = {}
        self._leads: set[asyncio.Task] = set()  # syntheses and the stores after them
        # record locks belong to the process: one descriptor held for its life (closing
        # any descriptor of the file would drop every lock this process holds on it)
        self._locks = os.open(self.dir / ".locks", os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}{SUFFIX}"

    def get(self, key: str) -> bytes | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
        with contextlib.suppress(OSError):
            os.utime(self._path(key))  # recently used: the last to be evicted
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return  # larger than the whole cache: never stored
        tmp = self.dir / f".{key}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self._path(key))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return  # a full disk: the answer is served, just not kept
        self.evict()

    def evict(self) -> int:
        """Drop the least recently used answers until the cache is within its bound; the
        bytes it holds afterwards."""
        fcntl.lockf(self._locks, fcntl.LOCK_EX, 1, 0)
        try:
            entries = []
            with os.scandir(self.dir) as it:
                for entry in it:
                    if entry.name.endswith(SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            st = entry.stat(follow_symlinks=False)
                            entries.append((st.st_mtime_ns, st.st_size, entry.path))
            total = sum(size for _t, size, _p in entries)
            for _mtime, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
        finally:
            fcntl.lockf(self._locks, fcntl.LOCK_UN, 1, 0)
        if self.metrics is not None:
            self.metrics.cache_bytes.set(total)
        return total

    async def get_or_make(self, key: str, make: Callable[[], Awaitable[bytes]]
                          ) -> tuple[bytes, bool]:
        """(the answer, whether it came from the cache or another request's synthesis)."""
        data = self.get(key)
        if data is not None:
            self.count(hit=True)
            return data, True
        waiting = self._inflight.get(key)
        if waiting is None:
            done: asyncio.Future = asyncio.get_running_loop().create_future()
            self._inflight[key] = done
            lead = asyncio.ensure_future(self._lead(key, make, done))
            self._leads.add(lead)
            lead.add_done_callback(lambda t: (self._inflight.pop(key, None),
                                              self._leads.discard(t)))
            return await asyncio.shield(done)
        data, _shared = await asyncio.shield(waiting)
        self.count(hit=True)
        return data, True

    async def _lead(self, key: str, make: Callable[[], Awaitable[bytes]],
                    done: asyncio.Future) -> None:
        """Make the answer (or read another worker's), hand it to ``done``, then store it:
        the answer goes back before the write and the eviction. The key stays in flight
        (and its lock held) until it is stored, so no one makes it twice."""
        # a byte of the lock file past the eviction lock's, from the key: another worker
        # making the same answer holds it until the answer is stored
        offset = 1 + int(key[:15], 16)
        try:
            fcntl.lockf(self._locks, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:  # another worker makes it: wait for it off the event loop
            await asyncio.to_thread(fcntl.lockf, self._locks, fcntl.LOCK_EX, 1, offset)
        try:
            data = self.get(key)
            if data is not None:
                self.count(hit=True)
                done.set_result((data, True))
                return
            self.count(hit=False)
            try:
                data = await make()
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:  # theirs to raise: every request waiting gets it
                done.set_exception(exc)
                return
            done.set_result((data, False))
            with contextlib.suppress(OSError):  # the cache dir gone at exit: served, not kept
                await asyncio.to_thread(self.put, key, data)
        finally:
            fcntl.lockf(self._locks, fcntl.LOCK_UN, 1, offset)

    async def drain(self) -> None:
        """Wait until every answer made so far is stored (or has failed)."""
        while self._leads:
            await asyncio.gather(*self._leads, return_exceptions=True)

    def count(self, hit: bool) -> None:
        if self.metrics is not None:
            (self.metrics.cache_hits if hit else self.metrics.cache_misses).inc()
