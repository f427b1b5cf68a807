"""For tests of anything run under systemd: a real ``systemd --user`` manager, or a skip
(a failure in CI, ``CI=true``, where it must exist)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from tts_ops_systemd.usermanager import ManagerUnavailable, UserManager


@contextlib.contextmanager
def user_manager_for_tests() -> Iterator[UserManager]:
    import pytest

    manager = UserManager()
    try:
        manager.start()
    except ManagerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide a systemd user manager: {exc}")
        pytest.skip(str(exc))
    try:
        yield manager
    finally:
        manager.stop()
