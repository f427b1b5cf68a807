"""Zero downtime on the configured address with supervisord (the socket holder passes the
address to each program through tts_ops.sockets.activate), with a real ``hey``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_pinned_keep_alive_client_sees_no_error_through_every_operation(supervisord,
                                                                          tmp_path):
    from tts_ops_strategies import plugin as strategies_plugin
    from tts_ops_supervisor import plugin as supervisor_plugin

    from tts_ops.testing import make_host
    from tts_ops.testing.load import require_hey
    from tts_ops.testing.zero_downtime import problems, run_scenario

    require_hey()
    result = run_scenario(tmp_path, make_host(supervisor_plugin, strategies_plugin),
                          "supervisor", ["--supervisor-conf", str(supervisord.conf)])
    assert problems(result) == [], "\n".join(s.output for s in result.steps)
    assert result.load.total > 100
    assert not list((tmp_path / "state" / "sockets").glob("*.json"))  # the holder is gone
