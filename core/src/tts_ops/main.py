"""The ``tts-ops`` entry point: the queries the last same invocation ran start first
(`tts_ops.prefetch`), then the command, whose imports they overlap."""

from __future__ import annotations

import sys


def main() -> None:
    from tts_ops import prefetch

    prefetch.start(sys.argv[1:])
    from tts_ops.cli import main as cli

    cli()
