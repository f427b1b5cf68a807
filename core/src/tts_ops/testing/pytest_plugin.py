"""pytest fixtures shipped with tts-ops (loaded through the ``pytest11`` entry point).

* ``tts_ops_host``: a factory for plugin hosts with exactly the given plugins;
* ``tts_ops_cli``: run ``tts-ops`` in process against such a host.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def tts_ops_host():
    from tts_ops.testing import make_host

    return make_host


@pytest.fixture
def tts_ops_cli():
    from tts_ops.testing import run_cli

    return run_cli
