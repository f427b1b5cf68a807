"""Finding ``tts_ops`` entry points without importing importlib.metadata.

``importlib.metadata`` costs ~15 ms at import (email, zipfile, csv...), more than the
rest of a ``tts-ops status`` run. Entry points only need each distribution's
``entry_points.txt``, so this module reads those directly, in ``sys.path`` order (the
first distribution of a name wins, as with importlib.metadata).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, NamedTuple

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")


class EntryPoint(NamedTuple):
    name: str
    value: str
    dist_name: str
    dist_version: str

    def load(self) -> Any:
        module, _, attrs = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


def entry_points(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for directory in path if path is not None else sys.path:
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for entry in sorted(names):
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            # the directory's name carries the (normalized) distribution name: METADATA
            # is read only for a distribution with entry points of this group
            key = entry.rsplit(".", 1)[0].partition("-")[0].lower().replace("-", "_")
            key = key.replace(".", "_")
            if key in seen:
                continue
            seen.add(key)
            meta = os.path.join(directory or ".", entry)
            try:
                with open(os.path.join(meta, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            points = _parse(text, group)
            if points:
                dist, version = _name_version(meta, entry)
                found.extend(EntryPoint(n, v, dist, version) for n, v in points)
    return found


def _parse(text: str, group: str) -> list[tuple[str, str]]:
    out = []
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        match = _SECTION.match(line)
        if match:
            current = match["name"].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def _name_version(meta: str, entry: str) -> tuple[str, str]:
    """Name and version from METADATA (or PKG-INFO), else from the directory name."""
    stem = entry.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(meta, filename), encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    elif line.startswith("Version:"):
                        version = line[8:].strip()
                    elif not line.strip():
                        break
            break
        except OSError:
            continue
    return name, version
