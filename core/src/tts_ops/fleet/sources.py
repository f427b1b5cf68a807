"""A service's ``source`` directory, sent to fleet hosts before a fleet deploy.

The operator's side packs the directory as a tar stream (symlinks kept as symlinks, as
``deploy`` copies them) and sends it on stdin to ``tts-ops fleet receive-source --name
NAME`` over the host's ssh connection. The host's side keeps it in
``<state>/fleet/sources/NAME-<sha256>``: unpacked with Python's ``data`` extraction
filter (no absolute paths, no ``..``, no devices, no links out of the tree), into a
private temporary directory renamed into place, so a half-sent tree is never seen; the
same content is kept once. The host's config then names that directory as the source.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from tts_ops.errors import ConfigError

#: a source larger than this is refused on both sides (a release, not a disk image)
MAX_SOURCE = 1024 * 1024 * 1024


def pack(directory: Path) -> bytes:
    """The tree under ``directory`` as an uncompressed tar (a stable order: the same tree
    gives the same bytes, so a host keeps it once)."""
    if not directory.is_dir():
        raise ConfigError(f"source {directory}: not a directory on this machine: a fleet"
                          " deploy sends it to each host from here")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = Path(root) / name
                tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
            if buffer.tell() > MAX_SOURCE:
                raise ConfigError(f"source {directory}: over {MAX_SOURCE >> 20} MiB; ship a"
                                  " package or an image to the hosts instead")
    return buffer.getvalue()


def keep(state_dir: Path, name: str, data: bytes) -> Path:
    """Unpack ``data`` for service ``name`` on this host; its directory."""
    from tts_ops.config.fields import SERVICE_NAME
    from tts_ops.statefile import private_dir

    if not SERVICE_NAME.match(name):
        raise ConfigError(f"fleet receive-source --name: not a service name ({name[:80]!r})")
    if len(data) > MAX_SOURCE:
        raise ConfigError(f"fleet receive-source: over {MAX_SOURCE >> 20} MiB")
    folder = private_dir(Path(state_dir) / "fleet" / "sources")
    target = folder / f"{name}-{hashlib.sha256(data).hexdigest()[:24]}"
    if target.is_dir() and not target.is_symlink():
        return target
    scratch = Path(tempfile.mkdtemp(prefix=".in-", dir=folder))
    try:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ConfigError(f"fleet receive-source: not a source tree it can unpack"
                              f" ({exc})") from None
        try:
            os.rename(scratch, target)
        except OSError:  # another command kept the same content meanwhile
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
