"""The zero-downtime scenario every process backend passes: a client pinned to the
configured address (``hey``, keep-alive) sees no error and no non-200 through a restart,
blue_green, rolling and canary deploys and a rollback, and the address serves the expected
release after each of them.

``run_scenario(tmp_path, host, process_manager)`` does it all and returns what it saw; the
tests of each backend assert on it (see ``plugins/*/tests``).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts_ops.testing import free_port, run_cli
from tts_ops.testing.load import LoadResult, PinnedLoad

#: each step: what the operator runs (after ``tts-ops -c CFG --state-dir DIR``)
STEPS = [
    ("restart", ["restart"]),
    ("blue_green", ["deploy", "--strategy", "blue_green"]),
    ("rolling", ["deploy", "--strategy", "rolling"]),
    ("canary", ["deploy", "--strategy", "canary"]),
    ("rollback", ["rollback"]),
]


@dataclass
class Step:
    name: str
    exit_code: int
    output: str
    serving: str | None       # the release the configured address answers with afterwards
    expected: str | None      # the release that should serve
    started: str = ""         # UTC time, as in the servers' logs


@dataclass
class ScenarioResult:
    address: str
    load: LoadResult = field(default_factory=LoadResult)
    steps: list[Step] = field(default_factory=list)
    leftovers: str = ""
    logs: str = ""  # when the client saw a failure: what the servers logged besides answers


def health(address: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{address}/health", timeout=10) as resp:
        return json.loads(resp.read())


def run_scenario(tmp_path: Path, host: Any, process_manager: str,
                 extra: list[str] | None = None, service: dict[str, Any] | None = None,
                 after_step: Callable[[str], None] | None = None) -> ScenarioResult:
    """``service``: more fields of the service (``{"router": "haproxy"}``);
    ``after_step(name)`` is called after each step, the load still running."""
    name = f"zd-{uuid.uuid4().hex[:6]}"
    port = free_port()
    cfg = Path(tmp_path) / "zero-downtime.json"
    cfg.write_text(json.dumps({"services": [{
        "name": name, "port": port, "engine_type": "espeak", "instances": 2,
        "deploy": {"drain_seconds": 0.5, "progress_deadline_seconds": 60,
                   "canary": {"step_pause_seconds": 0.5, "steps": [50, 100], "min_samples": 10}},
        **(service or {})}]}))
    cli = ["-c", str(cfg), "--state-dir", str(Path(tmp_path) / "state")]
    pm = ["--process-manager", process_manager, *(extra or [])]
    address = f"127.0.0.1:{port}"
    result = ScenarioResult(address)

    def releases() -> list[dict[str, Any]]:
        return json.loads(run_cli([*cli, "releases", "--json"], host=host).stdout)

    try:
        first = run_cli([*cli, "deploy", "--strategy", "blue_green", *pm], host=host)
        result.steps.append(Step("first deploy", first.exit_code, first.output,
                                 health(address).get("release") if first.exit_code == 0
                                 else None, _current(releases())))
        if first.exit_code != 0:
            return result
        with PinnedLoad(f"http://{address}/synthesize") as load:
            for step, args in STEPS:
                before = [r["id"] for r in releases()]
                started = _now()
                out = run_cli([*cli, *args, *pm], host=host)
                after = releases()
                if step == "rollback":  # the release before the canary's
                    expected = result.steps[-2].expected
                else:
                    new = [r["id"] for r in after if r["id"] not in before]
                    expected = new[0] if new else _current(after)
                result.steps.append(Step(step, out.exit_code, out.output,
                                         health(address).get("release"), expected, started))
                if out.exit_code != 0:
                    break
                if after_step is not None:
                    after_step(step)
        result.load = load.result
        if not result.load.clean:
            result.logs = server_logs(Path(tmp_path) / "state")
    finally:
        run_cli([*cli, "stop", "--all", *pm], host=host)
        result.leftovers = run_cli([*cli, "status", "--json"], host=host).stdout
    return result


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def server_logs(state: Path, per_file: int = 12) -> str:
    """Each generation's log lines other than plain 200 answers (starts, drains, stops,
    errors, slow or failed answers), the last ``per_file`` of each: a failure the client
    saw, told by the servers (a test's temporary files do not outlive a CI run)."""
    out = []
    for path in sorted([*state.glob("logs/*.log"), *state.glob("*/*/supervise.log")]):
        picked = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                picked.append(line)
                continue
            if not isinstance(entry, dict):
                picked.append(line)
            elif entry.get("event") != "request" or entry.get("status") != 200 or \
                    (entry.get("ms") or 0) > 1000:
                picked.append(f"{str(entry.get('ts'))[11:23]} {entry.get('level')}"
                              f" {entry.get('msg')} {entry.get('ms', '')}")
        out.append(f"-- {path.relative_to(state)}")
        out += [line[:220] for line in picked[-per_file:]]
    return "\n".join(out)


def _current(releases: list[dict[str, Any]]) -> str | None:
    return next((r["id"] for r in releases if r.get("current")), None)


def problems(result: ScenarioResult) -> list[str]:
    """Everything the scenario saw that breaks the promise, one line each (none: passed)."""
    out = []
    for step in result.steps:
        if step.exit_code != 0:
            out.append(f"{step.name}: exit {step.exit_code}: {step.output.strip()[-600:]}")
        elif step.serving != step.expected:
            out.append(f"{step.name}: {result.address} serves release {step.serving},"
                       f" expected {step.expected}")
    if len(result.steps) == len(STEPS) + 1 and not result.load.clean:
        out.append(f"the pinned client saw: {result.load.summary()}")
        out.append("steps began at (UTC): " + ", ".join(f"{s.name} {s.started}"
                                                        for s in result.steps[1:]))
        out.append(result.logs)
    states = {row["name"]: row["state"] for row in json.loads(result.leftovers or "[]")}
    if any(state != "stopped" for state in states.values()):
        out.append(f"after stop --all: {states}")
    return out
