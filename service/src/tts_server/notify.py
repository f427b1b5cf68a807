"""The systemd notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) through sdnotify.

Silent when there is no ``NOTIFY_SOCKET``. Status texts are kept ASCII: sdnotify encodes
latin-1 and drops anything else without a word.
"""

from __future__ import annotations

import os


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n = None
        if self.enabled:
            import sdnotify

            self._n = sdnotify.SystemdNotifier()

    def send(self, message: str) -> None:
        if self._n is not None:
            self._n.notify(message.encode("ascii", "replace").decode("ascii"))

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=draining")

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of ``WATCHDOG_USEC`` in seconds, when it is set for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None
