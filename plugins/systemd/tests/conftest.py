"""A real ``systemd --user`` manager for the tests (see `tts_ops_systemd.usermanager`)."""

from __future__ import annotations

import os

import pytest
from tts_ops_systemd.usermanager import ManagerUnavailable, UserManager

from tts_ops.backend import BackendContext


@pytest.fixture(scope="session")
def user_manager():
    manager = UserManager()
    try:
        manager.start()
    except ManagerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide a systemd user manager: {exc}")
        pytest.skip(str(exc))
    yield manager
    manager.stop()


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def backend(user_manager, state_dir):
    from tts_ops_systemd.backend import SystemdBackend

    return SystemdBackend(BackendContext(state_dir=state_dir, options={"scope": "user"}))
