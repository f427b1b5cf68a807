"""The backend conformance suite: black-box tests every process backend passes unchanged.

A backend's test module subclasses `BackendConformance` and provides one fixture,
``backend``, returning a ready-to-use backend instance talking to its real process
manager::

    from tts_ops.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(BackendContext(state_dir=tmp_path))

The tests use `tts_ops.testing.dummy_service`, which serves ``/health`` and speaks the
notify protocol, so backends with or without a readiness protocol both apply.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request
import uuid

import pytest

from tts_ops.backend import CAPABILITIES, ServiceStatus, StartFailed, State, Support
from tts_ops.procinfo import start_ticks
from tts_ops.testing import DUMMY, free_port, service, wait_for


def _get(port: int, path: str = "/health") -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.status


def _alive(pid: int | None) -> bool:
    return bool(pid) and start_ticks(pid) is not None


class BackendConformance:
    """Subclass and provide a ``backend`` fixture."""

    #: how long a backend may take to notice a crash and report the new process
    recovery_timeout = 15.0

    @pytest.fixture
    def make_service(self, backend, request):
        made = []

        def make(*args: str, **fields):
            port = fields.pop("port", None) or free_port()
            name = fields.pop("name", None) or f"conf-{uuid.uuid4().hex[:8]}"
            fields.setdefault("command", [*DUMMY, "--port", str(port), *args])
            fields.setdefault("health_check", "http:/health")
            fields.setdefault("notify", True)
            fields.setdefault("restart_delay", 0)
            fields.setdefault("start_timeout", 15)
            fields.setdefault("stop_timeout", 5)
            fields.setdefault("health_check_interval", 1)
            svc = service(name, port=port, **fields)
            made.append(svc)
            return svc

        yield make
        for svc in made:
            try:
                backend.stop(svc, force=True)
            except Exception:
                pass
            try:
                backend.uninstall(svc)
            except Exception:
                pass
            try:
                backend.release_socket(svc)
            except Exception:
                pass

    def status_of(self, backend, svc) -> ServiceStatus:
        (st,) = backend.status([svc])
        return st

    # --- the contract ---

    def test_capabilities_cover_every_name(self, backend):
        caps = backend.capabilities()
        assert set(CAPABILITIES) <= set(caps)
        # each a Support value ("native", "emulated", "unsupported"), nothing else
        unknown = {name: v for name, v in caps.items() if v not in {s.value for s in Support}}
        assert not unknown, f"not a Support value: {unknown}"
        ok, why = backend.available()
        assert ok, why

    def test_start_returns_when_ready(self, backend, make_service):
        svc = make_service("--ready-after", "0.5")
        st = backend.start(svc)
        assert st.state == State.RUNNING and st.ready
        # "start returned" means ready: the health endpoint answers at once
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/health", timeout=5) as resp:
            assert resp.status == 200
        assert _alive(st.pid)

    def test_start_twice_keeps_the_running_process(self, backend, make_service):
        svc = make_service()
        first = backend.start(svc)
        second = backend.start(svc)
        assert second.pid == first.pid and second.state == State.RUNNING

    def test_status_fields(self, backend, make_service):
        svc = make_service()
        backend.start(svc)
        st = self.status_of(backend, svc)
        assert st.name == svc.name and st.backend == backend.name
        assert st.state == State.RUNNING and st.ready is True
        assert _alive(st.pid)
        assert st.uptime_s is not None and st.uptime_s >= 0
        assert st.restarts == 0
        assert (st.host, st.port) == (svc.host, svc.port)
        data = st.to_json()
        for key in ("name", "backend", "state", "pid", "ready", "uptime_s", "restarts",
                    "exit_code", "cpu_percent", "rss_bytes", "host", "port"):
            assert key in data

    def test_status_of_a_never_started_service_is_stopped(self, backend, make_service):
        svc = make_service()
        st = self.status_of(backend, svc)
        assert st.state == State.STOPPED and st.pid is None and not st.ready

    def test_stop_leaves_no_process_including_forked_grandchild(self, backend, make_service,
                                                                 tmp_path):
        pidfile = tmp_path / "grandchild.pid"
        svc = make_service("--fork-grandchild", str(pidfile))
        st = backend.start(svc)
        grandchild = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(),
                                  message="grandchild pid"))
        assert _alive(grandchild)
        stopped = backend.stop(svc)
        assert stopped.state == State.STOPPED
        # stop returned: nothing of the service is left, the grandchild ignored SIGTERM
        assert not _alive(st.pid)
        assert not _alive(grandchild)
        assert self.status_of(backend, svc).state == State.STOPPED

    def test_stop_force_kills_a_service_that_ignores_sigterm(self, backend, make_service):
        svc = make_service("--ignore-term", stop_timeout=30)
        st = backend.start(svc)
        started = time.monotonic()
        backend.stop(svc, force=True)
        assert time.monotonic() - started < 15
        assert not _alive(st.pid)

    def test_a_shared_address_stays_open_between_generations_and_is_released(
            self, backend, make_service):
        """``socket: inherit``: the backend binds the address once and passes it to the
        service; while no process of the service runs the address still accepts (the
        connection waits in the queue), and only ``release_socket`` closes it."""
        svc = make_service(socket="inherit")
        backend.start(svc)
        assert _get(svc.port) == 200
        backend.stop(svc)
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5):
            pass  # accepted by the kernel into the held queue: not refused
        backend.start(svc)
        assert _get(svc.port) == 200
        backend.stop(svc)
        backend.release_socket(svc)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", svc.port), timeout=5).close()

    def test_kill_9_is_recovered(self, backend, make_service):
        svc = make_service()
        first = backend.start(svc)
        os.kill(first.pid, signal.SIGKILL)

        def recovered():
            st = self.status_of(backend, svc)
            return st if st.pid not in (None, first.pid) and st.ready else None

        st = wait_for(recovered, timeout=self.recovery_timeout, message="restart after kill -9")
        assert st.state == State.RUNNING and st.restarts >= 1

    def test_crash_loop_ends_in_failed(self, backend, make_service):
        crash = [sys.executable, "-c", "import sys; print('crash'); sys.exit(3)"]
        svc = make_service(command=crash, health_check="none", notify=False, max_restarts=2,
                           start_seconds=2)
        with pytest.raises(StartFailed):
            backend.start(svc)
        st = wait_for(lambda: (s := self.status_of(backend, svc)).state == State.FAILED and s,
                      timeout=self.recovery_timeout, message="state failed")
        assert st.restarts == 2
        assert st.pid is None

    def test_readiness_timeout_fails_start(self, backend, make_service):
        svc = make_service("--never-ready", start_timeout=2)
        started = time.monotonic()
        with pytest.raises(StartFailed) as info:
            backend.start(svc)
        assert time.monotonic() - started < 2 + 10
        assert info.value.reason
        st = self.status_of(backend, svc)
        assert st.state != State.RUNNING and not st.ready

    def test_bad_command_fails_at_once(self, backend, make_service, tmp_path):
        missing = str(tmp_path / "no-such-program")
        svc = make_service(command=[missing], notify=False, health_check="none")
        started = time.monotonic()
        with pytest.raises(StartFailed) as info:
            backend.start(svc)
        assert time.monotonic() - started < 10
        assert "no-such-program" in info.value.reason or any(
            "no-such-program" in line for line in info.value.log_tail)
        st = self.status_of(backend, svc)
        assert st.state == State.FAILED
        assert st.restarts == 0

    def test_logs_show_the_service_output(self, backend, make_service):
        token = f"hello-{uuid.uuid4().hex[:6]}"
        svc = make_service("--print", token)
        backend.start(svc)
        lines = wait_for(lambda: [ln for ln in backend.logs(svc, 50, False) if token in ln],
                         message="the token in the logs")
        assert lines

    def test_restart_replaces_the_process(self, backend, make_service):
        svc = make_service()
        first = backend.start(svc)
        second = backend.restart(svc)
        assert second.ready and second.pid != first.pid
        assert not _alive(first.pid)
