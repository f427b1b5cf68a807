"""The ASGI application behind ``tts-ops web`` (Starlette, served by uvicorn as tts-server is).

``GET /`` is the page (``static/``: plain HTML, a script that polls ``/api/status`` and fills
the page with ``textContent`` only, so a log line or a name can never become markup).
``GET /api/status`` and ``GET /api/logs/NAME`` read; ``POST /api/services/NAME/ACTION``
(restart, stop, start) acts, only with the token the server was started with, sent as
``Authorization: Bearer TOKEN`` and compared in constant time. An action is a ``tts-ops``
command of its own (an argv list, the service name checked against the config first).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import subprocess
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

ACTIONS = ("restart", "stop", "start")
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " connect-src 'self'; img-src 'self'; frame-ancestors 'none';"
                               " base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Views:
    """The `Runtime`, asked by one request at a time (it caches, and is not thread-safe);
    the config is read again when its file changes."""

    def __init__(self, app: Runtime, pm: str | None, token: str | None, refresh_s: float) -> None:
        from tts_ops.runtime.trends import Trends

        self.app, self.pm, self.token, self.refresh_s = app, pm, token or None, refresh_s
        self.lock = threading.Lock()
        self._config_stamp = self._stamp()
        self.trends = Trends()
        self._sampled = 0.0  # time.monotonic() of the last sample of every service

    def sample_every(self, seconds: float) -> None:
        """Sample the services' /metrics every ``seconds`` in a thread, page open or not:
        the charts have the last 15 minutes when a page opens."""
        def loop() -> None:
            while True:
                time.sleep(seconds)
                with contextlib.suppress(Exception), self.lock:  # the next round tries again
                    if time.monotonic() - self._sampled >= seconds * 0.9:
                        self._fresh()
                        self._observe()

        threading.Thread(target=loop, name="tts-ops web sampler", daemon=True).start()

    def _observe(self) -> list[Any]:
        from tts_ops.runtime.views import service_rows

        rows = service_rows(self.app, self.pm)
        # at most one sample per refresh: two pages open do not halve the interval
        if time.monotonic() - self._sampled >= self.refresh_s * 0.9:
            self.trends.observe(rows)
            self._sampled = time.monotonic()
        return rows

    def _stamp(self) -> tuple[int, int] | None:
        if not self.app.config_path:
            return None
        try:
            st = os.stat(self.app.config_path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _fresh(self) -> None:
        stamp = self._stamp()
        if stamp != self._config_stamp:
            self._config_stamp = stamp
            self.app.__dict__.pop("loaded", None)
        self.app._recovered = False  # as each `status` would: finish a deploy that died

    def status(self) -> dict[str, Any]:
        from tts_ops.runtime.trends import WINDOW_S
        from tts_ops.runtime.views import recent_deploys, recent_events

        with self.lock:
            self._fresh()
            rows = self._observe()
            now = time.time()
            deploys = recent_deploys(self.app, 200)
            return {
                "generated_at": now,
                "refresh_s": self.refresh_s,
                "actions": self.token is not None,
                "services": [row.to_json() for row in rows],
                "events": [e.to_json() for e in recent_events(self.app, self.pm, 20)],
                "deploys": deploys[:10],
                "window_s": WINDOW_S,
                # each service's points: [time, requests/s, p95 ms, errors/s]
                "trends": self.trends.to_json(),
                # the deploys on the charts' time axis
                "timeline": [{k: d.get(k) for k in ("id", "service", "kind", "result",
                                                     "started_at")}
                             for d in deploys if d.get("started_at", 0) >= now - WINDOW_S],
            }

    def logs(self, name: str, lines: int) -> list[str] | None:
        from tts_ops.runtime.views import log_tail

        with self.lock:
            self._fresh()
            return log_tail(self.app, name, lines, self.pm)

    def configured(self, name: str) -> bool:
        with self.lock:
            self._fresh()
            return name in self.app.config.names()

    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())

    def run(self, action: str, name: str) -> dict[str, Any]:
        argv = [*self.app.argv(), action, *(["--process-manager", self.pm] if self.pm else []),
                name]
        env = {k: v for k, v in os.environ.items() if k != "TTS_OPS_WEB_TOKEN"}
        done = subprocess.run(argv, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=900)
        lines = (done.stdout + done.stderr).strip().splitlines()
        return {"service": name, "action": action, "ok": done.returncode == 0,
                "exit_code": done.returncode,
                "message": lines[-1] if lines else f"exit {done.returncode}"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build(views: Views, allowed_hosts: list[str] | None) -> Starlette:
    """The application; ``allowed_hosts`` (Host header names) guards a loopback-bound page
    against DNS rebinding, None accepts any."""
    static = {name: resources.files("tts_ops.web").joinpath("static", name).read_bytes()
              for name in _STATIC}

    def page(request: Request) -> Response:
        return Response(static["index.html"], media_type=_STATIC["index.html"],
                        headers=_SECURITY_HEADERS)

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, f"no such file: {name}")
        return Response(static[name], media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    def api_status(request: Request) -> Response:
        return JSONResponse(views.status(), headers=_SECURITY_HEADERS)

    def api_logs(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            lines = int(request.query_params.get("lines", "50"))
        except ValueError:
            return _error(400, "lines: give a whole number from 1 to 1000")
        if not 1 <= lines <= 1000:
            return _error(400, "lines: give a whole number from 1 to 1000")
        found = views.logs(name, lines)
        if found is None:
            return _error(404, f"no running or configured process is named {name!r}")
        return JSONResponse({"name": name, "lines": found}, headers=_SECURITY_HEADERS)

    def api_action(request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if views.token is None:
            return _error(403, "read-only: start tts-ops web with --token or"
                               " TTS_OPS_WEB_TOKEN to allow actions")
        if not views.authorized(request):
            return _error(401, "send the token as 'Authorization: Bearer TOKEN'")
        if action not in ACTIONS:
            return _error(404, f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        if not views.configured(name):
            return _error(404, f"no configured service is named {name!r}")
        result = views.run(action, name)
        return JSONResponse(result, status_code=200 if result["ok"] else 502,
                            headers=_SECURITY_HEADERS)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=[
        Route("/", page),
        Route("/static/{name}", asset),
        Route("/api/status", api_status),
        Route("/api/logs/{name}", api_logs),
        Route("/api/services/{name}/{action}", api_action, methods=["POST"]),
    ], middleware=middleware, exception_handlers={HTTPException: http_error})
