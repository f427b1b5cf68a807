"""``tts-ops top``: a live view of every service, with keys to act on one.

Each refresh (``--interval``, 1 s) asks the backends for every service's status (as
``status``), reads each running service's ``/metrics`` (parsed by prometheus_client) for
requests per second and the p95 synthesis time over the last interval, and shows the
recent lifecycle events underneath. Under the table, the selected service's requests per
second, p95 and errors over the last 15 minutes as sparklines, with a ``^`` under each of
its deploys on the same time axis (`tts_ops.runtime.trends`). Keys: up/down (or k/j)
choose a service; ``r`` restarts it, ``s`` stops it, ``a`` starts it (each a ``tts-ops``
command of its own, its one-line result shown at the bottom); ``l`` follows its log until
``q`` or Ctrl-C; ``q`` quits.
Drawn with rich; needs a terminal (``status --watch`` is the non-interactive cousin).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from tts_ops.errors import ConfigError
from tts_ops.runtime.trends import Trends
from tts_ops.runtime.views import health_of

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

KEYS_HELP = "up/down choose  r restart  s stop  a start  l logs  q quit"
COLUMNS = ("NAME", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "CPU", "RSS", "RELEASE",
           "HEALTH", "REQ/S", "P95")


class Top:
    def __init__(self, app: Runtime, pm: str | None, interval: float) -> None:
        self.app, self.pm, self.interval = app, pm, interval
        self.selected = 0
        self.trends = Trends()
        self.message = KEYS_HELP
        self.rows: list[Any] = []
        self.releases: dict[str, str | None] = {}
        self.owners: dict[str, str] = {}
        self.deploys: list[dict[str, Any]] = []

    def refresh(self) -> None:
        from tts_ops.runtime.views import recent_deploys, service_rows

        rows = service_rows(self.app, self.pm)
        self.deploys = recent_deploys(self.app, 50)
        self.releases = {r.status.name: r.release for r in rows}
        self.owners = {r.status.name: r.owner for r in rows}
        # a router's /metrics are whichever instance answered: its rows show no rate
        self.trends.observe(rows)
        self.rows = [(r.status, *self.trends.rate_and_p95(r.status.name)) for r in rows]
        self.selected = min(self.selected, max(0, len(self.rows) - 1))

    def events(self) -> list[str]:
        from tts_ops.runtime.views import recent_events

        return [f"{time.strftime('%H:%M:%S', time.localtime(e.ts))}  {e.service}  {e.kind}"
                f"{f'  {e.reason}' if e.reason else ''}"
                for e in recent_events(self.app, self.pm, 6)]

    def cells(self) -> list[list[str]]:
        out = []
        for row, rate, p95 in self.rows:
            out.append([
                row.name, str(row.state), "yes" if row.ready else "no", str(row.pid or "-"),
                f"{row.uptime_s:.0f}s" if row.uptime_s is not None else "-",
                str(row.restarts),
                f"{row.cpu_percent:.1f}%" if row.cpu_percent is not None else "-",
                f"{row.rss_bytes / 2**20:.1f}MiB" if row.rss_bytes else "-",
                str(self.releases.get(row.name) or "-"), str(health_of(row) or "-"),
                f"{rate:.1f}" if rate is not None else "-",
                f"{p95 * 1000:.0f}ms" if p95 is not None else "-"])
        return out

    def render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        # one Text per row, laid out here: a rich Table of 20 rows costs about 25 ms of CPU
        # per refresh, more than the whole view may spend (2% of a core); name and state come
        # first, so a narrow terminal crops the other columns, never those
        rows = self.cells()
        widths = [max(len(c) for c in column) for column in zip(COLUMNS, *rows, strict=False)]

        def line(cells: list[str], style: str | None = None) -> Text:
            text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            return Text(text, style=style or "", no_wrap=True, overflow="crop")

        lines = [Text("tts-ops top", style="bold"), line(list(COLUMNS), "bold")]
        lines += [line(cells, "reverse" if i == self.selected else None)
                  for i, cells in enumerate(rows)]
        events = Text("\n".join(self.events()) or "no events yet", no_wrap=True,
                      overflow="crop")
        return Group(*lines, Text(""), *self.charts(), Text("recent events:", style="bold"),
                     events, Text(self.message, style="dim"))

    def charts(self) -> list[Any]:
        """The selected service's last 15 minutes: a sparkline per metric, deploys as ``^``."""
        from rich.text import Text

        from tts_ops.runtime.trends import columns, marks, span, spark

        if not self.rows:
            return []
        service = self.owners.get(self.rows[self.selected][0].name, "")
        points = self.trends.points.get(service, [])
        times = [d["started_at"] for d in self.deploys if d.get("service") == service
                 and isinstance(d.get("started_at"), int | float)]
        now = time.time()
        seconds = span(points, times, now)
        width = 60
        shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        out = [Text(f"{service}, last {shown} ({seconds / width:.1f} s a column, ^ a deploy;"
                    " up to 15 minutes):", style="bold")]
        for label, field, scale, unit in (("req/s", "rate", 1, ""), ("p95", "p95", 1000, "ms"),
                                          ("err/s", "errors", 1, "")):
            cells = columns(points, field, width, now, seconds)
            top = max((c for c in cells if c is not None), default=None)
            peak = "-" if top is None else f"{top * scale:.1f}{unit}"
            out.append(Text(f"{label:>6} |{spark(cells)}| max {peak}", no_wrap=True,
                            overflow="crop"))
        out.append(Text(f"{'deploy':>6} |{marks(times, width, now, seconds)}|", no_wrap=True,
                        overflow="crop"))
        return [*out, Text("")]

    def act(self, action: str) -> None:
        if not self.rows:
            return
        name = self.rows[self.selected][0].name
        owner = self.owners.get(name, name)  # a slot's service is what one restarts
        import subprocess

        done = subprocess.run([*self.app.argv(), action, owner], capture_output=True, text=True)
        lines = (done.stdout + done.stderr).strip().splitlines()
        self.message = f"{action} {owner}: " + (lines[-1] if lines else f"exit {done.returncode}")


def _follow_log(view: Any, name: str, fd: int) -> None:
    """The selected service's log, followed, until ``q`` (read here: the terminal stays
    in cbreak mode) or Ctrl-C, both back to the table; ``tts-ops logs NAME -f`` prints it."""
    import subprocess

    print(f"--- {name}: q or Ctrl-C to go back ---", flush=True)
    proc = subprocess.Popen([*view.app.argv(), "logs", name, "-f"])
    from tts_ops.cli.pipes import following

    try:
        with following(sigterm=False):  # Ctrl-C ends the log, not top
            while proc.poll() is None:
                if _key(fd, 0.2) == "q":
                    break
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _key(fd: int, timeout: float) -> str | None:
    import select

    readable, _w, _x = select.select([fd], [], [], timeout)
    if not readable:
        return None
    data = os.read(fd, 16).decode(errors="replace")
    return {"\x1b[A": "up", "\x1b[B": "down", "k": "up", "j": "down"}.get(data, data)


@click.command()
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True)
@click.option("--process-manager", "pm", default=None, help="As for status.")
@click.pass_obj
def top(app, interval: float, pm: str | None) -> None:
    """A live view of every service; keys restart, stop, start, follow logs, quit."""
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise ConfigError("tts-ops top needs a terminal; without one use"
                          " 'tts-ops status --watch'")
    import termios
    import tty

    from rich.live import Live

    from tts_ops.cli.pipes import following

    view = Top(app, pm, interval)
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    # SIGTERM must not leave the terminal in cbreak mode on the other screen
    with following():
        try:
            tty.setcbreak(fd)
            view.refresh()
            with Live(view.render(), auto_refresh=False, screen=True) as live:
                next_refresh = time.monotonic() + interval
                while True:
                    key = _key(fd, max(0.0, next_refresh - time.monotonic()))
                    if key == "q":
                        return
                    if key == "up":
                        view.selected = max(0, view.selected - 1)
                    elif key == "down":
                        view.selected = min(len(view.rows) - 1, view.selected + 1)
                    elif key in ("r", "s", "a"):
                        view.message = "working ..."
                        live.update(view.render(), refresh=True)
                        view.act({"r": "restart", "s": "stop", "a": "start"}[key])
                        view.refresh()
                    elif key == "l" and view.rows:
                        live.stop()
                        _follow_log(view, view.rows[view.selected][0].name, fd)
                        live.start()
                    if time.monotonic() >= next_refresh:
                        view.refresh()
                        next_refresh = time.monotonic() + interval
                    live.update(view.render(), refresh=True)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

