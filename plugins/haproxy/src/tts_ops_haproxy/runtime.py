"""HAProxy's runtime API on its admin socket: one command per connection.

``show stat`` is CSV (read with the csv module), ``show info`` is ``Name: value`` lines.
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path

from tts_ops.plugin import OperationFailed


class Unreachable(OperationFailed):
    """The admin socket did not answer: HAProxy is not running (or not yet)."""


class RuntimeApi:
    def __init__(self, path: Path, service: str, timeout: float = 5.0) -> None:
        self.path = path
        self.service = service
        self.timeout = timeout

    def command(self, line: str) -> str:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise Unreachable(f"{self.service}: haproxy's runtime socket {self.path} is"
                              f" unreachable ({why}); is {self.service}-router running?"
                              f" (tts-ops status {self.service})") from None
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def expect(self, line: str, ok: str = "") -> str:
        """Run a command that answers nothing (or ``ok``) on success; else raise its answer."""
        answer = self.command(line).strip()
        if answer and (not ok or ok not in answer):
            raise OperationFailed(f"{self.service}: haproxy refused {line!r}:"
                                  f" {answer.splitlines()[0]}")
        return answer

    def stat(self, backend: str) -> list[dict[str, str]]:
        """``show stat`` rows of ``backend``'s servers."""
        text = self.command("show stat")
        header, _, body = text.lstrip("# ").partition("\n")
        rows = csv.DictReader(body.splitlines(), fieldnames=header.rstrip(",").split(","))
        return [r for r in rows if r.get("pxname") == backend
                and r.get("svname") not in ("FRONTEND", "BACKEND")]

    def info(self) -> dict[str, str]:
        out = {}
        for line in self.command("show info").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out
