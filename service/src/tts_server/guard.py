"""Limits that keep one client from hurting the others.

* ``Content-Length`` above ``max_body`` is answered 413 before a byte of the body is read;
  a chunked body is counted as it streams and cut off at the same limit.
* A request's headers must arrive within ``header_timeout`` of its first byte (or of the
  connection), its body within ``body_timeout`` of the first read: slow clients are
  dropped (408), never kept forever.
* At most ``max_connections`` connections: past the limit the oldest connection that is
  idle or still sending headers is closed to make room, and when none is, the new
  connection gets an immediate 503. Health checks keep getting through a slow-header
  flood, and the process never runs out of file descriptors.

* A keep-alive connection carries at most ``max_requests`` requests (as nginx's
  ``keepalive_requests``): the last answer says ``Connection: close`` and the client
  connects again. Where several generations share one listening socket, that is how
  long-lived clients spread over them (a canary gets its share of them).
* On shutdown an idle keep-alive connection is not closed under the client's feet (a
  request it sends at that instant would fail): its next request is answered, with
  ``Connection: close``, and only a connection quiet for ``IDLE_CLOSE_S`` is closed unasked.

uvicorn has no header timeout and no connection cap that closes idle sockets, closes idle
keep-alive connections at once on shutdown, and closes after a last answer without saying
so; the connection-level half is a subclass of its h11 protocol, the body half is ASGI
middleware.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

# asyncio accepts up to uvicorn's ``backlog`` sockets per wake-up, and the connections we
# close to make room keep their descriptors until its next pass: with a small batch and
# room for two of them (the new and the evicted), a flood stays under the fd limit
ACCEPT_BATCH = 32
FD_HEADROOM = 64 + 2 * ACCEPT_BATCH  # and descriptors for the engine, logs, the listener
CLOSE = {"connection": "close"}
IDLE_CLOSE_S = 1.0  # on shutdown: how long an idle keep-alive connection may still speak


@dataclass
class Limits:
    max_body: int = 1024 * 1024
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    max_requests: int = 100  # per keep-alive connection
    #: a Wyoming connection with no event under way is closed after this long
    wyoming_idle_timeout: float = 60.0


class Budget:
    """One connection budget for every protocol a worker serves (HTTP and Wyoming).

    ``waiting`` holds the connections that may be closed to make room, oldest first:
    idle ones and ones still sending a request's head (HTTP headers, a Wyoming event).
    Each has ``evict()``.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: OrderedDict[Any, None] = OrderedDict()
        self.count = 0  # connections open now, of every protocol

    def admit(self) -> str:
        """Room for one more connection: "ok", "evicted" (the oldest waiting one was
        closed for it) or "busy" (none could be: refuse the new one)."""
        if self.count < self.limit:
            self.count += 1
            return "ok"
        victim = next(iter(self.waiting), None)
        if victim is None:
            return "busy"
        self.waiting.pop(victim, None)
        victim.evict()
        self.count += 1
        return "evicted"

    def wait(self, conn: Any) -> None:
        self.waiting[conn] = None
        self.waiting.move_to_end(conn)

    def busy(self, conn: Any) -> None:
        self.waiting.pop(conn, None)

    def leave(self, conn: Any) -> None:
        self.waiting.pop(conn, None)
        self.count = max(0, self.count - 1)


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return what connections may use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - FD_HEADROOM)


def _canned(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap; `protocol_class`
    makes one per server with its limits."""

    limits: Limits
    budget: Budget
    busy_answer = b""
    slow_answer = b""
    on_reject: Any = None
    _header_timer: asyncio.TimerHandle | None = None
    _draining = False
    _requests = 0
    _counted: Any = None
    _admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # h11 sends the head and the body in two writes: with Nagle on, the body
            # waits for the ACK a keep-alive client delays by 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        admitted = self.budget.admit()
        if admitted == "busy":
            self.count("busy")
            transport.write(self.busy_answer)
            transport.close()
            return
        self._admitted = True
        if admitted == "evicted":
            self.count("evicted")
        self._await_headers(start_timer=True)

    def count(self, kind: str) -> None:
        if self.on_reject is not None:
            self.on_reject(kind)

    def evict(self) -> None:
        self._forget()  # now: its close completes only on the loop's next pass
        self.transport.close()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_headers(self, start_timer: bool) -> None:
        self.budget.wait(self)
        if start_timer and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout,
                                                      self._headers_late)

    def _forget(self) -> None:
        self.budget.busy(self)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._idle() and not self.transport.is_closing():
            self.count("header_timeout")
            self.transport.write(self.slow_answer)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._idle():
            self._await_headers(start_timer=True)
        super().data_received(data)
        if not self._idle():
            self._forget()  # a request is under way: its headers are complete
            if self.cycle is not self._counted:
                self._counted = self.cycle
                self._requests += 1
            if self._draining or self._requests >= self.limits.max_requests:
                _last_answer(self.cycle)

    def shutdown(self) -> None:
        if self.transport.is_closing():
            return
        self._draining = True
        if not self._idle():
            _last_answer(self.cycle)
        else:
            self.loop.call_later(IDLE_CLOSE_S, self._close_quiet)

    def _close_quiet(self) -> None:
        if self._idle() and not self.transport.is_closing():
            super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._idle() and not self.transport.is_closing():
            # idle keep-alive: uvicorn's keep-alive timer closes it; we may evict it
            self._await_headers(start_timer=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self._admitted:
            self._admitted = False
            self.budget.leave(self)
        super().connection_lost(exc)


def protocol_class(limits: Limits, on_reject: Any = None,
                   budget: Budget | None = None) -> type[H11Protocol]:
    """`GuardedH11` with these limits.

    ``on_reject(kind)`` is called for every connection closed by a limit ("busy",
    "evicted", "header_timeout"), for the metrics. ``budget``: the cap shared with the
    worker's other protocols (Wyoming).
    """
    return type("GuardedH11", (GuardedH11,), {
        "limits": limits, "budget": budget or Budget(limits.max_connections),
        "on_reject": staticmethod(on_reject) if on_reject is not None else None,
        "busy_answer": _canned(503, "Service Unavailable",
                               "too many connections; retry shortly"),
        "slow_answer": _canned(408, "Request Timeout", "request headers not received"
                               f" within {limits.header_timeout:g}s")})


def _last_answer(cycle: Any) -> None:
    """Close the connection after this response, and say so in it: uvicorn alone closes
    without a ``Connection: close`` header, and a keep-alive client then sends its next
    request into a closed socket."""
    cycle.keep_alive = False
    if not cycle.response_started:
        cycle.default_headers = [*cycle.default_headers, (b"connection", b"close")]


class BodyGuard:
    """ASGI middleware: the body limit and the body timeout."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "Content-Length is not a number")
                    return
        if declared is not None and declared > limits.max_body:
            await _reply(send, 413, f"the body is {declared} bytes; the limit is"
                                    f" {limits.max_body}")
            return
        loop = asyncio.get_running_loop()
        state = {"received": 0, "deadline": None, "done": False}

        async def guarded() -> dict:
            if state["done"]:
                return await receive()  # the body is in: waiting for a disconnect is fine
            if state["deadline"] is None:
                state["deadline"] = loop.time() + limits.body_timeout
            try:
                message = await asyncio.wait_for(receive(),
                                                 max(0.0, state["deadline"] - loop.time()))
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within"
                                         f" {limits.body_timeout:g}s", headers=CLOSE) from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limits.max_body:
                    raise HTTPException(413, f"the body is over the limit of {limits.max_body}"
                                             " bytes", headers=CLOSE)
                state["done"] = not message.get("more_body", False)
            return message

        await self.app(scope, guarded, send)


async def _reply(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
