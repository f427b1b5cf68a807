"""JSON-line logging: ``ts, level, logger, msg`` plus any extra fields of the record."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class RateLimit(logging.Filter):
    """At most ``burst`` warnings or errors of one kind per ``window`` seconds.

    A kind is the logger and the start of the message's first line (asyncio and uvicorn
    format their messages before logging them), so a flood (a traceback per refused
    connection, say) cannot fill the log and push earlier history out through rotation.
    The first record let through after a quiet spell says how many were ``suppressed``.
    """

    def __init__(self, burst: int = 10, window: float = 60.0, kinds: int = 1000) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.kinds = kinds
        self.seen: dict[tuple[str, str], list[float]] = {}  # kind -> [start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg).split("\n", 1)[0][:60])
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            if entry is None and len(self.seen) >= self.kinds:
                self.seen.clear()
            if entry is not None and entry[2]:
                record.suppressed = int(entry[2])
            self.seen[key] = [now, 1, 0]
            return True
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        return False


def capture_stderr() -> None:
    """Make every line written to fd 2 (espeak-ng's C library, warnings, a crash's
    traceback) a JSON record on stdout, so that the log stays one JSON object a line.

    Only when stdout and stderr go to the same place (the log, as every backend sets it
    up): in a terminal, or with stderr sent elsewhere, a person reads stderr as it is.
    A thread reads a pipe that replaces fd 2; at exit fd 2 is given back and the thread
    drained, so even a traceback printed by a dying interpreter is kept.
    """
    import atexit
    import os
    import threading

    try:
        out, err = os.fstat(1), os.fstat(2)
    except OSError:
        return
    if (out.st_dev, out.st_ino) != (err.st_dev, err.st_ino):
        return
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    stderr_log = logging.getLogger("tts_server.stderr")

    def pump() -> None:
        with open(read_end, "rb") as pipe:
            for raw in pipe:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    stderr_log.warning(text, extra={"event": "stderr"})

    thread = threading.Thread(target=pump, name="stderr", daemon=True)
    thread.start()

    def drain() -> None:
        import sys

        sys.stderr.flush()
        os.dup2(saved, 2)  # our write end is gone: the reader sees EOF once forks exit
        thread.join(timeout=1.0)

    atexit.register(drain)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
