"""`Terminal`: a detached tmux session, a real terminal for the commands that draw on one
(``top``), read back with ``capture-pane``."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest


class Terminal:
    def __init__(self, *argv: str, width: int = 180, height: int = 30, plugins: str = "manual"):
        if shutil.which("tmux") is None:
            if os.environ.get("CI"):
                pytest.fail("CI must install tmux")
            pytest.skip("tmux is not installed")
        self.session = f"tty-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(width),
                        "-y", str(height), "-e", f"TTS_OPS_PLUGINS={plugins}", *argv],
                       check=True)

    def tmux(self, *args: str) -> None:
        subprocess.run(["tmux", args[0], "-t", self.session, *args[1:]], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True).stdout

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.session],
                              capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)
