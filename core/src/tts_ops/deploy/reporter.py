"""`Reporter`: a deploy's events as they happen, as plain lines or JSON lines."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any


class Reporter:
    """Phases as they happen: plain lines, or JSON lines with --json.

    Events: start, platform, phase_start, phase, log, plan, weights, samples, result. Plain
    lines show all but phase_start: a canary waiting for traffic says how much it counted
    when the count moves (at least every 10 s), so a pipe sees it is alive; JSON lines
    show every event.
    """

    def __init__(self, as_json: bool, echo: Callable[[str], None],
                 watch_output: bool = True) -> None:
        """``watch_output``: whether ``echo`` writes to standard output, whose reader
        leaving interrupts the deploy (`watch`)."""
        self.as_json = as_json
        self._echo = echo
        self.watch_output = watch_output
        self.closed = False
        self._samples: tuple[Any, float] = (None, 0.0)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        """A live display (`tts_ops.cli.progress`) ends here; plain lines need nothing."""

    def echo(self, line: str) -> None:
        """Print a line; the first write to a closed output interrupts the deploy (as
        SIGINT would), and later ones, the rollback's, go nowhere."""
        if self.closed:
            return
        try:
            self._echo(line)
        except BrokenPipeError:
            self._gone()
            raise

    def watch(self) -> None:
        """Between lines (a drain, a canary's pause): a reader that left interrupts the
        deploy now, as the next line would, not when the wait is over."""
        from tts_ops.readergone import output_gone

        if self.watch_output and not self.closed and output_gone():
            self._gone()
            raise BrokenPipeError("the output was closed")

    def _gone(self) -> None:
        self.closed = True
        import sys

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nor may the final flush fail
        os.close(devnull)

    def event(self, kind: str, **data: Any) -> None:
        if self.as_json:
            self.echo(json.dumps({"event": kind, "ts": round(time.time(), 3), **data}))
        elif kind == "phase":
            mark = "ok  " if data["ok"] else "FAIL"
            self.echo(f"  {mark} {data['service']}: {data['phase']:<12} {data['duration_s']:7.2f}s")
        elif kind == "log":
            self.echo(f"       {data['service']}: {data['message']}")
        elif kind == "start":
            what = data["operation"]
            target = f" to release {data['release']}" if what == "rollback" else ""
            self.echo(f"{what} {data['id']}: {data['service']}{target} with {data['strategy']}"
                      f" ({data['environment']}), {data['old']} -> {data['new']}")
        elif kind == "platform":
            p = data["platform"]
            engine = f"engine {p['engine']}, " if "engine" in p else ""
            self.echo(f"  platform: init {p['init_system']}, process manager"
                      f" {p['process_manager']} ({p['process_manager_reason']}), {engine}"
                      f"espeak-ng {p['espeak_ng']}, Python {p['python']},"
                      f" {p['free_disk_mib']} MiB free")
        elif kind == "result":
            self.echo(f"{data['service']}: {data['result']} in {data['duration_s']:.2f}s"
                      + (f"; downtime {data['downtime_s']:.2f}s" if data.get("downtime_s")
                         is not None else "") + (f" ({data['reason']})" if data.get("reason")
                                                 else ""))
        elif kind == "weights":
            weights = ", ".join(f"{k}={v}" for k, v in sorted(data["weights"].items()))
            self.echo(f"       {data['service']}: weights {weights}")
        elif kind == "samples":
            # a canary waiting for traffic: a line when the count moved, or every 10 s
            key = (data.get("step"), data.get("samples"))
            now = time.monotonic()
            if key != self._samples[0] or now - self._samples[1] >= 10:
                self._samples = (key, now)
                self.echo(f"       {data['service']}: canary at {data['step']}%:"
                          f" {data['samples']} of {data['need']} requests counted,"
                          f" {data['errors']} errors")
        elif kind == "plan":
            self.echo(f"  plan: stop {data['old'] or 'nothing'}; start {data['new']}"
                      f" (ports {data['ports']}); checks: "
                      + ("all passed" if not data["problems"] else "; ".join(data["problems"])))
            self.echo(f"  address: {data['address']}")
            if data.get("records"):
                self.echo(f"  records: {', '.join(data['records'])}")
            if data.get("counts"):
                self.echo(f"  canary steps count requests to {', '.join(data['counts'])}"
                          " (deploy.canary.count_paths); health checks and scrapes do not")
