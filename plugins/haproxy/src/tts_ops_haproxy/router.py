"""`HaproxyRouter`: the ``haproxy`` router, as the core drives it (`tts_ops.plugin.Router`).

Per service, under ``STATE_DIR/routers/NAME/``: ``haproxy.cfg`` (checked with
``haproxy -c`` before it replaces the last one), ``servers.json`` (the servers and
weights it was last told) and ``run/admin.sock`` (the admin socket, in a 0700 directory).
Changes to servers and weights go through the runtime API (dynamic servers: ``add
server``, ``set server``, ``del server``) and are written to the config too, so a HAProxy
restarted by its supervisor comes back with them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tts_ops.plugin import (
    ROUTER_ROLE_LABEL,
    ConfigError,
    MissingComponent,
    OperationFailed,
    RouterServer,
    RouterState,
    ServerState,
)
from tts_ops.statefile import atomic_write_bytes, atomic_write_json, private_dir, read_json
from tts_ops_haproxy.options import HaproxyOptions, options_of
from tts_ops_haproxy.render import BACKEND, FRONTEND, frame, render, server_options
from tts_ops_haproxy.runtime import RuntimeApi, Unreachable

INSTALL = ("haproxy is not installed: install the Debian package haproxy (apt install"
           " haproxy), version 2.4 or later")
#: sun_path holds 107 bytes, and haproxy binds ``PATH.PID.tmp`` first, then renames it
_SOCKET_MAX = 107 - len(".4194304.tmp")


def executable() -> str:
    """The haproxy binary: ``$TTS_OPS_HAPROXY``, else haproxy on PATH or in /usr/sbin."""
    chosen = os.environ.get("TTS_OPS_HAPROXY")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise MissingComponent(f"{INSTALL} (TTS_OPS_HAPROXY={chosen} is not executable)")
        return chosen
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None)
    if found is None:
        raise MissingComponent(INSTALL)
    return found


class HaproxyRouter:
    name = "haproxy"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    # --- where ---

    def home(self, service: Any) -> Path:
        return self.state_dir / "routers" / service.name

    def admin_socket(self, service: Any) -> Path:
        path = self.home(service) / "run" / "admin.sock"
        if len(str(path)) > _SOCKET_MAX:  # in a directory as private, with a shorter name
            digest = hashlib.sha256(service.name.encode()).hexdigest()[:10]
            path = self.state_dir / ".hx" / f"{digest}.s"
        if len(str(path)) > _SOCKET_MAX:
            raise ConfigError(f"{service.name}: the state dir {self.state_dir} is too long for"
                              " haproxy's admin socket path; use a shorter --state-dir")
        return path

    def api(self, service: Any) -> RuntimeApi:
        return RuntimeApi(self.admin_socket(service), service.name)

    # --- the process ---

    def process(self, service: Any) -> Any:
        home = self.home(service)
        try:
            binary = executable()
        except MissingComponent:
            binary = "haproxy"  # status and stop still work; a start says what to install
        labels = {"tts-ops/service": service.name, ROUTER_ROLE_LABEL: "router"}
        update: dict[str, Any] = {
            "name": f"{service.name}-router",
            # -Ws: master-worker, READY=1 to the notify socket once the worker listens
            "command": [binary, "-Ws", "-f", str(home / "haproxy.cfg")],
            "notify": True, "socket": "none", "router": None, "instances": 1,
            "health_check": service.health_check.model_copy(update={"type": "tcp"}),
            "labels": labels, "env": {}, "working_dir": home, "pid_file": None,
            "source": None, "install": None, "depends_on": [], "oneshot": False,
            "watchdog_sec": None, "workers": None, "voices_dir": None, "wyoming_port": None,
            "memory_max": None, "cpu_quota": None, "tasks_max": None, "user": None,
            "min_free_memory_mb": None, "min_free_disk_mb": None,
            "stop_signal": "USR1",  # soft stop: the requests in flight finish
            # the master exits when its worker dies: every moment without it is downtime
            "restart_delay": 0.2,
        }
        if service.log_file is not None:
            stem = service.log_file.name.removesuffix(".log")
            update["log_file"] = service.log_file.with_name(f"{stem}-router.log")
        return service.model_copy(update=update)

    # --- servers ---

    def sync(self, service: Any, servers: list[RouterServer]) -> bool:
        opts = options_of(service)
        home = self.home(service)
        private_dir(home)
        admin = self.admin_socket(service)
        private_dir(admin.parent)
        os.chmod(admin.parent, 0o700)  # whoever reaches the socket commands the router
        cfg = home / "haproxy.cfg"
        try:
            before = cfg.read_text()
        except OSError:
            before = None
        text = render(service, servers, opts, admin)
        if text != before:
            self._check(service, home, text)
            atomic_write_bytes(cfg, text.encode())
        atomic_write_json(home / "servers.json", [asdict(s) for s in servers])
        try:
            self._apply(service, servers, opts)
        except Unreachable:
            return False  # not running: it reads the config when it starts
        return before is not None and frame(before) != frame(text)

    def _check(self, service: Any, home: Path, text: str) -> None:
        """``haproxy -c`` on the new config before it replaces the old one."""
        trial = home / "haproxy.cfg.check"
        atomic_write_bytes(trial, text.encode())
        try:
            result = subprocess.run([executable(), "-c", "-f", str(trial)],
                                    capture_output=True, text=True, timeout=30)
        finally:
            trial.unlink(missing_ok=True)
        if result.returncode != 0:
            lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()
                     if "ALERT" in line or "error" in line.lower()] or ["(no message)"]
            raise OperationFailed(f"{service.name}: haproxy -c refused the rendered config:"
                                  f" {lines[0][:300]}; nothing was changed")

    def _apply(self, service: Any, servers: list[RouterServer], opts: HaproxyOptions) -> None:
        """The difference, in an order that never leaves the backend without a server to
        take a request: add, raise weights, then lower weights, then remove."""
        api = self.api(service)
        current = {row["svname"]: row for row in api.stat(BACKEND)}
        wanted = {s.name: s for s in servers}

        def old_weight(server: RouterServer) -> int:
            row = current[server.name]
            if row.get("status", "").startswith(("MAINT", "DRAIN")):
                return 0
            return int(row.get("uweight") or row.get("weight") or 0)

        kept = [s for s in servers if s.name in current]
        for server in [s for s in servers if s.name not in current]:
            where = f"{BACKEND}/{server.name}"
            api.expect(f"add server {where} {server.host}:{server.port} "
                       + server_options(opts, server.weight), ok="New server registered")
            api.expect(f"enable health {where}")
            api.expect(f"enable server {where}")
        for server in sorted(kept, key=lambda s: s.weight <= old_weight(s)):
            self._update(api, current[server.name], server)
        for name, row in current.items():
            if name in wanted:
                continue
            where = f"{BACKEND}/{name}"
            if not row.get("status", "").startswith("MAINT"):
                api.expect(f"set server {where} state maint")
            # refused while a connection to it is still open: it stays in maintenance
            # (no traffic) and goes with the next change or reload
            api.command(f"del server {where}")

    def _update(self, api: RuntimeApi, row: dict[str, str], server: RouterServer) -> None:
        where = f"{BACKEND}/{server.name}"
        moved = row.get("addr") != f"{server.host}:{server.port}"
        if moved:
            api.expect(f"set server {where} state maint")
            api.expect(f"set server {where} addr {server.host} port {server.port}",
                       ok="changed")
        if row.get("uweight", row.get("weight")) != str(server.weight):
            api.expect(f"set server {where} weight {server.weight}")
        if moved or row.get("status", "").startswith(("MAINT", "DRAIN")):
            api.expect(f"set server {where} state ready")

    def set_weights(self, service: Any, weights: dict[str, int]) -> None:
        saved = read_json(self.home(service) / "servers.json") or []
        servers = [RouterServer(**s) for s in saved]
        servers = [RouterServer(s.name, s.host, s.port, weights.get(s.name, s.weight))
                   for s in servers]
        unknown = sorted(set(weights) - {s.name for s in servers})
        if unknown:
            raise OperationFailed(f"{service.name}: the router has no server {unknown[0]!r}")
        self.sync(service, servers)

    def drain(self, service: Any, names: list[str], timeout: float) -> int:
        api = self.api(service)
        for name in names:
            api.expect(f"set server {BACKEND}/{name} state drain")
        deadline = time.monotonic() + timeout
        while True:
            left = sum(int(r.get("scur") or 0) for r in api.stat(BACKEND)
                       if r["svname"] in names)
            if left == 0 or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    # --- reading ---

    def status(self, service: Any) -> RouterState:
        state = RouterState(service=service.name, router=self.name,
                            address=f"{service.host}:{service.port}", frontend=FRONTEND,
                            running=False)
        api = self.api(service)
        try:
            info = api.info()
            rows = api.stat(BACKEND)
        except Unreachable as exc:
            state.detail = exc.message
            return state
        state.running = True
        state.worker_pid = int(info["Pid"]) if info.get("Pid", "").isdigit() else None
        for row in rows:
            state.servers.append(ServerState(
                name=row["svname"], address=row.get("addr") or "", weight=_int(row, "uweight"),
                state=row.get("status") or "", check=row.get("check_status") or "",
                sessions=_int(row, "scur"), requests=_int(row, "stot"),
                errors=_int(row, "hrsp_5xx") + _int(row, "eresp") + _int(row, "econ")))
        return state

    def reload(self, service: Any, pid: int) -> None:
        api = self.api(service)
        before = api.info().get("Pid")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # the master re-executes itself and hands the listening sockets over; a signal
            # that lands while a just-started master is still settling is lost: send again
            os.kill(pid, signal.SIGUSR2)
            again = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < again:
                try:
                    if api.info().get("Pid") not in (None, before):
                        return
                except Unreachable:
                    pass
                time.sleep(0.05)
        raise OperationFailed(f"{service.name}: haproxy did not reload within 10s; see"
                              f" tts-ops logs {service.name}-router")


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0
