"""A real ``systemd --user`` manager for the tests (see `tts_ops_systemd.usermanager`)."""

from __future__ import annotations

import pytest

from tts_ops.backend import BackendContext


@pytest.fixture(scope="session")
def user_manager():
    from tts_ops_systemd.testing import user_manager_for_tests

    with user_manager_for_tests() as manager:
        yield manager


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def backend(user_manager, state_dir):
    from tts_ops_systemd.backend import SystemdBackend

    return SystemdBackend(BackendContext(state_dir=state_dir, options={"scope": "user"}))
