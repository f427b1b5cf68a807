"""The core's own registry store and log sink pass the conformance suites third parties
run (`tts_ops.testing.contracts`)."""

from __future__ import annotations

import pytest

from tts_ops.testing.contracts import LogSinkConformance, RegistryStoreConformance


class TestSqliteStore(RegistryStoreConformance):
    @pytest.fixture
    def open_store(self, tmp_path):
        from tts_ops.discovery.store import SqliteStore

        return lambda: SqliteStore(tmp_path / "registry.db")


class TestFileSink(LogSinkConformance):
    @pytest.fixture
    def make_sink(self, tmp_path):
        from tts_ops.logs.sinks import FileSink

        path = tmp_path / "svc.log"

        def make(lines: list[bytes]):
            path.write_bytes(b"".join(lines))

            def append(line: bytes) -> None:
                with open(path, "ab") as fh:
                    fh.write(line)

            return FileSink(path), append

        return make


def test_lifecycle_hooks_fire_the_same_way_on_every_backend(tmp_path):
    """The core fires started/ready, failed, stopping/stopped around the backend's calls;
    the backend itself fires none (it reports facts)."""
    from tts_ops.backend import BackendContext
    from tts_ops.config.models import ServiceConfig
    from tts_ops.lifecycle import Lifecycle
    from tts_ops.testing import DUMMY, free_port
    from tts_ops_manual.backend import ManualBackend

    fired: list[str] = []
    by_backend: list[str] = []
    context = BackendContext(state_dir=tmp_path, emit=lambda h, **k: by_backend.append(h))
    raw = ManualBackend(context)
    backend = Lifecycle(raw, lambda hook, **kw: fired.append(hook))
    port = free_port()
    svc = ServiceConfig(name="lc", port=port, command=[*DUMMY, "--port", str(port)], notify=True)
    broken = ServiceConfig(name="lcbad", command=["/nonexistent/cmd"], health_check="none")
    try:
        backend.start(svc)
        backend.stop(svc)
        backend.stop(svc)  # nothing running: the same two hooks
        with pytest.raises(Exception, match="cannot execute"):
            backend.start(broken)
    finally:
        raw.stop(svc, force=True)
    assert fired == ["tts_ops_service_started", "tts_ops_service_ready",
                     "tts_ops_service_stopping", "tts_ops_service_stopped",
                     "tts_ops_service_stopping", "tts_ops_service_stopped",
                     "tts_ops_service_failed"]
    assert [h for h in by_backend if h.startswith("tts_ops_service_")] == []
