"""A private supervisord for the tests, with its config and socket in a temporary dir."""

from __future__ import annotations

import os
import shutil

import pytest

from tts_ops.backend import BackendContext


@pytest.fixture(scope="session")
def supervisord():
    from tts_ops_supervisor.daemon import PrivateSupervisord

    if shutil.which("supervisord") is None and not os.path.exists(
            os.path.join(os.path.dirname(os.sys.executable), "supervisord")):
        if os.environ.get("CI"):
            pytest.fail("CI must install supervisor (pip install supervisor)")
        pytest.skip("supervisor is not installed")
    with PrivateSupervisord() as daemon:
        yield daemon


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def backend(supervisord, state_dir):
    from tts_ops_supervisor.backend import SupervisorBackend

    return SupervisorBackend(BackendContext(state_dir=state_dir,
                                            options={"conf": str(supervisord.conf)}))
