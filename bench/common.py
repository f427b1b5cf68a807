"""Timing helpers, the result record, and a throwaway supervisord for comparisons."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass
class Result:
    name: str
    figure: float
    unit: str
    anchor: float | None = None
    anchor_label: str = ""
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.figure / self.anchor if self.anchor else None


def median_run(cmd: list[str], repeat: int, env: dict | None = None) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Supervisord:
    """A private supervisord with a unix socket and one include dir for programs."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-supervisord-"))
        self.sock = self.dir / "s.sock"
        self.conf = self.dir / "supervisord.conf"
        (self.dir / "programs").mkdir()
        self.conf.write_text(
            f"[unix_http_server]\nfile={self.sock}\n\n"
            f"[supervisord]\nlogfile={self.dir}/supervisord.log\npidfile={self.dir}/pid\n"
            f"nodaemon=true\nchildlogdir={self.dir}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{self.sock}\n\n"
            f"[include]\nfiles={self.dir}/programs/*.conf\n"
        )
        self.proc: subprocess.Popen | None = None

    def add_program(self, name: str, command: str, **options: str) -> None:
        lines = [f"[program:{name}]", f"command={command}", "autostart=false",
                 "autorestart=true", "startsecs=0", "startretries=1000", "stopasgroup=true",
                 "killasgroup=true", f"stdout_logfile={self.dir}/{name}.log",
                 "redirect_stderr=true"]
        lines += [f"{k}={v}" for k, v in options.items()]
        (self.dir / "programs" / f"{name}.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([str(VENV_BIN / "supervisord"), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.rpc().supervisor.getState()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("supervisord did not start")

    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def ctl(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), *args]

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.rpc().supervisor.stopAllProcesses()
            except Exception:
                pass
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def tts_ops(*args: str, cwd: Path | None = None, env: dict | None = None) -> list[str]:
    return [str(VENV_BIN / "tts-ops"), *args]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_OPS_")}
    env.update(extra)
    return env
