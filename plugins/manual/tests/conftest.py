"""Fixtures for the manual backend's tests: a backend on a private state dir."""

from __future__ import annotations

import pytest

from tts_ops.backend import BackendContext
from tts_ops_manual.backend import ManualBackend


class EventLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, hook: str, **kwargs) -> None:
        self.calls.append((hook, kwargs))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def backend(state_dir, events) -> ManualBackend:
    """The backend as the core uses it: wrapped by `Lifecycle`, which fires the hooks."""
    from tts_ops.lifecycle import Lifecycle

    return Lifecycle(ManualBackend(BackendContext(state_dir=state_dir, emit=events)), events)
