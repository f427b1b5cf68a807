"""Commands on a fleet host through the system OpenSSH client, as Ansible and Kamal run them.

The operator's ``~/.ssh/config``, agent and ``known_hosts`` apply; nothing here turns host
key checking off (``ssh_options`` may, when the operator writes it). Every host gets one
multiplexed connection (``ControlMaster=auto``, ``ControlPersist``) whose socket lives in
a private directory, so the second command to a host costs no new handshake.

The remote side of ssh always hands the command to the login shell as one string: each
argument is quoted with `shlex.quote` (POSIX shell quoting), and every value in it was
validated first (no control characters, no leading '-'), so an argument stays one argument.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the views of `tts_ops.fleet.hosts` serve as well
    from tts_ops.fleet.inventory import FleetConfig, FleetHost

#: seconds a multiplexed connection outlives its last command
PERSIST_S = 120
CONNECT_TIMEOUT_S = 10
#: a host that stops answering (its link went down) is given up after 3 x 3 s, by the
#: connection every command to it shares, instead of TCP's quarter of an hour
ALIVE = ["-o", "ServerAliveInterval=3", "-o", "ServerAliveCountMax=3"]


def control_dir() -> Path:
    from tts_ops.statefile import private_dir

    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return private_dir(Path(base) / "tts-ops" / "ssh")


@dataclass
class Answer:
    host: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def problem(self) -> str:
        """One line: why it failed (ssh's own error, or the remote tts-ops's)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if self.returncode == 255:  # ssh's own code: the host was not reached
            return f"{self.host}: unreachable over ssh: {lines[-1] if lines else 'exit 255'}"
        return f"{self.host}: {lines[-1] if lines else f'exit {self.returncode}'}"


def ssh_argv(fleet: FleetConfig, host: FleetHost, remote: list[str]) -> list[str]:
    """The local argv that runs ``remote`` (an argv) on ``host``."""
    # the operator's options first: for each option ssh keeps the first value it is given
    return ["ssh", *fleet.ssh_options, "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", *_multiplexing(), *ALIVE, "--",
            host.ssh, shlex.join(remote)]


def _multiplexing() -> list[str]:
    folder = str(control_dir())
    if len(folder) + len("/%C") + 40 >= 104:  # a unix socket's path holds 108 bytes at most
        return ["-o", "ControlMaster=no"]  # a connection per command: slower, still right
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C",
            "-o", f"ControlPersist={PERSIST_S}"]


def disconnect(fleet: FleetConfig, host: FleetHost) -> None:
    """End the multiplexed connection to ``host``, if one is open."""
    subprocess.run(["ssh", "-o", f"ControlPath={control_dir()}/%C", *fleet.ssh_options,
                    "-O", "exit", "--", host.ssh], capture_output=True, timeout=30)


def remote_argv(host: FleetHost, args: list[str]) -> list[str]:
    """``tts-ops`` on the host with the config it received, then ``args``."""
    return tts_ops_argv(host, ["fleet", "receive", "--", *args])


def tts_ops_argv(host: FleetHost, args: list[str]) -> list[str]:
    state = ["--state-dir", host.state_dir] if host.state_dir else []
    return [host.tts_ops, *state, *args]


def run(fleet: FleetConfig, host: FleetHost, args: list[str], config: bytes,
        timeout: float | None = None, remote: list[str] | None = None) -> Answer:
    """Send ``config`` and run ``tts-ops ARGS`` on ``host``, in one ssh round trip
    (``remote``: another remote argv, ``config`` its stdin)."""
    try:
        done = subprocess.run(ssh_argv(fleet, host, remote or remote_argv(host, args)),
                              input=config, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Answer(host.name, 124, "", f"no answer within {timeout:g}s")
    except FileNotFoundError:
        return Answer(host.name, 127, "", "the ssh command is not installed (apt install"
                      " openssh-client)")
    return Answer(host.name, done.returncode, done.stdout.decode(errors="replace"),
                  done.stderr.decode(errors="replace"))


def stream(fleet: FleetConfig, host: FleetHost, args: list[str], config: bytes
           ) -> subprocess.Popen[str]:
    """As `run`, with the output read as it comes (a deploy's progress)."""
    proc = subprocess.Popen(ssh_argv(fleet, host, remote_argv(host, args)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write(config.decode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # ssh ended at once (unreachable): its stderr says why
    return proc
