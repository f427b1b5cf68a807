"""The supervisor backend passes the core's conformance suite unchanged, on a real
supervisord, and its log sink the log sink suite."""

import pytest

from tts_ops.testing.conformance import BackendConformance
from tts_ops.testing.contracts import LogSinkConformance

pytestmark = pytest.mark.slow


class TestSupervisorConformance(BackendConformance):
    pass


class TestSupervisorSinkConformance(LogSinkConformance):
    """The registered ``supervisor`` sink: supervisord's log file of a program (and its
    ``NAME.log.N`` backups), written here as supervisord writes it."""

    @pytest.fixture
    def make_sink(self, tmp_path):
        from tts_ops_supervisor import plugin

        from tts_ops.testing import make_host
        from tts_ops.testing.contracts import file_sink_maker

        factory = make_host(plugin).lookup("log_sink", "supervisor").factory
        return file_sink_maker(tmp_path / "tts-out.log", factory)
