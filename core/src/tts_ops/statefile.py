"""Safe files: atomic writes, no-follow opens, private directories, ``flock``.

Every file tts-ops writes goes through here, so that a symlink or a foreign file planted
where tts-ops writes (a log in a world-writable directory, say) is refused, never followed:
opens use ``O_NOFOLLOW`` and must find a regular file owned by us; temp files are created
with ``O_EXCL`` under a random name; directories tts-ops creates are 0700 (or as asked).
Standard library only: the manual backend's supervisor imports this module.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tts_ops.errors import ConfigError

PRIVATE = 0o600  # files that may hold env values (secrets): owner only
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFile(ConfigError, OSError):
    """A path where tts-ops writes is a link, not a regular file, or someone else's.

    A `ConfigError` (one line, exit 2: choose another path) and an `OSError` (code that
    handles a failed write handles this too).
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; tts-ops does not write through it: remove it or"
                         " choose another path")
        self.errno = errno.EPERM
        self.strerror = self.message
        self.path = str(path)

    def __str__(self) -> str:
        return self.message


def open_nofollow(path: Path | str, flags: int, mode: int = PRIVATE) -> int:
    """``os.open`` that refuses a symlink, a non-regular file and a file we do not own.

    ``O_NONBLOCK`` keeps a planted FIFO from blocking the open; it is cleared afterwards.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(path, "is a symbolic link") from None
        if exc.errno == errno.ENXIO:
            raise UnsafeFile(path, "is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, "is not a regular file")
        if st.st_uid != os.geteuid():
            raise UnsafeFile(path, f"belongs to uid {st.st_uid}, not to us")
        if st.st_nlink > 1:
            raise UnsafeFile(path, "has other hard links")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` and any missing parents with ``mode`` (not only the last one)."""
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, mode)
    return path


def _new_temp(path: Path, mode: int) -> tuple[int, Path]:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
        except FileExistsError:
            continue
        os.fchmod(fd, mode)  # the umask must not change what we chose
        return fd, tmp
    raise UnsafeFile(path, "no free temp file name beside it")


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: int = PRIVATE, durable: bool = True
                ) -> Iterator[BinaryIO]:
    """A new file (``O_EXCL``, random name) that replaces ``path`` when the block ends.

    Readers see the old or the new file, never half of one; the rename replaces a symlink
    at ``path`` rather than following it; on an exception the temp file is removed.
    ``durable=False`` leaves out the two fsyncs (file and directory): for state that means
    nothing after a reboot, such as a running process's status, written on every change.
    """
    path = Path(path)
    fd, tmp = _new_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int = PRIVATE, durable: bool = True
                       ) -> None:
    """Replace ``path`` with ``data`` atomically (see `atomic_file`)."""
    with atomic_file(path, mode, durable) as fh:
        fh.write(data)


def atomic_write_json(path: Path, data: Any, mode: int = PRIVATE, durable: bool = True
                      ) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), mode,
                       durable)


def append_line(path: Path, line: str, mode: int = PRIVATE) -> None:
    """Append one line to ``path`` (created ``mode``), never through a link."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class UntrustedState(ConfigError):
    """State another user wrote or may write: never read, whatever it says (exit 2)."""


def owner_name(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def trusted_uid(uid: int) -> bool:
    """Files of ours or root's: nobody else may decide what tts-ops reads as its state."""
    return uid in (os.geteuid(), 0)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist. Corrupt files raise ValueError.

    State decides what runs (a manifest holds a command), so the file must be a regular
    file of ours (or root's) that no one else may write, reached without a symlink in its
    last component; anything else raises `UntrustedState` before a byte is parsed.
    """
    raw = read_trusted(path)
    return None if raw is None else json.loads(raw)


def read_trusted(path: Path) -> bytes | None:
    """The bytes of a state file (`read_json`'s checks), or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedState(f"{path}: is a symbolic link; tts-ops reads its state only"
                                 " from its own files: remove it") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedState(f"{path}: is not a regular file; remove it")
        if not trusted_uid(st.st_uid):
            raise UntrustedState(f"{path}: belongs to {owner_name(st.st_uid)}, not to"
                                 f" {owner_name(os.geteuid())}; tts-ops does not read state"
                                 " another user wrote: remove it or choose another --state-dir")
        if st.st_mode & 0o022:
            raise UntrustedState(f"{path}: other users may write to it (mode"
                                 f" {st.st_mode & 0o7777:04o}); remove it or run chmod go-w")
        os.set_blocking(fd, True)
        return fh.read()


def untrusted_path(path: Path | str) -> str | None:
    """Why ``path`` (a directory tts-ops keeps state in) cannot be trusted, or None.

    Every existing component, and every component of where its symlinks lead, must belong
    to us or root; a directory on the way that others may write must be sticky (``/tmp``),
    and the last one no one else may write at all. Whoever could rename or replace a
    component could plant the journal or manifest a later command acts on.
    """
    seen: set[str] = set()
    todo = [os.path.abspath(path)]
    while todo:
        target = todo.pop()
        if target in seen or len(seen) > 40:
            continue
        seen.add(target)
        parts = [p for p in target.split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                break  # tts-ops creates the rest itself, 0700
            last = i == len(parts) - 1
            if not trusted_uid(st.st_uid):
                return f"{current} belongs to {owner_name(st.st_uid)}"
            if stat.S_ISLNK(st.st_mode):  # its owner is trusted: check where it leads
                todo.append(os.path.realpath(target))
                break
            if last and st.st_mode & 0o022:
                return (f"{current}: other users may write to it (mode"
                        f" {st.st_mode & 0o7777:04o})")
            if not last and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                return (f"{current}: other users may write to it and it is not sticky (mode"
                        f" {st.st_mode & 0o7777:04o})")
    return None


@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    With ``blocking=False`` raises BlockingIOError when another process holds it.
    """
    private_dir(path.parent)
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
