"""``tts-ops logs archive``: rotated files into a .tar.gz with a manifest, atomically.

The archive is written under a temporary name and renamed into place; only then are the
archived rotated files deleted. The live file is never archived. An interrupted archive
leaves no partial archive and deletes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from tts_ops.logwriter import rotated_files


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
    output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = output / f"tts-logs-{stamp}.tar.gz"
    tmp = output / f".{final.name}.{os.getpid()}.tmp"
    entries = []
    mtimes = [f.stat().st_mtime for _svc, f in files]
    try:
        with tarfile.open(tmp, "w:gz") as tar:
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
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    for _svc, f in files:  # only now, with the archive safely in place
        try:
            f.unlink()
        except FileNotFoundError:
            pass
    return final, manifest
