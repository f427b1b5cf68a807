"""Exec a command with the service's shared socket, for managers that cannot pass one.

``python -m tts_ops.sockets.activate STATE_DIR NAME HOST PORT COMMAND [ARG ...]`` fetches
service NAME's listening socket from its holder (`tts_ops.sockets.holder`), starting the
holder first if none runs (after a reboot, for a program supervisord autostarts), puts it
on descriptor 3, sets
``LISTEN_FDS=1``, ``LISTEN_PID`` (its own pid, which the command keeps: this is an exec)
and ``LISTEN_FDNAMES=http``, and execs the command. supervisord runs it as the program's
command, so the program supervisord sees is the service itself. Standard library only.
"""

from __future__ import annotations

import os
import sys

from tts_ops.sockets import SocketUnavailable, activation_env, ensure_holder, fetch

USAGE = "usage: python -m tts_ops.sockets.activate STATE_DIR NAME HOST PORT COMMAND [ARG ...]"


def main(argv: list[str]) -> int:
    if len(argv) < 5 or not argv[3].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    state_dir, name, host, port = argv[0], argv[1], argv[2], int(argv[3])
    argv = argv[4:]
    try:
        fd = fetch(ensure_holder(state_dir, name, host, port))
    except SocketUnavailable as exc:
        print(f"tts-ops: error: {exc}", file=sys.stderr)
        return 1
    if fd != 3:
        os.dup2(fd, 3)  # inheritable
        os.close(fd)
    else:
        os.set_inheritable(3, True)
    os.environ.update(activation_env())
    os.environ["LISTEN_PID"] = str(os.getpid())
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"tts-ops: error: cannot execute {argv[0]!r}: {exc.strerror or exc}",
              file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
