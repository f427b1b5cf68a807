"""``tts-ops fleet``: status, deploy, rollback, restart, start, stop and run on every host
of the config's ``fleet`` section, from this machine, over SSH (`tts_ops.fleet`).

Each command sends each host its config (`tts_ops.fleet.inventory.host_config`) and runs
``tts-ops fleet receive -- COMMAND`` there in the same ssh round trip. ``receive`` is the
host's side: it validates what it got, keeps it in its state dir and runs the command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tts_ops.errors import ConfigError, OperationFailed

#: a config larger than this is not a config: ``receive`` refuses it unread
MAX_CONFIG = 16 * 1024 * 1024


@click.group()
def fleet() -> None:
    """Operate every host of the config's fleet section over SSH."""


def _inventory(app: Any) -> tuple[Any, dict[str, Any]]:
    """The fleet and the config document as written (each host gets it, not our model's
    dump with every default). Each host's config is validated as the host will validate
    it, once per content of the config (a marker beside its cache entry)."""
    from tts_ops.config.loader import read_document

    loaded = app.loaded
    fleet_config = loaded.config.fleet
    if fleet_config is None:
        raise ConfigError(f"{loaded.source}: no fleet section: add \"fleet\": {{\"hosts\":"
                          " [{\"name\": \"web-1\", \"ssh\": \"deploy@10.0.0.1\"}]} (docs/fleet.md)")
    document = read_document(loaded.path) if loaded.path else {}
    marker = loaded.cache_file.with_suffix(".hosts-ok") if loaded.cache_file else None
    if marker is None or not marker.exists():
        from tts_ops.fleet.inventory import host_problems

        problems = host_problems(document, fleet_config)
        if problems:
            raise ConfigError(problems[0], problems=problems)
        if marker is not None and marker.parent.is_dir():
            from tts_ops.statefile import atomic_write_bytes

            atomic_write_bytes(marker, b"")
    return fleet_config, document


def _payload(document: dict[str, Any], host: Any,
             sources: dict[str, str] | None = None) -> bytes:
    from tts_ops.fleet.hosts import host_config

    return json.dumps(host_config(document, host, sources)).encode()


def _push_sources(fleet_config: Any, document: dict[str, Any], host: Any) -> dict[str, str]:
    """Each service's ``source`` directory (as it is on ``host``, overrides applied), sent
    to the host: where the host keeps it, per service."""
    from pathlib import Path

    from tts_ops.fleet import sources, ssh
    from tts_ops.fleet.hosts import host_config

    kept: dict[str, str] = {}
    for svc in host_config(document, host)["services"]:
        if not svc.get("source"):
            continue
        remote = ssh.tts_ops_argv(host, ["fleet", "receive-source", "--name", svc["name"]])
        answer = ssh.run(fleet_config, host, [], sources.pack(Path(svc["source"])),
                         remote=remote)
        if not answer.ok:
            raise OperationFailed(f"{answer.problem()} (sending the source of"
                                  f" {svc['name']})")
        kept[svc["name"]] = answer.stdout.strip()
    return kept


def _hosts(fleet_config: Any, names: tuple[str, ...]) -> list[Any]:
    if not names:
        return list(fleet_config.hosts)
    chosen = []
    for name in names:
        host = fleet_config.get(name)
        if host is None:
            known = ", ".join(h.name for h in fleet_config.hosts)
            raise ConfigError(f"--host {name}: not a host of the fleet ({known})")
        chosen.append(host)
    return chosen


def _each(fleet_config: Any, document: dict[str, Any], hosts: list[Any], args: list[str],
          parallel: int) -> list[Any]:
    """Run ``args`` on ``hosts``, ``parallel`` at a time; the answers in the hosts' order."""
    from concurrent.futures import ThreadPoolExecutor

    from tts_ops.fleet import ssh

    def one(host: Any) -> Any:
        return ssh.run(fleet_config, host, args, _payload(document, host))

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


_host_option = click.option("--host", "host_names", multiple=True, metavar="NAME",
                            help="Only this host of the fleet (repeatable).")


@fleet.command()
@_host_option
@click.option("--json", "as_json", is_flag=True, help="One JSON list: status --json rows"
              " with fleet_host (and error for a host that could not be read).")
@click.pass_obj
def status(app, host_names, as_json) -> None:
    """Every host's processes in one table, asked in parallel."""
    fleet_config, document = _inventory(app)
    hosts = _hosts(fleet_config, host_names)
    answers = _each(fleet_config, document, hosts, ["status", "--json"], len(hosts))
    rows: list[dict[str, Any]] = []
    for answer in answers:
        try:
            found = json.loads(answer.stdout) if answer.ok else None
        except ValueError:
            found = None
        if not isinstance(found, list):
            rows.append({"fleet_host": answer.host, "error": answer.problem()})
            continue
        rows += [{"fleet_host": answer.host, **row} for row in found if isinstance(row, dict)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(rows)
    if any("error" in row for row in rows):
        sys.exit(1)


def _table(rows: list[dict[str, Any]]) -> None:
    header = ("HOST", "NAME", "STATE", "PID", "RELEASE", "RESTARTS")
    lines = [header]
    for row in rows:
        if "error" in row:
            lines.append((row["fleet_host"], "-", "unreachable", "-", "-", "-"))
            continue
        release = row.get("release") or "-"
        lines.append((row["fleet_host"], row.get("name", "?"), row.get("state", "?"),
                      str(row.get("pid") or "-"), str(release), str(row.get("restarts", 0))))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                   .rstrip())
    for row in rows:
        if "error" in row:
            click.echo(f"tts-ops: error: {row['error']}", err=True)


def _streamed(fleet_config: Any, document: dict[str, Any], hosts: list[Any],
              args: list[str], as_json: bool, with_sources: bool = False,
              current: dict[str, str] | None = None) -> list[Any]:
    """``args`` on ``hosts`` at once, each host's lines printed as they come, prefixed
    with the host; the answers in the hosts' order. A deploy or rollback runs with
    ``--json`` there: its events are shown as they happen (phase, weights, result), and
    each deployed release is noted in ``current``."""
    import threading

    from tts_ops.fleet import ssh

    lock = threading.Lock()
    answers: dict[str, Any] = {}

    def one(host: Any) -> None:
        try:
            kept = _push_sources(fleet_config, document, host) if with_sources else None
        except OperationFailed as exc:
            answers[host.name] = ssh.Answer(host.name, 1, "", exc.message)
            return
        proc = ssh.stream(fleet_config, host, args, _payload(document, host, kept))
        assert proc.stdout is not None and proc.stderr is not None
        out = []
        for line in proc.stdout:
            out.append(line)
            event = _event_of(line) if current is not None else None
            with lock:
                if event is None:
                    _line(as_json, host.name, line.rstrip("\n"))
                    continue
                if event.get("event") == "result" and event.get("result") == "deployed":
                    noted = f"{event.get('service')}={event.get('release')}"
                    current[host.name] = ", ".join(filter(None, [current.get(host.name),
                                                                 noted]))
                if as_json:
                    click.echo(json.dumps({"fleet_host": host.name, **event}))
                else:
                    _line(False, host.name, _rendered(event))
        err = proc.stderr.read()
        answers[host.name] = ssh.Answer(host.name, proc.wait(), "".join(out), err)

    threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answers[h.name] for h in hosts]


def _event_of(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _rendered(event: dict[str, Any]) -> str:
    """One deploy event as a line of the fleet's progress."""
    from tts_ops.errors import printable

    kind = event.get("event")
    if kind == "start":
        text = (f"{event.get('operation')} {event.get('id')}: {event.get('service')}"
                f" {event.get('old')} -> {event.get('new')} with {event.get('strategy')}")
    elif kind == "phase":
        text = (f"{'ok  ' if event.get('ok') else 'FAIL'} {event.get('phase')}"
                f" {float(event.get('duration_s') or 0):.2f}s")
    elif kind == "weights":
        weights = event.get("weights") or {}
        text = "weights " + ", ".join(f"{k}={v}" for k, v in sorted(weights.items()))
    elif kind == "result":
        text = (f"{event.get('service')}: {event.get('result')} release"
                f" {event.get('release')} in {float(event.get('duration_s') or 0):.2f}s"
                + (f" ({event['reason']})" if event.get("reason") else ""))
    elif kind == "log":
        text = f"{event.get('message')}"
    elif kind == "platform":
        p = event.get("platform") or {}
        text = (f"platform: process manager {p.get('process_manager')}, engine"
                f" {p.get('engine', '-')}")
    else:
        text = str(kind)
    return printable(text)


def _line(as_json: bool, host: str, line: str) -> None:
    if as_json:
        click.echo(json.dumps({"fleet_host": host, "event": "output", "line": line}))
    else:
        click.echo(f"{host}:   {line}")


def _one_by_one(app: Any, what: str, args: list[str], host_names: tuple[str, ...],
                parallel: int | None, as_json: bool, undo: list[str] | None = None,
                names: tuple[str, ...] = ()) -> None:
    """``args`` on each host, ``parallel`` at a time, in the inventory's order; stop at
    the first host that fails; with ``undo``, run it on the hosts already done (last
    first). One line per host and what it answered; exit 1 when a host failed."""
    fleet_config, document = _inventory(app)
    hosts = _hosts(fleet_config, host_names)
    if what in ("deploy", "rollback", "restart"):
        routing = [h for h in hosts if _routes_only(document, h, names)]
        for host in routing:
            _say(as_json, host.name, "skipped", f"{host.name} only routes (instances: 0):"
                 f" nothing to {what} there")
        hosts = [h for h in hosts if h not in routing]
    step = parallel or fleet_config.parallel
    events = what in ("deploy", "rollback")  # their events: progress, and the release
    current: dict[str, str] | None = {} if events else None
    if events:
        args = [*args, "--json"]
    with _fleet_lock(app, what):
        done: list[Any] = []
        failed = None
        for i in range(0, len(hosts), step):
            batch = hosts[i:i + step]
            for host in batch:
                _say(as_json, host.name, "running", f"{what} on {host.name}")
            answers = _streamed(fleet_config, document, batch, args, as_json,
                                with_sources=what == "deploy", current=current)
            for answer in answers:
                _report(as_json, answer, what, printed=True)
            done += [h for h, a in zip(batch, answers, strict=True) if a.ok]
            failed = next((a for a in answers if not a.ok), None)
            if failed is not None:
                break
        if failed is not None and undo:
            for host in reversed(done):
                _say(as_json, host.name, "undoing", f"{' '.join(undo)} on {host.name}")
                if current is not None:
                    current.pop(host.name, None)  # rolled back: asked again below
                _report(as_json, _streamed(fleet_config, document, [host], undo, as_json)[0],
                        " ".join(undo), printed=True)
        _summary(fleet_config, document, hosts, as_json, current or {})
    if failed is not None:
        left = [h.name for h in hosts if h not in done and h.name != failed.host]
        raise OperationFailed(f"fleet {what} stopped at {failed.problem()}"
                              + (f"; not started on {', '.join(left)}" if left else ""))


def _routes_only(document: dict[str, Any], host: Any, names: tuple[str, ...]) -> bool:
    """Whether every service ``names`` picks (all, without names) is only routed on
    ``host``: a router-only host (``instances: 0``) has no instance to deploy."""
    from tts_ops.fleet.hosts import host_config

    services = [s for s in host_config(document, host)["services"]
                if not names or s.get("name") in names]
    return bool(services) and all(s.get("instances", 1) == 0 for s in services)


def _say(as_json: bool, host: str, phase: str, message: str) -> None:
    if as_json:
        click.echo(json.dumps({"fleet_host": host, "event": phase, "message": message}))
    else:
        click.echo(f"{host}: {message}")


def _report(as_json: bool, answer: Any, what: str, printed: bool = False) -> None:
    if not printed:
        for line in answer.stdout.splitlines():
            _line(as_json, answer.host, line)
    phase = "ok" if answer.ok else "failed"
    _say(as_json, answer.host, phase, f"{what} {'done' if answer.ok else 'failed'}"
         + ("" if answer.ok else f": {answer.problem().split(': ', 1)[-1]}"))


def _summary(fleet_config: Any, document: dict[str, Any], hosts: list[Any],
             as_json: bool, known: dict[str, str]) -> None:
    """Which release each host runs now (one line a host and service): as its deploy
    just said, else asked (a host not reached, failed, or rolled back)."""
    ask = [h for h in hosts if h.name not in known]
    answers = _each(fleet_config, document, ask, ["releases", "--json"], len(ask)) \
        if ask else []
    for host in hosts:
        if host.name in known:
            _current(as_json, host.name, known[host.name])
    for answer in answers:
        current = "unreachable"
        try:
            found = json.loads(answer.stdout) if answer.ok else None
        except ValueError:
            found = None
        if isinstance(found, list):
            ids = sorted({f"{r.get('service')}={r.get('id')}" for r in found
                          if isinstance(r, dict) and r.get("current")})
            current = ", ".join(ids) or "no release"
        _current(as_json, answer.host, current)


def _current(as_json: bool, host: str, current: str) -> None:
    if as_json:
        click.echo(json.dumps({"fleet_host": host, "event": "releases", "current": current}))
    else:
        click.echo(f"{host}: runs {current}")


class _fleet_lock:
    """The fleet-wide lock of a shared registry (etcd), when the config has one: two
    operators' fleet deploys never interleave. A registry of this machine alone (the
    file registry) has no other operator to keep out: nothing is taken."""

    def __init__(self, app: Any, what: str) -> None:
        self.app = app
        self.what = what
        self.held: Any = None

    def __enter__(self) -> _fleet_lock:
        import os
        import time

        if self.app.config.discovery.registry == "file":
            return self
        holder = {"pid": os.getpid(), "since": time.time(), "cmd": f"tts-ops fleet {self.what}"}
        self.held = self.app.registry().deploy_lock("fleet", holder)
        self.held.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held is not None:
            self.held.__exit__(*exc)


_parallel = click.option("--parallel", type=click.IntRange(1, 64), default=None,
                         help="Hosts at once (default: fleet.parallel).")
_json = click.option("--json", "as_json", is_flag=True, help="JSON lines.")


@fleet.command()
@click.argument("names", nargs=-1)
@click.option("--strategy", default=None, help="Deploy strategy on every host.")
@_parallel
@_host_option
@click.option("--rollback-on-failure", is_flag=True,
              help="When a host fails, roll back the hosts already deployed.")
@_json
@click.pass_obj
def deploy(app, names, strategy, parallel, host_names, rollback_on_failure, as_json) -> None:
    """Deploy host by host (or --parallel N at a time); stop at the first that fails."""
    args = ["deploy", *names, *(["--strategy", strategy] if strategy else [])]
    _one_by_one(app, "deploy", args, host_names, parallel, as_json,
                undo=["rollback", *names] if rollback_on_failure else None, names=names)


@fleet.command()
@click.argument("names", nargs=-1)
@_parallel
@_host_option
@_json
@click.pass_obj
def rollback(app, names, parallel, host_names, as_json) -> None:
    """Roll back host by host to each one's previous release."""
    _one_by_one(app, "rollback", ["rollback", *names], host_names, parallel, as_json,
                names=names)


@fleet.command()
@click.argument("name")
@_parallel
@_host_option
@_json
@click.pass_obj
def restart(app, name, parallel, host_names, as_json) -> None:
    """Restart a service host by host (each host's restart is zero-downtime)."""
    _one_by_one(app, "restart", ["restart", name], host_names, parallel, as_json,
                names=(name,))


def _start_stop(verb: str):
    @click.argument("names", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Every service of the config.")
    @_parallel
    @_host_option
    @_json
    @click.pass_obj
    def command(app, names, all_, parallel, host_names, as_json) -> None:
        if not names and not all_:
            raise ConfigError(f"fleet {verb}: name a service or pass --all")
        _one_by_one(app, verb, [verb, *names, *(["--all"] if all_ else [])], host_names,
                    parallel, as_json)

    command.__doc__ = f"{verb.capitalize()} services on every host."
    return fleet.command(name=verb)(command)


start = _start_stop("start")
stop = _start_stop("stop")


@fleet.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@_host_option
@_json
@click.pass_obj
def run(app, args, host_names, as_json) -> None:
    """Any tts-ops command on every host at once: fleet run -- logs tts --lines 5."""
    fleet_config, document = _inventory(app)
    hosts = _hosts(fleet_config, host_names)
    answers = _each(fleet_config, document, hosts, list(args), len(hosts))
    for answer in answers:
        _report(as_json, answer, " ".join(args))
    failed = [a for a in answers if not a.ok]
    if failed:
        raise OperationFailed(f"fleet run: {len(failed)} of {len(answers)} hosts failed;"
                              f" first: {failed[0].problem()}")


@fleet.command(name="receive-source", hidden=True)
@click.option("--name", required=True)
@click.pass_obj
def receive_source(app, name) -> None:
    """A host's side: a service's source tree (tar) on stdin, kept; prints where."""
    from tts_ops.fleet.sources import MAX_SOURCE, keep

    click.echo(str(keep(app.state_dir, name, sys.stdin.buffer.read(MAX_SOURCE + 1))))


@fleet.command(hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def receive(app, args) -> None:
    """A host's side: read a config on stdin, validate it, keep it in the state dir
    (0600, named by its content: two commands at once never read each other's), and run
    ``tts-ops ARGS`` with it."""
    from tts_ops.fleet.received import keep

    data = sys.stdin.buffer.read(MAX_CONFIG + 1)
    path = keep(app.state_dir, data, MAX_CONFIG)
    if not args:
        click.echo(str(path))
        return
    from tts_ops.cli import create_cli

    argv = ["--state-dir", str(app.state_dir), "-c", str(path), *args]
    create_cli().main(args=argv, prog_name="tts-ops")
