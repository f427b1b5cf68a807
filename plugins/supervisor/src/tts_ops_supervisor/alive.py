"""``python -m tts_ops_supervisor.alive CONF PROGRAM``: exit 0 when supervisord runs PROGRAM.

The heartbeat keeper asks it before every beat: a service whose address outlives it (the
socket holder of ``socket: inherit`` still accepts) passed a ``tcp`` check while it was
FATAL. Exit 1: not running (its state on stderr); 3: supervisord could not be asked.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tts_ops_supervisor.alive CONF PROGRAM", file=sys.stderr)
        return 2
    from pathlib import Path

    from tts_ops_supervisor.conf import read_conf
    from tts_ops_supervisor.rpc import Client

    try:
        info = Client(read_conf(Path(argv[0]))).call("supervisor.getProcessInfo", argv[1])
    except Exception as exc:  # unreachable, a fault, a conf it cannot read: one line
        print(f"cannot ask supervisord about {argv[1]}: {exc}", file=sys.stderr)
        return 3
    if info.get("statename") == "RUNNING":
        return 0
    print(f"{argv[1]} is {info.get('statename')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
