"""``tts-ops config validate|show``."""

from __future__ import annotations

import json

import click

from tts_ops.errors import ConfigError


@click.group()
def config() -> None:
    """Validate or show the services config."""


@config.command()
@click.option("--orchestration", metavar="FILE", help="Also validate an orchestration config.")
@click.option("--json", "as_json", is_flag=True,
              help='{"source", "ok", "services", "problems", "warnings"}; exit 2 if not ok.')
@click.pass_obj
def validate(app, orchestration: str | None, as_json: bool) -> None:
    """Check a config and report every problem at once (exit 2 if any)."""
    app.use_cache = False
    problems: list[str] = []
    source = app.config_path or "?"
    try:
        loaded = app.loaded
        source = loaded.source
        app.require_valid()
    except ConfigError as exc:
        problems.extend(exc.problems)
    orch = None
    if orchestration:
        from tts_ops.config.loader import load_orchestration

        try:
            orch = load_orchestration(orchestration)
            if not problems:
                problems.extend(_check_dependencies(app.config, orch, orchestration))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if not problems:  # every check any command runs: the dependency graph `plan` builds
        from tts_ops.orchestrate.graph import build

        try:
            build(app.config, orch, source + (f" + {orchestration}" if orchestration else ""))
        except ConfigError as exc:
            problems.extend(exc.problems)
    warnings: list[str] = []
    records: dict[str, str] = {}
    if not problems:
        from tts_ops.deploy.slots import port_warnings
        from tts_ops.discovery.advertise import record_addresses, unreachable

        warnings = [f"{source}: {w}" for w in app.option_warnings]
        warnings += port_warnings(app.config.services)
        try:
            advertise = app.advertised
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            if advertise is not None:  # a shared registry: what other hosts will read
                records = record_addresses(app.config.services, advertise)
                warnings += unreachable(app.config.services, advertise)
    if as_json:
        click.echo(json.dumps({"source": source, "ok": not problems,
                               "services": 0 if problems else len(app.config.services),
                               "problems": problems, "warnings": warnings,
                               "records": records}, indent=2))
        if problems:
            raise SystemExit(2)
        return
    if problems:
        raise ConfigError(problems[0], problems=problems)
    for line in warnings:
        click.echo(f"tts-ops: warning: {line}", err=True)
    count = len(app.config.services)
    extra = f" and {orchestration}" if orchestration else ""
    click.echo(f"{source}{extra}: OK ({count} service{'s' if count != 1 else ''})")
    for name, host in records.items():
        click.echo(f"  {name}: its records in the shared registry carry {host}")


def _check_dependencies(cfg, orch, source: str) -> list[str]:
    import difflib

    names = cfg.names()
    problems = []
    for i, dep in enumerate(orch.dependencies):
        for field in ("dependent",):
            value = getattr(dep, field)
            if value is not None and value not in names:
                close = difflib.get_close_matches(value, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    f"{source}: dependencies[{i}].{field}: unknown service {value!r}{hint}"
                )
        if dep.service_name not in names and not dep.health_check_url:
            problems.append(
                f"{source}: dependencies[{i}].service_name: {dep.service_name!r} is not a"
                " configured service; give it a health_check_url to make it an external"
                " dependency"
            )
    return problems


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(app, as_json: bool) -> None:
    """Print the effective config, with every default filled in."""
    app.use_cache = False
    loaded = app.loaded
    data = loaded.config.model_dump(mode="json")
    for svc, out in zip(loaded.config.services, data["services"], strict=True):
        out["effective_command"] = svc.argv()
        out["effective_log_file"] = str(svc.log_path(app.state_dir))
    if as_json:
        click.echo(json.dumps({"source": loaded.source, **data}, indent=2))
        return
    click.echo(f"# source: {loaded.source}")
    click.echo(json.dumps(data, indent=2))
