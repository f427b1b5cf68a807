"""The manual backend passes the core's backend conformance suite unchanged."""

from tts_ops.testing.conformance import BackendConformance


class TestManualConformance(BackendConformance):
    pass
