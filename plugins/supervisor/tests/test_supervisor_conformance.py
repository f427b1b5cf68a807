"""The supervisor backend passes the core's conformance suite unchanged, on a real supervisord."""

from tts_ops.testing.conformance import BackendConformance


class TestSupervisorConformance(BackendConformance):
    pass
