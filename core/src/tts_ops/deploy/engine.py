"""The deploy engine: what to deploy, then one `tts_ops.deploy.operation.Operation` each.

Per service: apply the environment's overrides (or take a release's snapshot), choose the
strategy and the backend; the operation takes the deploy locks, runs every pre-deployment
check, creates the release, hands a `DeployContext` to the strategy and, on success,
activates the release; on failure (or SIGINT) the strategy restores the old generation,
the release is marked failed (or rolled back) and the exit code is 1.

The engine takes the core's `tts_ops.runtime.Runtime`, never the CLI: a program drives a
deploy with ``DeployEngine(Runtime(config_path=...), Reporter(False, print)).deploy(svc,
strategy=None, environment="production", pm=None)``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tts_ops.deploy.operation import Operation, Target, address_guarantee
from tts_ops.deploy.releases import Release
from tts_ops.deploy.reporter import Reporter
from tts_ops.deploy.signals import Interrupted, interruptible, shielded
from tts_ops.errors import ConfigError

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime

__all__ = ["ENVIRONMENTS", "DeployEngine", "Interrupted", "Reporter", "address_guarantee",
           "interruptible", "shielded", "zero_downtime_strategy"]

ENVIRONMENTS = ("development", "staging", "production")


class DeployEngine:
    def __init__(self, runtime: Runtime, reporter: Reporter) -> None:
        self.rt = runtime
        self.out = reporter

    def environment(self, explicit: str | None) -> str:
        env = explicit or os.environ.get("TTS_OPS_ENVIRONMENT") or "development"
        if env not in ENVIRONMENTS:
            raise ConfigError(f"--environment must be one of {', '.join(ENVIRONMENTS)}"
                              f" (got {env!r})")
        return env

    def for_environment(self, base: Any, environment: str) -> Any:
        overrides = self.rt.config.environments.get(environment, {}).get(base.name)
        if not overrides:
            return base
        from tts_ops.config.models import with_overrides

        return with_overrides(base, overrides)  # validated with the config: cannot fail

    def deploy(self, base: Any, *, strategy: str | None, environment: str, pm: str | None,
               dry_run: bool = False, skip_tests: bool = False,
               release: Release | None = None, kind: str = "deploy") -> dict[str, Any]:
        """Deploy one service; returns the history record (``result`` says how it went).

        ``kind``: ``deploy`` (a new release), ``rollback`` (``release``, an earlier one) or
        ``restart`` (the running release again, as a new generation: no release is made).
        """
        from tts_ops.config.service import ServiceView

        self.rt.recover_deploys()  # a deploy that died: finish it before starting another
        # snapshots were validated when their release was made: read them as views
        svc = self.for_environment(base, environment)
        if release is not None:
            svc = ServiceView(release.config)
        if svc.instances == 0:
            raise ConfigError(f"{svc.name}: this host only routes it (instances: 0): there is"
                              " no instance here to deploy; deploy on the hosts that run it"
                              " (this router follows them), or start this one")
        name = strategy or (svc.deploy.strategy if kind == "deploy"
                            else zero_downtime_strategy(svc, kind, self.rt.host))
        backend_name = self.rt.choose_backend(svc, pm)
        target = Target(svc=svc, kind=kind, strategy=name,
                        strat=self.rt.host.lookup("strategy", name).factory(),
                        backend_name=backend_name, backend=self.rt.backend(backend_name),
                        environment=environment, release=release, dry_run=dry_run,
                        skip_tests=skip_tests)
        return Operation(self.rt, self.out, target).run()


def zero_downtime_strategy(svc: Any, kind: str, host: Any) -> str:
    """The strategy of a rollback or a restart: the service's own unless it replaces in
    place (``same_slot``: it stops before it starts), then ``blue_green``, the documented
    default (a restart is always ``blue_green``)."""
    configured = svc.deploy.strategy
    if kind == "restart":
        return "blue_green"
    found = host.registrations("strategy").get(configured)
    if found is None or getattr(found.factory(), "same_slot", True):
        return "blue_green"
    return configured
