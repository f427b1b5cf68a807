"""A private supervisord with a unix socket and an include dir, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class PrivateSupervisord:
    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="supd-", dir="/tmp"))
        self.sock = self.dir / "s.sock"
        self.conf = self.dir / "supervisord.conf"
        (self.dir / "conf.d").mkdir()
        auth = f"username={username}\npassword={password}\n" if username else ""
        self.conf.write_text(
            f"[unix_http_server]\nfile={self.sock}\n{auth}\n"
            f"[supervisord]\nlogfile={self.dir}/supervisord.log\npidfile={self.dir}/pid\n"
            f"nodaemon=true\nchildlogdir={self.dir}\nloglevel=info\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{self.sock}\n{auth}\n"
            "[include]\nfiles=conf.d/*.conf\n"
        )
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrivateSupervisord:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        binary = Path(sys.executable).with_name("supervisord")
        self.proc = subprocess.Popen([str(binary), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start ({self.dir})")
            time.sleep(0.02)
        time.sleep(0.05)

    def add_program(self, name: str, command: str, **options: str) -> None:
        """A hand-written program (for comparisons), fastest restart settings by default."""
        lines = [f"[program:{name}]", f"command={command}", "autostart=false",
                 "autorestart=true", "startsecs=0", "startretries=1000", "stopasgroup=true",
                 "killasgroup=true", f"stdout_logfile={self.dir}/{name}.log",
                 "redirect_stderr=true", *(f"{k}={v}" for k, v in options.items())]
        (self.dir / "conf.d" / f"{name}.conf").write_text("\n".join(lines) + "\n")

    def rpc(self):
        from tts_ops_supervisor.conf import read_conf
        from tts_ops_supervisor.rpc import Client

        return Client(read_conf(self.conf)).proxy

    def ctl(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("supervisorctl")), "-c", str(self.conf), *args]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
