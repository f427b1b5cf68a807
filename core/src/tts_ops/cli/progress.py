"""Deploy progress on a terminal: the same lines as without one, plus a live area (rich)
under them with the phase under way, its time, the traffic weights and the canary's samples.

Chosen by `reporter_for` only when stdout is a terminal and ``--json`` is off; pipes and
files get the plain lines of `tts_ops.deploy.engine.Reporter` unchanged.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tts_ops.deploy.engine import Reporter


class LiveReporter(Reporter):
    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        super().__init__(False, lambda line: self.console.print(line, markup=False))
        self.live: Any = None
        self.service: str | None = None
        self.phase: str | None = None
        self.phase_began = 0.0
        self.weights: dict[str, int] = {}
        self.samples: dict[str, Any] | None = None

    # --- what the live area shows ---

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        if self.phase is not None:
            from rich.spinner import Spinner

            grid.add_row(Spinner("dots"), Text(f"{self.service}: {self.phase}"),
                         Text(f"{time.monotonic() - self.phase_began:6.1f}s"))
        if self.weights:
            grid.add_row("", Text("weights"), Text(", ".join(
                f"{k}={v}" for k, v in self.weights.items())))
        if self.samples is not None:
            s = self.samples
            rate = f"{s['errors'] / s['samples']:.4f}" if s["samples"] else "-"
            grid.add_row("", Text(f"canary at {s['step']}%"), Text(
                f"samples {s['samples']}/{s['need']}, errors {s['errors']},"
                f" error rate {rate}"))
        return grid

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    # --- events ---

    def event(self, kind: str, **data: Any) -> None:
        if kind == "start":
            self.service, self.weights, self.samples = data["service"], {}, None
            self._open()
        elif kind == "phase_start":
            self.phase, self.phase_began = data["phase"], time.monotonic()
            if not self.phase.startswith("step_"):  # a canary's samples last through its steps
                self.samples = None
        elif kind == "phase":
            self.phase = None
        elif kind == "weights":
            self.weights = dict(data["weights"])
        elif kind == "samples":
            self.samples = data
        if kind not in ("weights", "samples"):  # those live in the area, not as lines
            super().event(kind, **data)  # the line above the live area, as without one
        if kind == "result":
            self._close()
        else:
            self._refresh()

    def _open(self) -> None:
        if self.live is None:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, transient=True,
                             refresh_per_second=4, get_renderable=self.render)
            self.live.start()

    def _close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        self.phase = None

    def __exit__(self, *exc: object) -> None:
        self._close()


def reporter_for(as_json: bool, echo: Any) -> Reporter:
    """A live display on a terminal, else plain (or JSON) lines through ``echo``."""
    if not as_json and sys.stdout.isatty():
        from rich.console import Console

        console = Console(highlight=False)
        if console.is_terminal and not console.is_dumb_terminal:
            return LiveReporter(console)
    return Reporter(as_json, echo)
