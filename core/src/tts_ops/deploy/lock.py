"""One deploy per service at a time: an flock, with who holds it written inside."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from tts_ops.errors import OperationFailed
from tts_ops.statefile import open_nofollow, private_dir


class DeployLock:
    def __init__(self, state_dir: Path, service: str) -> None:
        self.path = state_dir / "locks" / f"deploy-{service}.lock"
        self.service = service
        self.fd: int | None = None

    def __enter__(self) -> DeployLock:
        private_dir(self.path.parent)
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
            raise OperationFailed(
                f"{self.service}: another deploy is in progress (pid {holder.get('pid', '?')},"
                f" since {since}: {holder.get('cmd', '?')}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.time(),
                                  "cmd": " ".join(sys.argv[:6])}).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None
