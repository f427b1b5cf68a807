"""Helpers for testing tts-ops and its plugins: hosts, CLI runner, ports, waiting.

The backend conformance suite is in `tts_ops.testing.conformance`; the small
controllable service it runs is `tts_ops.testing.dummy_service`.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

DUMMY = [sys.executable, "-m", "tts_ops.testing.dummy_service"]

#: text a config may hold that is hostile to the formats backends render (shell quoting,
#: ini comments and sections, % interpolation, $ expansion, C escapes, unit specifiers):
#: every renderer must carry each one to the program exactly
HOSTILE_TEXT = ["two words", "100%", "%%", "%(ENV_HOME)s", "%n", "%i", "$HOME", "${PATH}",
                "$$", 'q"uote', "back\\slash", "\\n", "semi;colon", "x ;y", "a #b", "x\\;",
                "'single'", "it's", "é ünïcode", "[program:evil]", "command=/bin/sh",
                "=", ",", "a,b=c", "-", "--", "*", "~", "`id`", "$(id)", "<>|&"]
#: text the config layer refuses, and every renderer refuses again (defence in depth)
FORBIDDEN_TEXT = ["a\nb", "a\rb", "a\0b", "a\tb", "\x1b[31m", "a\x7fb",
                  "x\ncommand=/bin/sh -c 'touch /tmp/pwned'"]


def make_host(*plugins: object, load_entrypoints: bool = False):
    """A fresh plugin host with exactly these plugin objects (modules or instances)."""
    from tts_ops.plugins import PluginHost

    return PluginHost(load_entrypoints=load_entrypoints, plugins=plugins)


def run_cli(args: list[str], host=None, env: dict[str, str] | None = None):
    """Invoke ``tts-ops`` in process with click's runner; returns the click Result."""
    from click.testing import CliRunner

    from tts_ops.cli import create_cli

    cli = create_cli((lambda: host) if host is not None else None)
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def free_port() -> int:
    """A free port whose next three are free too (green slots and instances take
    ``port + n``), below the ephemeral range (see `free_port_run`)."""
    return free_port_run(4)


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports, chosen below the kernel's ephemeral
    range: a port next to one ``bind(0)`` gave is where ``connect()`` takes its source
    ports from (Linux prefers the other parity for it), so any outgoing connection on the
    host could take it between this check and the service's own bind."""
    import random

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    bottom = 10000
    for _ in range(200):
        first = random.randrange(bottom, max(bottom + 1, low - count))
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def live_children(pid: int) -> set[int]:
    """Pids of a process's children that still run: zombies and those reaped meanwhile left out.

    A child can be reaped between listing it and reading its state; that is a child gone,
    not an error.
    """
    import psutil

    alive = set()
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def read_one_line_then_leave(argv: list[str], env: dict[str, str], timeout: float = 10.0
                              ) -> tuple[bytes, int | None, str]:
    """Run ``argv`` with its stdout on a pipe, read one line and close the pipe (``| head
    -1``): (that line, the exit code within ``timeout`` or None, its stderr)."""
    import os
    import subprocess

    read_end, write_end = os.pipe()
    proc = subprocess.Popen(argv, env=env, stdout=write_end, stderr=subprocess.PIPE,
                            text=True)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            line = reader.readline()
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        proc.kill()
        return line, code, proc.communicate()[1]
    finally:
        proc.kill()
        proc.wait()


def service(name: str, **fields: Any):
    """A validated ServiceConfig (raises on bad fields, like a config file would)."""
    from tts_ops.config.models import ServiceConfig

    return ServiceConfig.model_validate({"name": name, **fields})


@contextlib.contextmanager
def tiny_disk(parent: Any, size: str = "256k") -> Iterator[Any]:
    """A real tmpfs of ``size`` mounted at ``parent/disk`` (needs root): a real ENOSPC.

    Skips the test where mounting is not allowed, and fails it in CI (``CI=true``).
    """
    import os
    import subprocess
    from pathlib import Path

    import pytest

    mnt = Path(parent) / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_disk(disk: Any) -> None:
    """Write ``disk/filler`` until the file system says ENOSPC."""
    import os
    from pathlib import Path

    fd = os.open(Path(disk) / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
