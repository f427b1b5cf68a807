"""A host's side of a fleet command: the config the operator's machine sent, kept.

The config arrives on stdin. It must be a JSON object; it is written atomically,
``0600``, into ``<state>/fleet/config-<sha256>.json``: named by its content, so two fleet
commands at once never read each other's half, and the same config is written once (and
its validation is cached by content, as any config file's: a fleet status of an
unchanged config validates nothing again). The command run with it validates it as it
validates any config file: a problem is one line, exit 2, and nothing runs. Files of
earlier configs are removed after a day.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tts_ops.errors import ConfigError

KEEP_S = 24 * 3600


def keep(state_dir: Path, data: bytes, limit: int) -> Path:
    from tts_ops.statefile import atomic_write_bytes, private_dir

    if len(data) > limit:
        raise ConfigError(f"fleet receive: the config sent is over {limit // 2**20} MiB;"
                          " it is not a config")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"fleet receive: the config sent is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError("fleet receive: the config sent is not a JSON object")
    folder = private_dir(Path(state_dir) / "fleet")
    digest = hashlib.sha256(data).hexdigest()[:24]
    path = folder / f"config-{digest}.json"
    if not path.exists():
        atomic_write_bytes(path, data)
    _prune(folder, keep_name=path.name)
    return path


def _prune(folder: Path, keep_name: str) -> None:
    cutoff = time.time() - KEEP_S
    for entry in os.scandir(folder):
        if entry.name == keep_name or not entry.name.startswith("config-"):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
