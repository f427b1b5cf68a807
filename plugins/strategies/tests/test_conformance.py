"""Every first-party strategy passes the strategy conformance suite, deploying a real
service under the manual backend through the real CLI."""

from __future__ import annotations

import pytest
from tts_ops_strategies import plugin as strategies_plugin

from tts_ops.testing.contracts import StrategyConformance
from tts_ops_manual import plugin as manual_plugin


@pytest.fixture(params=["direct", "blue_green", "rolling", "canary"])
def strategy_name(request):
    return request.param


@pytest.fixture
def plugins():
    return [manual_plugin, strategies_plugin]


class TestFirstPartyStrategies(StrategyConformance):
    pass
