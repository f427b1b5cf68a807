"""What keeps many or lying clients from taking ``tts-ops web`` down.

* A request's headers must arrive within ``HEADER_TIMEOUT`` of the connection (or of the
  end of the previous answer on a keep-alive connection): a slow client is closed with 408.
* At most `connection_cap` connections, below the descriptor limit: past it the oldest
  connection that is idle or still sending its headers is closed to make room, and when
  every one is busy the new one gets 503 at once. ``/api/status`` keeps answering through
  a slow-header flood and the process never runs out of descriptors.
* asyncio's accept errors (``Too many open files`` when something else took the
  descriptors) are logged at most once a second, with how many were left out.

The same design as tts-server's guard (`tts_server.guard`), reduced to what a read-mostly
page needs; tts-server is a distribution of its own, so the two are not shared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import OrderedDict
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
ACCEPT_BATCH = 32  # uvicorn's backlog: asyncio accepts at most this many per wake-up
HEADROOM = 64 + 2 * ACCEPT_BATCH  # descriptors for the state dir, logs, subprocesses


def connection_cap(wanted: int = 1000) -> int:
    """``wanted``, or fewer when the descriptor limit leaves less room."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            soft = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(8, min(wanted, soft - HEADROOM))


def _canned(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def protocol_class(cap: int, header_timeout: float = HEADER_TIMEOUT) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header timeout and the connection cap."""
    waiting: OrderedDict[Any, None] = OrderedDict()  # idle or reading headers, oldest first
    busy = _canned(503, "Service Unavailable", "too many connections; retry shortly")
    slow = _canned(408, "Request Timeout", "request headers took too long")

    class Guarded(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > cap:
                victim = next(iter(waiting), None)
                if victim is None:
                    transport.write(busy)
                    transport.close()
                    return
                victim._forget()
                victim.transport.close()
            self._wait()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _wait(self) -> None:
            waiting[self] = None
            waiting.move_to_end(self)
            if self._timer is None:
                self._timer = self.loop.call_later(header_timeout, self._late)

        def _forget(self) -> None:
            waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _late(self) -> None:
            self._timer = None
            if self._idle() and not self.transport.is_closing():
                self.transport.write(slow)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._idle():
                self._forget()  # its headers are in: a request is under way

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._forget()
            super().connection_lost(exc)

    return Guarded


class RateLimited(logging.Filter):
    """At most one record a second per logger; the next one says how many were left out."""

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__()
        self.every_s = every_s
        self.last = 0.0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.last < self.every_s:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.getMessage()} ({self.dropped} more like it left out)"
            record.args = ()
            self.dropped = 0
        self.last = now
        return True


def limit_error_logs() -> None:
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimited) for f in logger.filters):
            logger.addFilter(RateLimited())
