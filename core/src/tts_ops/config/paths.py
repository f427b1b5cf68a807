"""Where tts-ops keeps its state: ``--state-dir``, ``$TTS_OPS_STATE_DIR``, XDG, or /var/lib."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tts_ops.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def resolve_state_dir(explicit: str | None = None) -> Path:
    from pathlib import Path

    return Path(state_dir_name(explicit))


def trusted_state_dir(explicit: str | None = None) -> Path:
    """`resolve_state_dir`, refused (exit 2) when another user owns or may write it or a
    directory above it: what it holds decides what tts-ops runs."""
    from tts_ops.statefile import untrusted_path

    path = resolve_state_dir(explicit)
    problem = untrusted_path(path)
    if problem is not None:
        raise ConfigError(f"state dir {path}: {problem}; tts-ops does not read or write state"
                          " another user could change: use a directory of your own"
                          " (--state-dir or TTS_OPS_STATE_DIR)")
    return path


def state_dir_name(explicit: str | None = None) -> str:
    """`resolve_state_dir` as a string, with ``os.path`` only (the ``tts-ops`` entry point
    needs it before anything heavier is imported)."""
    if explicit:
        path = explicit
    elif os.environ.get("TTS_OPS_STATE_DIR"):
        path = os.environ["TTS_OPS_STATE_DIR"]
    elif os.environ.get("XDG_STATE_HOME"):
        path = os.path.join(os.environ["XDG_STATE_HOME"], "tts-ops")
    elif os.geteuid() == 0:
        path = "/var/lib/tts-ops"
    else:
        path = os.path.join(os.path.expanduser("~"), ".local", "state", "tts-ops")
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def ensure_writable_dir(path: Path, what: str = "state dir") -> Path:
    """Create ``path`` (0700) if needed; a clear error if it cannot be written or is unsafe.

    A directory that another user owns or may write to is refused: whoever can write
    there can plant a link where tts-ops writes its state.
    """
    from tts_ops.statefile import private_dir

    try:
        private_dir(path)
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(
            f"{what} {path}: cannot create it ({exc.strerror}); pass --state-dir or set"
            " TTS_OPS_STATE_DIR to a writable directory"
        ) from None
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{what} {path}: belongs to uid {st.st_uid}; use a directory of your"
                          " own (--state-dir or TTS_OPS_STATE_DIR)")
    if st.st_mode & 0o022:
        raise ConfigError(f"{what} {path}: other users may write to it (mode"
                          f" {st.st_mode & 0o7777:04o}); run chmod go-w {path} or choose"
                          " another directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what} {path}: not writable; pass --state-dir or set TTS_OPS_STATE_DIR to a"
            " writable directory"
        )
    return path
