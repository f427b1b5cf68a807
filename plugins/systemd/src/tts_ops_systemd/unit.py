"""Rendering the unit a careful operator would write, from a validated service config.

One unit per service, ``tts-ops-<name>.service``; with ``instances > 1`` a template
``tts-ops-<name>@.service`` whose instance name is the port (``@9000``, ``@9001`` ...).

A service whose address tts-ops holds (``socket: inherit``) gets a socket unit,
``tts-ops-<service>-address.socket`` (``ListenStream=`` its host:port,
``FileDescriptorName=http``), which every generation's unit names in ``Sockets=``: systemd
passes the same listening socket to blue and green at once. The socket's own service,
``tts-ops-<service>-address.service``, only holds it (``sleep infinity``): it is what
systemd would start on traffic when no generation runs, so no generation is ever started
by surprise, and connections wait in the queue until one accepts them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts_ops_systemd import escape

EXIT_EXEC = 203  # systemd's exit status when the command cannot be executed
HOME_DIRS = ("/home", "/root", "/run/user")
INSTANCE = "TTSOPSINSTANCE"  # placeholder replaced by %i after quoting
MAX_SECONDS = 7 * 86400.0


@dataclass
class UnitPlan:
    service: Any
    scope: str
    hardening: bool
    log_file: Path | None  # None: the journal
    state_dir: Path
    keeper: Path | None = None  # the spec of its heartbeat keeper; None: no keeper

    @property
    def keeper_unit(self) -> str:
        return keeper_unit(self.service)

    @property
    def templated(self) -> bool:
        return self.service.instances > 1

    @property
    def unit_name(self) -> str:
        return unit_name(self.service)

    def instance_units(self) -> list[str]:
        return instance_units(self.service)


def instance_units(service: Any) -> list[str]:
    """The units a service runs as: its own, or one per instance of its template."""
    name = unit_name(service)
    if service.instances <= 1:
        return [name]
    base = name.removesuffix("@.service")
    return [f"{base}@{port}.service"
            for port in range(service.port, service.port + service.instances)]


def socket_unit(owner: str) -> str:
    return f"tts-ops-{owner}-address.socket"


def holder_unit(owner: str) -> str:
    return f"tts-ops-{owner}-address.service"


def render_socket(owner: str, host: str, port: int) -> str:
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "\n".join([
        "# Written by tts-ops: the address of a service, shared by its generations.",
        "[Unit]",
        f"Description=tts-ops address of {escape.plain(owner, 'name')}"
        f" ({escape.plain(listen, 'host')})",
        "",
        "[Socket]",
        f"ListenStream={escape.plain(listen, 'host')}",
        "FileDescriptorName=http",
        "Backlog=1024",
        "",
        "[Install]",
        "WantedBy=sockets.target",
        ""])


def keeper_unit(service: Any) -> str:
    """``tts-ops_beat-NAME.service``: no service's own unit can be named so (the ``_``
    after ``tts-ops``)."""
    return f"tts-ops_beat-{service.name}.service"


def render_keeper(plan: UnitPlan, python: str | None = None) -> str:
    """The unit of the heartbeat keeper of ``plan``'s service (`tts_ops.discovery.keeper`):
    started by the service's ``Upholds=`` once it is active, stopped with it."""
    from tts_ops.plugin import discovery_keeper_argv

    assert plan.keeper is not None
    svc = plan.service
    units = plan.instance_units()
    lines = [
        "# Written by tts-ops: heartbeats of a service in discovery, while it runs.",
        "[Unit]",
        f"Description=tts-ops heartbeats of {escape.plain(svc.name, 'name')}",
        f"After={' '.join(units)}",
    ]
    if not plan.templated:  # stopped, failed or restarting: so is its keeper
        lines.append(f"BindsTo={units[0]}")
    lines += ["", "[Service]", "Type=exec",
              f"ExecStart={escape.exec_line(discovery_keeper_argv(plan.keeper, python))}",
              "Restart=always", "RestartSec=1s", "Nice=10"]
    if plan.log_file is None:
        lines += ["StandardOutput=journal", "StandardError=journal",
                  f"SyslogIdentifier=tts-ops-{svc.name}"]
    else:
        target = escape.path(str(plan.log_file), "log_file")
        lines += [f"StandardOutput=append:{target}", f"StandardError=append:{target}"]
    return "\n".join([*lines, ""])


def render_holder(owner: str, sleep: str) -> str:
    return "\n".join([
        "# Written by tts-ops: holds the address of a service; it accepts nothing.",
        "[Unit]",
        f"Description=tts-ops address holder of {escape.plain(owner, 'name')}",
        f"Requires={socket_unit(owner)}",
        f"After={socket_unit(owner)}",
        "",
        "[Service]",
        f"ExecStart={escape.exec_line([sleep, 'infinity'])}",
        ""])


def unit_name(service: Any) -> str:
    suffix = "@.service" if service.instances > 1 else ".service"
    return f"tts-ops-{service.name}{suffix}"


def _secs(value: float, what: str = "a time") -> str:
    # defence in depth: the config layer bounds every number, a unit never says "nans"
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        from tts_ops.plugin import ConfigError

        raise ConfigError(f"{what}: must be 0-{MAX_SECONDS:g} seconds (got {value!r})")
    return f"{value:g}s"


def render(plan: UnitPlan, python: str | None = None) -> str:
    svc = plan.service
    python = python or sys.executable
    argv = svc.argv(python)
    if plan.templated and svc.uses_reference_server:
        argv[argv.index("--port") + 1] = INSTANCE
    exec_start = escape.exec_line(argv).replace(INSTANCE, "%i")
    first = Path(argv[0]).name if not svc.uses_reference_server else "the reference TTS server"
    lines = [
        "# Written by tts-ops (tts-ops install NAME --process-manager systemd).",
        "# Edit the tts-ops config instead: this file is rewritten on install.",
        "[Unit]",
        f"Description=tts-ops service {escape.plain(svc.name, 'name')}"
        f" ({escape.plain(first, 'command')})",
    ]
    if plan.scope == "system":
        lines += ["After=network-online.target", "Wants=network-online.target"]
    # start limits belong in [Unit]: in [Service] systemd only warns and ignores them
    shared = svc.shared_address()
    if shared is not None:
        lines += [f"Requires={socket_unit(svc.owner)}",
                  f"After={socket_unit(svc.owner)}"]
    if plan.keeper is not None:
        lines.append(f"Upholds={plan.keeper_unit}")
    lines += [f"StartLimitIntervalSec={_secs(svc.restart_window, 'restart_window')}",
              f"StartLimitBurst={max(1, svc.max_restarts)}", "", "[Service]"]
    if shared is not None:
        lines.append(f"Sockets={socket_unit(svc.owner)}")
    if svc.speaks_notify:
        lines += ["Type=notify", "NotifyAccess=main"]
    else:
        lines.append("Type=exec")
    lines.append(f"ExecStart={exec_start}")
    lines.append(f"Restart={'on-failure' if svc.max_restarts > 0 else 'no'}")
    lines.append(f"RestartSec={_secs(svc.restart_delay, 'restart_delay')}")
    prevent = [str(EXIT_EXEC), *(str(c) for c in svc.permanent_exit_codes)]
    lines.append(f"RestartPreventExitStatus={' '.join(prevent)}")
    lines += [f"TimeoutStartSec={_secs(svc.start_timeout, 'start_timeout')}",
              f"TimeoutStopSec={_secs(svc.stop_timeout, 'stop_timeout')}",
              "KillMode=mixed", f"KillSignal=SIG{svc.stop_signal}"]
    if svc.watchdog_sec:
        lines.append(f"WatchdogSec={_secs(svc.watchdog_sec, 'watchdog_sec')}")
    env = dict(svc.env)
    if plan.templated:
        env.setdefault("TTS_OPS_INSTANCE", INSTANCE)
    for key, value in sorted(env.items()):
        lines.append(f"Environment={escape.environment(key, value)}".replace(INSTANCE, "%i"))
    if svc.working_dir:
        lines.append(f"WorkingDirectory={escape.path(str(svc.working_dir), 'working_dir')}")
    if svc.user:
        if plan.scope == "user":
            from tts_ops.plugin import ConfigError

            raise ConfigError(f"{svc.name}: user {svc.user!r} needs --scope system (a user"
                              " manager cannot switch users)")
        user = escape.plain(svc.user, "user")
        lines += [f"User={user}", f"Group={user}"]
    lines += ["CPUAccounting=yes", "MemoryAccounting=yes"]
    if svc.memory_max:
        lines.append(f"MemoryMax={svc.memory_max}")
    if svc.cpu_quota:
        lines.append(f"CPUQuota={svc.cpu_quota}%")
    if svc.tasks_max:
        lines.append(f"TasksMax={svc.tasks_max}")
    if plan.log_file is None:
        lines += ["StandardOutput=journal", "StandardError=journal",
                  f"SyslogIdentifier=tts-ops-{svc.name}"]
    else:
        # no journald: without this, systemd sends the output to /dev/null
        target = escape.path(str(plan.log_file), "log_file")
        if plan.templated:
            target = target[:-4] + "@%i.log" if target.endswith(".log") else target + "@%i"
        lines += [f"StandardOutput=append:{target}", f"StandardError=append:{target}"]
    if plan.scope == "system" and plan.hardening:
        lines += _hardening(plan, argv)
    lines += ["", "[Install]",
              f"WantedBy={'default.target' if plan.scope == 'user' else 'multi-user.target'}", ""]
    return "\n".join(lines)


def _hardening(plan: UnitPlan, argv: list[str]) -> list[str]:
    svc = plan.service
    writable = {str(plan.state_dir)}
    if plan.log_file is not None:
        writable.add(str(plan.log_file.parent))
    if svc.pid_file:
        writable.add(str(svc.pid_file.parent))
    if svc.working_dir:
        writable.add(str(svc.working_dir))
    used = [argv[0], sys.prefix, sys.base_prefix, *writable]
    in_home = any(p == h or p.startswith(h + "/") for p in used for h in HOME_DIRS)
    lines = ["# hardening (options.systemd.hardening=false turns it off)",
             "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict",
             "ReadWritePaths=" + " ".join(escape.path(p, "ReadWritePaths")
                                          for p in sorted(writable))]
    if in_home:
        lines += ["# the program or its data live under a home directory: read-only, not hidden",
                  "ProtectHome=read-only"]
    else:
        lines.append("ProtectHome=yes")
    lines += ["RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "LockPersonality=yes"]
    return lines
