"""Start real tts-server processes on free ports, with a NOTIFY_SOCKET the test owns."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tts_ops.testing import free_port


class NotifyListener:
    """A datagram socket standing in for systemd: collects what the service sends."""

    def __init__(self) -> None:
        self.name = f"tts-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages: list[str] = []

    @property
    def address(self) -> str:
        return "@" + self.name

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages:
                if needle in msg:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no notify message with {needle!r}: {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, notify: NotifyListener) -> None:
        self.proc = proc
        self.port = port
        self.notify = notify
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def start_server(tmp_path):
    started: list[Server] = []

    def start(*args: str, env: dict | None = None, wait_ready: bool = True,
              port: int | None = None, **popen) -> Server:
        port = port or free_port()
        listener = NotifyListener()
        full_env = {**os.environ, "NOTIFY_SOCKET": listener.address, **(env or {})}
        log = open(tmp_path / f"server-{port}.log", "wb")
        cmd = popen.pop("cmd", None) or [sys.executable, "-m", "tts_server", "--port", str(port),
                                         "--engine", "espeak", *args]
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, **popen)
        server = Server(proc, port, listener)
        server.log_path = tmp_path / f"server-{port}.log"
        started.append(server)
        if wait_ready:
            listener.wait_for("READY=1")
        return server

    yield start
    for server in started:
        server.stop()
        server.notify.close()
