"""Zero downtime on the configured address with the manual backend (a real ``hey``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_pinned_keep_alive_client_sees_no_error_through_every_operation(tmp_path):
    from tts_ops_strategies import plugin as strategies_plugin

    from tts_ops.testing import make_host
    from tts_ops.testing.load import require_hey
    from tts_ops.testing.zero_downtime import problems, run_scenario
    from tts_ops_manual import plugin as manual_plugin

    require_hey()
    result = run_scenario(tmp_path, make_host(manual_plugin, strategies_plugin), "manual")
    assert problems(result) == [], "\n".join(s.output for s in result.steps)
    assert result.load.total > 100  # the client really ran through all of it
    assert not list((tmp_path / "state" / "sockets").glob("*.json"))  # the holder is gone
