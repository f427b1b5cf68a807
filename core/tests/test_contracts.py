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
        from tts_ops.testing.contracts import file_sink_maker

        return file_sink_maker(tmp_path / "svc.log", FileSink)


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


def _configs():
    from tts_ops.config.models import ServiceConfig

    return [
        ServiceConfig(name="plain"),
        ServiceConfig(name="full", command=["x", "--port", "{port}"], env={"A": "b"},
                      log_file="/tmp/x.log", working_dir="/tmp", health_check="tcp",
                      labels={"k": "v"},
                      deploy={"strategy": "canary", "canary": {"steps": [10, 100]}},
                      depends_on=[{"service_name": "plain"}], voices_dir="/tmp", workers=2,
                      socket="inherit", instances=2, user="nobody", memory_max="1G"),
        ServiceConfig(name="engine", engine_type="espeak", port=9100, host="0.0.0.0",
                      health_check={"type": "http", "path": "/ready"}, wyoming_port=10200),
    ]


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.name)
def test_hooks_get_the_same_service_from_the_cache_as_from_the_model(config, tmp_path):
    """A cached config reaches hooks as a `ServiceView`: every field, derived value and
    dump is what the pydantic `ServiceConfig` gives."""
    import json

    from tts_ops.config.service import ServiceView

    view = ServiceView(config.model_dump(mode="json"))

    def plain(value):
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    for field in type(config).model_fields:
        assert plain(getattr(view, field)) == plain(getattr(config, field)), field
        assert type(plain(getattr(view, field))) is type(plain(getattr(config, field))), field
    for derived in ("uses_reference_server", "uses_port", "speaks_notify", "socket_mode",
                    "owner"):
        assert getattr(view, derived) == getattr(config, derived), derived
    assert view.argv("/py") == config.argv("/py") and view.health_url() == config.health_url()
    assert view.shared_address() == config.shared_address()
    assert view.log_path(tmp_path) == config.log_path(tmp_path)
    assert view.model_dump() == config.model_dump()
    assert view.model_dump(mode="json") == config.model_dump(mode="json")
    assert json.loads(view.model_dump_json()) == json.loads(config.model_dump_json())
    changed = view.model_copy(update={"port": 9999})
    assert changed.port == 9999 and view.port == config.port
    with pytest.raises(AttributeError):
        view.port = 1
