"""``tts-ops logs``: tail and follow, stats, export, archive, rotate, monitor.

``tts-ops logs NAME [-n N] [-f]`` tails a service (the ``tail`` subcommand). Records come
from each backend's log sink, so every command works whatever the backend. Problems with
single files (unreadable, corrupt gzip) are reported one line each, processing goes on,
and the exit code is 1.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from tts_ops.cli import completion
from tts_ops.cli.service_cmd import backend_options
from tts_ops.errors import ConfigError, OperationFailed


class _LogsGroup(click.Group):
    """``logs NAME ...`` runs ``logs tail NAME ...``: a word that is not a subcommand
    resolves to ``tail`` (service names cannot be subcommand names: the config refuses
    them), with the arguments as given."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[
            str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "tail", self.commands["tail"], args
        return super().resolve_command(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """``logs <TAB>``: the subcommands and the services (``logs NAME`` is a tail)."""
        return [*super().shell_complete(ctx, incomplete),
                *completion.service_names(ctx, None, incomplete)]  # type: ignore[arg-type]



def _contracts():
    import tts_ops.contracts

    return tts_ops.contracts


@click.group(cls=_LogsGroup)
def logs() -> None:
    """Read service logs: `logs NAME [-n N] [-f]`, stats, export, archive, rotate, monitor."""


class _Skips:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        click.echo(f"tts-ops: skipped: {message}", err=True)

    def finish(self) -> None:
        if self.count:
            raise SystemExit(1)


def _sinks(app, names, pm=None):
    from tts_ops.logs.sinks import sink_for

    services = app.services(tuple(names), not names)
    out = []
    for svc in services:
        for running in app.runtime([svc]):
            backend = app.backend(app.choose_backend(running, pm))
            out.append((svc.name if running is svc else running.name,
                        sink_for(app, running, backend)))
    return out


@logs.command("tail")
@click.argument("name", shell_complete=completion.service_names)
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(min=0),
              help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@backend_options
@click.pass_obj
def tail(app, name: str, lines: int, follow: bool, pm: str | None) -> None:
    """Show the last lines of a service's log, and follow it with -f."""
    svc = app.runtime(app.services((name,), False))[0]
    backend = app.backend(app.choose_backend(svc, pm))
    from tts_ops.cli.pipes import following

    found = iter(backend.logs(svc, lines, follow))
    try:
        with following(sigterm=follow):
            for line in found:
                click.echo(line)
    finally:  # a generator's own cleanup (a journalctl -f it runs) now, not at exit
        close = getattr(found, "close", None)
        if close is not None:
            close()


def _iso_bound(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    from tts_ops.logs.records import parse_when
    from tts_ops.logs.stats import iso

    return iso(parse_when(text, what))


@logs.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--since", default=None, help="From this time (ISO 8601, epoch, or an age: 2h).")
@click.option("--until", default=None, help="Up to this time.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stats(app, names, since, until, as_json) -> None:
    """Lines, bytes, levels, errors per minute, requests, synthesis latency, top errors."""
    from tts_ops.logs.sinks import FileSink
    from tts_ops.logs.stats import ServiceStats, consume, consume_files

    lo, hi = _iso_bound(since, "--since"), _iso_bound(until, "--until")
    skips = _Skips()
    rows: dict[str, ServiceStats] = {}
    for name, sink in _sinks(app, names):
        st = rows.setdefault(name, ServiceStats(name))
        if isinstance(sink, FileSink):  # files it can share out between cores
            consume_files(st, sink.files(), lo, hi, skips)
        else:
            consume(st, sink.lines(skips), lo, hi)
    data = [r.to_json() for r in rows.values()]
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for d in data:
            p = d["synth_ms"]
            click.echo(f"{d['service']}: {d['lines']} lines, {d['bytes']} bytes,"
                       f" {d['first'] or '-'} .. {d['last'] or '-'}"
                       + (f"; {d['malformed_lines']} malformed lines skipped"
                          if d["malformed_lines"] else ""))
            click.echo("  levels: " + ", ".join(f"{k} {v}" for k, v in sorted(
                d["levels"].items())))
            click.echo(f"  errors: {d['errors']} ({d['errors_per_minute'] or 0}/min);"
                       f" requests: {d['requests']}; synth_ms p50 {p['p50']} p95 {p['p95']}"
                       f" p99 {p['p99']}")
            for e in d["top_errors"]:
                click.echo(f"    {e['count']:>6}  {e['msg']}")
    skips.finish()


@logs.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--start-time", default=None, help="e.g. '2024-01-01 00:00:00' (local time).")
@click.option("--end-time", default=None)
@click.option("--level", default=None, type=click.Choice(
    ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="This level and above.")
@click.option("--format", "fmt", default="json", type=click.Choice(["json", "jsonl", "csv"]))
@click.pass_obj
def export(app, file, names, start_time, end_time, level, fmt) -> None:
    """Export records (streaming) to FILE as a JSON array, JSON lines or CSV."""
    from tts_ops.logs import export as exporter
    from tts_ops.logs.records import parse, parse_when

    lo = parse_when(start_time, "--start-time") if start_time else None
    hi = parse_when(end_time, "--end-time") if end_time else None
    floor = exporter.LEVEL_ORDER[level.upper()] if level else None
    skips = _Skips()
    sinks = _sinks(app, names)

    malformed = 0

    def records():
        nonlocal malformed
        for name, sink in sinks:
            for raw in sink.lines(skips):
                rec = parse(raw.decode("utf-8", "replace").rstrip("\n"), name)
                if rec.malformed:
                    malformed += 1
                    continue
                if (lo is not None or hi is not None) and rec.ts is None:
                    continue
                if (lo is not None and rec.ts < lo) or (hi is not None and rec.ts > hi):
                    continue
                if floor is not None and exporter.LEVEL_ORDER.get(rec.level or "", 0) < floor:
                    continue
                yield rec

    if file == "-":
        count = exporter.write(records(), sys.stdout, fmt)
    else:
        import io

        from tts_ops.logwriter import LOG_MODE
        from tts_ops.statefile import atomic_file

        try:
            # the logs are 0640: an export of them is no more readable than they are
            with atomic_file(Path(file), LOG_MODE) as raw:
                out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                count = exporter.write(records(), out, fmt)
                out.flush()
                out.detach()
        except OSError as exc:
            raise OperationFailed(f"cannot write {file}: {exc.strerror or exc}") from None
        click.echo(f"exported {count} records to {file}", err=True)
    if malformed:
        click.echo(f"tts-ops: skipped {malformed} malformed records (impossible numbers)",
                   err=True)
    skips.finish()


@logs.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--older-than", default=None, help="Only rotated files older than this (7d).")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Directory for the archive (default: <state>/archives).")
@click.pass_obj
def archive(app, names, older_than, output) -> None:
    """Pack rotated log files into a .tar.gz with a manifest, then delete them."""
    from tts_ops.logs import archive as archiver
    from tts_ops.logs.records import parse_age

    age = parse_age(older_than, "--older-than") if older_than else None
    groups = {}
    for name, sink in _sinks(app, names):
        if isinstance(sink, _contracts().LiveFile):
            groups[name] = archiver.archivable(sink.live(), age)
    target = Path(output) if output else app.state_dir / "archives"
    path, manifest = archiver.create(groups, target)
    if path is None:
        click.echo("nothing to archive")
        return
    click.echo(f"archived {len(manifest['files'])} files into {path}")


@logs.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@backend_options
@click.pass_obj
def rotate(app, names, pm) -> None:
    """Rotate services' log files now (backends that rotate themselves say so)."""
    for svc in app.runtime(app.services(names, not names)):
        backend = app.backend(app.choose_backend(svc, pm))
        if not isinstance(backend, _contracts().LogRotator):
            click.echo(f"{svc.name}: the {backend.name} backend rotates its logs itself")
            continue
        click.echo(f"{svc.name}: {backend.rotate_logs(svc)}")


@logs.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--error-rate", default=None, metavar="N/min",
              help="Alert above N errors per minute (e.g. 5 or 5/min).")
@click.option("--pattern", default=None, help="Alert on lines matching this regex.")
@click.option("--latency-p95", default=None, type=float, metavar="MS",
              help="Alert when synthesis p95 over the window passes MS.")
@click.option("--window", default=60.0, type=click.FloatRange(min=1), show_default=True)
@click.option("--duration", default=None, type=float, help="Stop after this many seconds.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def monitor(app, names, error_rate, pattern, latency_p95, window, duration, as_json) -> None:
    """Follow logs (across rotation) and raise alerts when thresholds are crossed."""
    from tts_ops.logs.monitor import LogMonitor, Thresholds

    rate = None
    if error_rate is not None:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*min)?\s*", error_rate)
        if not m:
            raise ConfigError(f"--error-rate {error_rate!r}: use a number of errors per minute,"
                              " e.g. 5 or 5/min")
        rate = float(m.group(1))
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise ConfigError(f"--pattern {pattern!r}: not a valid regex ({exc})") from None
    sources = {}
    for name, sink in _sinks(app, names):
        if not isinstance(sink, _contracts().LiveFile):
            raise OperationFailed(f"{name}: its {sink.name} sink cannot be followed by monitor")
        sources[name] = sink.live()

    def alert(a):
        app.host.emit("tts_ops_alert", alert=a)
        if as_json:
            click.echo(json.dumps(a))
        else:
            when = time.strftime("%H:%M:%S", time.localtime(a["ts"]))
            click.echo(f"{when} ALERT {a['service']} {a['kind']}: {a['message']}")

    mon = LogMonitor(sources, Thresholds(rate, regex, latency_p95, window), alert)
    from tts_ops.cli.pipes import following

    with following():
        mon.run(duration)
