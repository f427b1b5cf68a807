"""Zero downtime on the configured address with systemd: a real socket unit shared by the
generations, and a real ``hey`` pinned to it."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.slow


def test_a_pinned_keep_alive_client_sees_no_error_through_every_operation(user_manager,
                                                                          tmp_path):
    from tts_ops_strategies import plugin as strategies_plugin
    from tts_ops_systemd import plugin as systemd_plugin
    from tts_ops_systemd.systemctl import Systemctl

    from tts_ops.testing import make_host
    from tts_ops.testing.load import require_hey
    from tts_ops.testing.zero_downtime import problems, run_scenario

    require_hey()
    result = run_scenario(tmp_path, make_host(systemd_plugin, strategies_plugin), "systemd")
    assert problems(result) == [], "\n".join(s.output for s in result.steps)
    assert result.load.total > 100
    # stop --all let the address go: no socket unit is left listening, the port is free
    listening = Systemctl("user").run("list-units", "--type=socket", "--state=active",
                                      "--no-legend", check=False).stdout
    assert "-address.socket" not in listening
    host, port = result.address.split(":")
    with socket.socket() as s:  # SO_REUSEADDR: the closed connections' TIME_WAIT is fine
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
