"""A private ``systemd --user`` manager, for tests and benchmarks (and plugin authors).

systemd need not be PID 1: with /run/systemd/system present and its own
XDG_RUNTIME_DIR (0700), config, data and state directories, ``systemd --user`` runs in a
new session and ``systemctl --user`` talks to it. `UserManager` starts one, points this
process's XDG variables at it, and puts everything back on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
XDG = ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")


class ManagerUnavailable(Exception):
    pass


class UserManager:
    def __init__(self) -> None:
        self.base: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> UserManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not Path(SYSTEMD).exists() or shutil.which("systemctl") is None:
            raise ManagerUnavailable("systemd is not installed (apt-get install systemd)")
        try:
            Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
        except PermissionError:
            if not Path("/run/systemd/system").is_dir():
                raise ManagerUnavailable(
                    "/run/systemd/system is missing and cannot be created (needs root)"
                ) from None
        # short paths: unix socket paths must stay under 108 bytes
        self.base = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
        dirs = {name: self.base / name.split("_")[1].lower() for name in XDG}
        for path in dirs.values():
            path.mkdir(mode=0o700)
        self._saved = {name: os.environ.get(name) for name in XDG}
        values = {k: str(v) for k, v in dirs.items()}
        log = open(self.base / "manager.log", "wb")
        self.proc = subprocess.Popen([SYSTEMD, "--user"], env={**os.environ, **values},
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        os.environ.update(values)
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(["systemctl", "--user", "is-system-running", "--wait"],
                                 capture_output=True, text=True, timeout=30)
            if out.stdout.strip() in ("running", "degraded"):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.base / "manager.log").read_text(errors="replace")
                self.stop()
                raise ManagerUnavailable(f"systemd --user did not start: {text[-500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            subprocess.run(["systemctl", "--user", "exit"], capture_output=True, timeout=30)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved = {}
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
