"""Core: ``tts-ops --version`` cold start against ``python -c "import click"``."""

from __future__ import annotations

import sys

from bench.common import VENV_BIN, Result, median_run


def cold_start(quick: bool) -> list[Result]:
    repeat = 10 if quick else 30
    anchor = median_run([sys.executable, "-c", "import click"], repeat)
    figure = median_run([str(VENV_BIN / "tts-ops"), "--version"], repeat)
    result = Result("cli cold start: tts-ops --version", figure * 1000, "ms", anchor * 1000,
                    'python -c "import click"', "ratio < 2.0")
    result.ok = result.ratio < 2.0
    return [result]
