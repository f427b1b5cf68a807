"""A real load generator pinned to one address: ``hey`` with keep-alive connections.

`PinnedLoad` runs ``hey`` against a URL until stopped (SIGINT: hey prints its report)
and returns every status code and error it saw. Zero downtime, as tts-ops promises it,
is ``result.clean``: requests were made, all answered 200, no connection error.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.M)


class LoadUnavailable(RuntimeError):
    pass


def hey_path() -> str:
    path = shutil.which("hey")
    if path is None:
        raise LoadUnavailable("hey is not installed (apt-get install hey)")
    return path


@dataclass
class LoadResult:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    report: str = ""

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def clean(self) -> bool:
        return self.total > 0 and not self.errors and set(self.statuses) == {200}

    def summary(self) -> str:
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(self.statuses.items()))
        errors = "; ".join(f"{n}x {e}" for e, n in self.errors.items())
        return f"{self.total} requests ({codes})" + (f"; errors: {errors}" if errors else "")


def parse_report(text: str) -> LoadResult:
    """hey's summary: its status-code and error distributions."""
    result = LoadResult(report=text)
    status_part, _, error_part = text.partition("Error distribution:")
    for code, count in _STATUS.findall(status_part):
        result.statuses[int(code)] = int(count)
    for count, message in _ERROR.findall(error_part):
        result.errors[message.strip()] = int(count)
    return result


class PinnedLoad:
    """``with PinnedLoad(url) as load: ...; result = load.result``: keep-alive POSTs of
    ``body`` over ``connections`` connections at ``rate`` requests/s each, until the block
    ends."""

    def __init__(self, url: str, body: str = '{"text": "Zero downtime."}',
                 connections: int = 4, rate: int = 25, timeout_s: int = 30) -> None:
        self.argv = [hey_path(), "-z", "3600s", "-c", str(connections), "-q", str(rate),
                     "-t", str(timeout_s), "-m", "POST", "-T", "application/json", "-d", body,
                     url]
        self.proc: subprocess.Popen[str] | None = None
        self.result = LoadResult()

    def __enter__(self) -> PinnedLoad:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        if self.proc is None:
            return self.result
        proc, self.proc = self.proc, None
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        self.result = parse_report(out)
        return self.result


def require_hey() -> None:
    """Skip the calling test without hey; fail it in CI (``CI=true``), where it must exist."""
    import pytest

    try:
        hey_path()
    except LoadUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install hey: {exc}")
        pytest.skip(str(exc))
