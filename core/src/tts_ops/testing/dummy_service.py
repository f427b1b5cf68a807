"""``python -m tts_ops.testing.dummy_service``: a small, controllable service for backend tests.

Standard library only. Serves ``GET /health`` on ``--port``, speaks the notify protocol
when ``NOTIFY_SOCKET`` is set, and can misbehave on purpose (never ready, fork a
grandchild, fail its health check, stop feeding the watchdog, print many lines).
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import socket
import sys
import threading
import time


def notify(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--never-ready", action="store_true", help="never READY=1, health fails")
    p.add_argument("--fork-grandchild", metavar="PIDFILE")
    p.add_argument("--print", dest="text", action="append", default=[])
    p.add_argument("--lines", type=int, default=0, help="print N numbered lines, then exit 0")
    p.add_argument("--fail-health-after", type=float, default=None)
    p.add_argument("--healthy-after", type=float, default=0.0,
                   help="READY=1 at once, but /health fails for this many seconds")
    p.add_argument("--watchdog-for", type=float, default=None,
                   help="feed the watchdog for this many seconds, then stop feeding it")
    p.add_argument("--exit-after", type=float, default=None)
    p.add_argument("--exit-code", type=int, default=1)
    p.add_argument("--ignore-term", action="store_true")
    args = p.parse_args()

    for text in args.text:
        print(text, flush=True)
    if args.lines:
        out = sys.stdout
        for i in range(args.lines):
            out.write(f"line {i:09d}\n")
        out.flush()
        return
    if args.fork_grandchild:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL gets rid of it
            while True:
                time.sleep(1)
        with open(args.fork_grandchild, "w") as fh:
            fh.write(str(pid))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = time.monotonic()
    ready_at = started + args.ready_after

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            now = time.monotonic()
            failing = args.never_ready or now < ready_at or now < started + args.healthy_after or (
                args.fail_health_after is not None and now - started > args.fail_health_after)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if failing else b"ok")

        def log_message(self, *a) -> None:
            pass

    server = None
    inherited = os.environ.get("LISTEN_FDS") == "1" and \
        os.environ.get("LISTEN_PID") == str(os.getpid())
    if inherited:  # socket activation: serve the socket the process manager passed
        server = http.server.ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=3)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"dummy serving the inherited socket {server.socket.getsockname()}", flush=True)
    elif args.port:
        server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    if not args.never_ready:
        time.sleep(max(0.0, ready_at - time.monotonic()))
        notify("READY=1\nSTATUS=dummy ready")
        print("dummy ready", flush=True)
    deadline = started + args.exit_after if args.exit_after is not None else None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            print(f"dummy exiting with {args.exit_code}", flush=True)
            sys.exit(args.exit_code)
        if args.watchdog_for is None or time.monotonic() - started < args.watchdog_for:
            notify("WATCHDOG=1")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
