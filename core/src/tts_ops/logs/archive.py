"""``tts-ops logs archive``: rotated files into a .tar.gz with a manifest, atomically.

The archive is written under a temporary name and renamed into place; only then are the
archived rotated files deleted. The live file is never archived. An interrupted archive
leaves no partial archive and deletes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from tts_ops.logwriter import LOG_MODE, rotated_files
from tts_ops.statefile import atomic_file, private_dir


def archivable(path: Path, older_than: float | None) -> list[Path]:
    files = [f for f in rotated_files(path) if not f.name.endswith(".tmp")]
    if older_than is not None:
        cutoff = time.time() - older_than
        files = [f for f in files if f.stat().st_mtime < cutoff]
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def create(groups: dict[str, list[Path]], output: Path) -> tuple[Path | None, dict[str, Any]]:
    """Archive ``{service: files}`` into ``output``; returns (archive, manifest)."""
    files = [(svc, f) for svc, fs in groups.items() for f in fs]
    if not files:
        return None, {"files": []}
    private_dir(output, 0o750)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = output / f"tts-logs-{stamp}.tar.gz"
    entries = []
    mtimes = [f.stat().st_mtime for _svc, f in files]
    # the logs are 0640: the archive of them is no more readable than they are
    with atomic_file(final, LOG_MODE) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for svc, f in files:
            arcname = f"{svc}/{f.name}"
            tar.add(f, arcname=arcname)
            entries.append({"service": svc, "file": str(f), "name": arcname,
                            "size": f.stat().st_size, "sha256": _sha256(f)})
        manifest = {"created": stamp, "files": entries,
                    "time_range": {"oldest_mtime": min(mtimes), "newest_mtime": max(mtimes)}}
        data = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    for _svc, f in files:  # only now, with the archive safely in place
        try:
            f.unlink()
        except FileNotFoundError:
            pass
    return final, manifest
