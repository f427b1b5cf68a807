"""The router conformance suite against a real HAProxy."""

from __future__ import annotations

import pytest

from tts_ops.testing.contracts import RouterConformance


class TestHaproxyRouter(RouterConformance):
    @pytest.fixture
    def make_router(self, haproxy):
        from tts_ops_haproxy.router import HaproxyRouter

        return HaproxyRouter
