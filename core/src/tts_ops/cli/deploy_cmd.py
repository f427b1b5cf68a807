"""``tts-ops deploy [run]``, ``deploy history``, ``releases``, ``rollback``."""

from __future__ import annotations

import json
import time

import click

from tts_ops.cli import completion
from tts_ops.cli.service_cmd import backend_options
from tts_ops.errors import ConfigError, OperationFailed

STRATEGIES = ["direct", "blue_green", "rolling", "canary"]



class _DeployGroup(click.Group):
    """``deploy NAME ...`` and ``deploy --strategy ...`` run ``deploy run``: a first word
    that is not a subcommand resolves to ``run``, with the arguments as given (service
    names cannot be subcommand names: the config refuses them). ``deploy`` alone deploys
    every service."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[
            str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_DeployGroup, invoke_without_command=True,
             context_settings={"ignore_unknown_options": True,
                               "allow_interspersed_args": False})
@click.pass_context
def deploy(ctx: click.Context) -> None:
    """Deploy services (a new release) with a strategy (`deploy run`, the default), or list
    past deploys (`deploy history`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@deploy.command()
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--strategy", default=None, metavar="|".join(STRATEGIES),
              shell_complete=completion.strategies,
              help="Default: each service's deploy.strategy (direct).")
@click.option("--environment", default=None, metavar="development|staging|production",
              help="Default: $TTS_OPS_ENVIRONMENT, else development.")
@backend_options
@click.option("--dry-run", is_flag=True, help="Show the plan and the checks; change nothing.")
@click.option("--skip-tests", is_flag=True, help="Skip the synthesis and plugin verification.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def run(app, names, strategy, environment, pm, dry_run, skip_tests, as_json) -> None:
    """Deploy services (a new release) with a strategy: `tts-ops deploy NAME` for short.

    Exit 0 deployed and verified, 1 failed and rolled back (the old release serves),
    2 bad usage or config, 3 a backend or strategy plugin is missing.
    """
    app.require_valid()
    from tts_ops.cli.progress import reporter_for
    from tts_ops.deploy.engine import DeployEngine

    reporter = reporter_for(as_json, click.echo)
    engine = DeployEngine(app, reporter)
    env = engine.environment(environment)
    if strategy is not None:
        app.host.lookup("strategy", strategy)
    failed = []
    if not dry_run:
        app.record_intent(app.services(names, not names), "running")
    with reporter:
        for svc in app.services(names, not names):
            record = engine.deploy(svc, strategy=strategy, environment=env, pm=pm,
                                   dry_run=dry_run, skip_tests=skip_tests)
            if record["result"] == "checks_failed":
                failed.append(svc.name)
    if failed:
        raise OperationFailed(f"pre-deployment checks failed for {', '.join(failed)}")


@deploy.command("history")
@click.argument("names", nargs=-1, shell_complete=completion.service_names)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def history_(app, names, as_json) -> None:
    """Past deploys, rollbacks and restarts, oldest first (only NAMES' if given)."""
    from tts_ops.deploy import history

    records = history.read(app.state_dir)
    if names:
        records = [r for r in records if r.get("service") in names]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("started_at", 0)))
        phases = ", ".join(f"{p['phase']} {p['duration_s']:.2f}s" for p in r.get("phases", []))
        kind = r.get("kind", "deploy")
        click.echo(f"{r['id']}  {when}  {r['service']}  {kind}  {r['strategy']}  {r['environment']}"
                   f"  {r['result']}  {r.get('duration_s', 0):.2f}s  [{phases}]")


@click.command()
@click.argument("name", required=False, shell_complete=completion.service_names)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def releases(app, name, as_json) -> None:
    """List each service's releases and which one is current."""
    from tts_ops.deploy.releases import ReleaseStore

    names = [name] if name else app.config.names()
    rows = []
    for service in names:
        store = ReleaseStore(app.state_dir, service)
        current = store.current()
        for r in store.all():
            data = r.to_json()
            data.pop("config", None)
            data["current"] = current is not None and current.id == r.id
            rows.append(data)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"]))
        mark = "*" if r["current"] else " "
        click.echo(f"{mark} {r['service']:<20} {r['id']:<22} {when}  {r['state']:<11}"
                   f" {r['strategy']:<10} {r['environment']}"
                   + (f"  ({r['reason']})" if r.get("reason") else ""))


@click.command()
@click.argument("name", required=False, shell_complete=completion.service_names)
@click.option("--to", "to_id", default=None, shell_complete=completion.release_ids,
              help="Release id (default: the previous good one).")
@click.option("--strategy", default=None, metavar="|".join(STRATEGIES),
              shell_complete=completion.strategies,
              help="Default: the service's deploy.strategy, or blue_green where that is"
                   " direct (a rollback keeps the address answering).")
@backend_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rollback(app, name, to_id, strategy, pm, as_json) -> None:
    """Deploy an earlier release again, without downtime; recorded as a rollback."""
    from tts_ops.cli.progress import reporter_for
    from tts_ops.deploy.engine import DeployEngine
    from tts_ops.deploy.releases import ReleaseStore

    app.require_valid()
    (svc,) = app.services((name,) if name else (), False)
    store = ReleaseStore(app.state_dir, svc.name)
    current = store.current()
    if to_id:
        target = store.get(to_id)
        if target is None:
            known = ", ".join(r.id for r in store.all()) or "none"
            raise ConfigError(f"--to {to_id}: no such release of {svc.name} (releases: {known})")
    else:
        target = store.last_good(exclude=current.id if current else None)
        if target is None:
            raise OperationFailed(f"{svc.name}: no earlier good release to roll back to")
    if strategy is not None:
        app.host.lookup("strategy", strategy)
    reporter = reporter_for(as_json, click.echo)
    with reporter:
        DeployEngine(app, reporter).deploy(svc, strategy=strategy, pm=pm, release=target,
                                           environment=target.environment, kind="rollback")
