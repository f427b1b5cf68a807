"""The ``tts-ops`` entry point: the queries the last same invocation ran start first
(`tts_ops.prefetch`), then the command, whose imports they overlap; then an exit without
the interpreter's teardown when nothing is left for it to do."""

from __future__ import annotations

import sys


def main() -> None:
    from tts_ops import prefetch

    prefetch.start(sys.argv[1:])
    from tts_ops.cli import main as cli

    try:
        cli()
    except SystemExit as exc:
        leave(exc.code)
    leave(0)


def leave(code: object) -> None:
    """Exit with ``code`` as `sys.exit` would, but skip freeing every module (about 10 ms
    of each command, a tenth of a ``status``) when no other thread is left for the
    interpreter to wait for; the exit handlers run and the output is flushed first."""
    import os
    import threading

    if isinstance(code, str):  # as sys.exit("message") does
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else code if isinstance(code, int) else 1
    if threading.active_count() > 1:
        sys.exit(status)
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the reader went away, as the CLI says it
        print("tts-ops: output closed before the command finished", file=sys.stderr)
        status = status or 1
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)
