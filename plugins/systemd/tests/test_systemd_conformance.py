"""The systemd backend passes the core's conformance suite unchanged, on a real manager."""

from tts_ops.testing.conformance import BackendConformance


class TestSystemdConformance(BackendConformance):
    pass
