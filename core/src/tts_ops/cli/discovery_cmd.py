"""``tts-ops discovery``: list, resolve, register, deregister, weight, cleanup, monitor, watch."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from tts_ops.cli import completion
from tts_ops.errors import ConfigError, OperationFailed


@click.group()
def discovery() -> None:
    """Find running instances, keep their health current, follow changes."""


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)  # a lease-based store reads records as beating now
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


@discovery.command("list")
@click.option("--type", "service_type", default=None, help="Only this service type.")
@click.option("--service", default=None, help="Only this service.")
@click.option("--all", "all_", is_flag=True, help="Include instances that are not passing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def list_(app, service_type, service, all_, as_json) -> None:
    """List registered instances (passing ones unless --all)."""
    now = time.time()
    records = app.registry().find_services(service_type=service_type, service=service,
                                           healthy_only=not all_)
    if as_json:
        click.echo(json.dumps([r.to_json(now) for r in records], indent=2))
        return
    click.echo(f"{'ID':<28} {'URL':<28} {'WEIGHT':>6} {'HEALTH':<9} {'BEAT':>6}  RELEASE")
    for r in records:
        click.echo(f"{r.id:<28} {r.url:<28} {r.weight:>6} {r.effective_health(now):<9} "
                   f"{_age(now - r.last_heartbeat):>6}  {r.release or '-'}")


@discovery.command()
@click.argument("name", shell_complete=completion.service_names)
@click.option("--json", "as_json", is_flag=True,
              help='{"service", "url", "id", "weight", "health", "release"}')
@click.pass_obj
def resolve(app, name, as_json) -> None:
    """Print one URL of NAME, chosen by weight among passing instances."""
    from tts_ops.discovery.client import TTSServiceDiscovery

    client = TTSServiceDiscovery(app.registry(), service=name, service_type=None)
    url = client.get_endpoint()
    if not as_json:
        click.echo(url)
        return
    record = next((r for r in app.registry().find_services(service=name) if r.url == url),
                  None)
    click.echo(json.dumps({"service": name, "url": url,
                           "id": record.id if record else None,
                           "weight": record.weight if record else None,
                           "health": record.health if record else None,
                           "release": record.release if record else None}))


@discovery.command()
@click.option("--id", "rid", required=True, help="Instance id: NAME or NAME@SLOT.")
@click.option("--host", required=True)
@click.option("--port", required=True, type=int)
@click.option("--weight", type=int, default=100, show_default=True)
@click.option("--ttl", type=float, default=None, help="Seconds without heartbeat before critical.")
@click.option("--type", "service_type", default=None)
@click.option("--release", default=None)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.option("--health-url", default=None)
@click.pass_obj
def register(app, rid, host, port, weight, ttl, service_type, release, labels, health_url
             ) -> None:
    """Register (or update) an instance by hand, e.g. one that tts-ops does not run."""
    from tts_ops.discovery.record import InstanceRecord

    settings = app.config.discovery
    parsed = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label {item!r}: use KEY=VALUE")
        parsed[key] = value
    record = InstanceRecord.from_input({
        "id": rid, "host": host, "port": port, "weight": weight,
        "ttl": ttl if ttl is not None else settings.ttl,
        "service_type": service_type or settings.service_type, "release": release,
        "labels": parsed, "meta": {"health_url": health_url} if health_url else {}})
    app.registry().register_service(record)
    click.echo(f"registered {record.id} at {record.url}")


@discovery.command()
@click.argument("instance_id")
@click.pass_obj
def deregister(app, instance_id) -> None:
    """Remove an instance."""
    if not app.registry().deregister_service(instance_id):
        raise OperationFailed(f"no instance {instance_id!r} is registered")
    click.echo(f"deregistered {instance_id}")


@discovery.command()
@click.argument("instance_id")
@click.argument("weight", type=int)
@click.pass_obj
def weight(app, instance_id, weight) -> None:
    """Set an instance's weight (0 takes it out of rotation)."""
    if not app.registry().set_weight(instance_id, weight):
        raise OperationFailed(f"no instance {instance_id!r} is registered")
    click.echo(f"{instance_id}: weight {weight}")


@discovery.command()
@click.option("--deregister-after", type=float, default=None,
              help="Seconds critical before removal (default: the config's).")
@click.pass_obj
def cleanup(app, deregister_after) -> None:
    """Remove instances that stopped sending heartbeats."""
    removed = app.registry().cleanup_stale_services(deregister_after)
    click.echo(f"removed {len(removed)} stale instance{'s' if len(removed) != 1 else ''}"
               + (f": {', '.join(removed)}" if removed else ""))


@discovery.command()
@click.option("--interval", type=click.FloatRange(min=0.05), default=10.0, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.05), default=2.0, show_default=True)
@click.option("--once", is_flag=True, help="One round of checks, then exit.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def monitor(app, interval, timeout, once, as_json) -> None:
    """Check every instance's health endpoint; update health with hysteresis; heartbeat."""
    from tts_ops.discovery.monitor import ServiceHealthMonitor
    from tts_ops.discovery.record import service_of

    def on_change(outcome) -> None:
        svc = app.config.get(service_of(outcome.id))
        app.host.emit("tts_ops_service_health_changed", service=svc, instance=outcome.id,
                      old=outcome.old, new=outcome.new, detail=outcome.detail)

    def tick(outcomes) -> None:
        for o in outcomes:
            if as_json:
                click.echo(json.dumps(o.__dict__))
            elif o.old != o.new or not o.ok:
                click.echo(f"{o.id}: {o.old} -> {o.new} ({o.detail})")

    mon = ServiceHealthMonitor(app.registry(), interval=interval, timeout=timeout,
                               liveness=_liveness(app), on_change=on_change)
    if once:
        tick(mon.run_once())
        return
    from tts_ops.cli.pipes import following

    with following():
        mon.run_forever(tick=tick)


def _liveness(app):
    """Ask each service's backend, once per backend, whether the process of each record
    runs: the instance the record names (``tts@green`` is the slot ``tts-green``), not the
    configured service, which after a deploy runs under no name of its own."""

    def check(records):
        answer: dict[str, bool | None] = {}
        groups: dict[str, list] = {}
        registry = app.registry()
        instances: dict[str, dict[str, Any]] = {}
        for record in records:
            svc = app.config.get(record.service)
            if svc is None or not registry.is_local(record.id):
                continue  # another host's instance: its health URL answers for it
            if svc.name not in instances:
                instances[svc.name] = {s.instance_id: s for s in app.runtime([svc])}
            process = instances[svc.name].get(record.id.split(":")[0])
            if process is None:
                continue  # no instance of this host runs under that id: unknown here
            try:
                groups.setdefault(app.choose_backend(svc, None), []).append((record, process))
            except Exception:
                continue
        for backend_name, pairs in groups.items():
            try:
                rows = app.backend(backend_name).status([svc for _r, svc in pairs])
            except Exception:
                continue
            for (record, _svc), row in zip(pairs, rows, strict=True):
                answer[record.id] = str(row.state) in ("running", "unhealthy")
        return answer

    return check


@discovery.command()
@click.option("--service", default=None, help="Only changes of this service.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.option("--from-start", is_flag=True, help="Replay the changes kept so far first.")
@click.pass_obj
def watch(app, service, as_json, from_start) -> None:
    """Stream registry changes (from any process) as they happen.

    Changes to another host's instances (a shared registry: etcd) also reach this host's
    plugins, as tts_ops_registry_changed, while the watch runs; this host's own changes
    reached them from the command that made them, and a replayed history reaches none.
    """
    registry = app.registry()
    live_from = registry.last_seq(service)
    seq = 0 if from_start else live_from

    def show(change: dict) -> None:
        if as_json:
            click.echo(json.dumps(change))
        else:
            rec = change["record"] or {}
            click.echo(f"{change['seq']} {change['kind']} {change['id']}"
                       f" weight={rec.get('weight')} health={rec.get('health')}")

    from tts_ops.cli.pipes import following
    from tts_ops.readergone import output_gone

    with following():
        for change in registry.follow(seq, service, stop=output_gone):
            show(change)
            if change["seq"] > live_from and not registry.is_local(change["id"]):
                app.host.emit("tts_ops_registry_changed", change=change)
        raise BrokenPipeError  # the reader left: one line, as for any closed output
