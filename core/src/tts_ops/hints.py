"""What to tell ``pip install`` for a tts-ops distribution: an index name or a folder.

From a checkout (tts-ops installed from ``core/`` beside ``plugins/`` and ``service/``) the
first-party distributions are folders of that checkout, which the index may not hold;
from an index install they are names. The hint must work as printed.
"""

from __future__ import annotations

from pathlib import Path

#: first-party distributions and their folders in the checkout
FOLDERS = {
    "tts-ops-manual": "plugins/manual",
    "tts-ops-systemd": "plugins/systemd",
    "tts-ops-supervisor": "plugins/supervisor",
    "tts-ops-strategies": "plugins/strategies",
    "tts-ops-kubernetes": "plugins/kubernetes",
    "tts-server": "service",
}


def checkout_root() -> Path | None:
    """The checkout tts-ops runs from (core/src/tts_ops -> the repository), or None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "core" / "pyproject.toml").is_file() else None


def pip_target(dist: str) -> str:
    root = checkout_root()
    folder = FOLDERS.get(dist)
    if root is not None and folder and (root / folder / "pyproject.toml").is_file():
        return str(root / folder)
    return dist


def install_hint(dist: str) -> str:
    return f"pip install {pip_target(dist)}"
