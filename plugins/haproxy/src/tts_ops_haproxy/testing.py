"""Measuring a routed service from outside, for the tests and ``bench/``: the share of
requests a canary at its first step serves, counted from ``X-TTS-Instance``; and
`require_haproxy` for the tests that need a real HAProxy."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field


def require_haproxy() -> str:
    """The haproxy binary; the calling test is skipped without it, and fails under
    ``CI=true``, where it must be installed."""
    import pytest

    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access(
        "/usr/sbin/haproxy", os.X_OK) else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install haproxy (apt install haproxy)")
        pytest.skip("haproxy is not installed")
    return path


@dataclass
class CanaryShare:
    step: int                       # the weight of the step measured
    served: dict[str, int] = field(default_factory=dict)   # instance id -> requests
    old: str = ""                   # the instance that served before the deploy
    returncode: int | None = None   # the deploy's, after SIGINT
    stderr: str = ""

    @property
    def canary(self) -> int:
        return sum(n for who, n in self.served.items() if who != self.old)

    @property
    def share(self) -> float:
        total = sum(self.served.values())
        return self.canary / total if total else 0.0


def who(host: str, port: int, count: int, path: str = "/health") -> dict[str, int]:
    """``count`` requests on one keep-alive connection: how many each instance served."""
    served: dict[str, int] = {}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for _ in range(count):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise AssertionError(f"HTTP {resp.status} through the router")
            name = resp.getheader("X-TTS-Instance") or "?"
            served[name] = served.get(name, 0) + 1
    finally:
        conn.close()
    return served


def canary_share(base: list[str], env: dict[str, str], service: str, port: int,
                 requests: int = 1000) -> CanaryShare:
    """Run ``BASE deploy SERVICE --strategy canary`` (its ``min_samples`` too high for the
    first step to pass), count who serves ``requests`` at the first step, then SIGINT the
    deploy (it rolls back)."""
    old = next(iter(who("127.0.0.1", port, 1)))
    deploy = subprocess.Popen([*base, "deploy", service, "--strategy", "canary", "--json",
                               "--skip-tests"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    result = CanaryShare(step=0, old=old)
    try:
        assert deploy.stdout is not None
        for line in deploy.stdout:
            event = json.loads(line)
            if event["event"] == "weights":
                weights = [w for rid, w in event["weights"].items() if rid != old]
                if weights and 0 < weights[0] < 100:
                    result.step = weights[0]
                    break
        else:
            raise AssertionError(f"the canary never reached a step: {deploy.stderr.read()}")
        result.served = who("127.0.0.1", port, requests)
    finally:
        deploy.send_signal(signal.SIGINT)
        _out, result.stderr = deploy.communicate(timeout=120)
        result.returncode = deploy.returncode
    return result
