"""``tts-ops export kubernetes``: the config's services as YAML manifests."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from tts_ops.plugin import ConfigError


@click.group()
def export() -> None:
    """Render the config for another platform."""


@export.command()
@click.argument("names", nargs=-1)
@click.option("--image", default=None, help="The container image that runs the service"
              " (options.kubernetes.image in the config otherwise).")
@click.option("-o", "--output", "out_dir", default=None, metavar="DIR",
              help="Write one file per service into DIR (default: one stream on stdout,"
                   " for kubectl apply -f -).")
@click.option("--namespace", default=None, help="metadata.namespace of every object.")
@click.option("--environment", default=None,
              type=click.Choice(["development", "staging", "production"]),
              help="Apply this environment's overrides first.")
@click.option("--canary", type=click.Choice(["deployment", "argo"]), default="deployment",
              show_default=True, help="A canary as a second Deployment, or an Argo Rollout.")
@click.pass_obj
def kubernetes(app: Any, names: tuple[str, ...], image: str | None, out_dir: str | None,
               namespace: str | None, environment: str | None, canary: str) -> None:
    """Render services as a Deployment, Service, PodDisruptionBudget and ConfigMap each.

    What Kubernetes cannot carry (a user, a host-local log file, socket inherit) is one
    warning line each on stderr.
    """
    import yaml

    _Dumper = _dumper()
    from tts_ops_kubernetes.options import KubernetesOptions, check_image, check_label
    from tts_ops_kubernetes.render import config_document, k8s_name, render

    config = app.config
    chosen = app.services(names, not names)
    environment = environment or os.environ.get("TTS_OPS_ENVIRONMENT")
    if environment:
        from tts_ops.plugin import with_overrides

        overrides = config.environments.get(environment, {})
        chosen = [with_overrides(s, overrides[s.name]) if s.name in overrides else s
                  for s in chosen]
    by_name = {s.name: s for s in config.services}
    seen: dict[str, str] = {}
    documents: list[tuple[str, str]] = []
    for svc in chosen:
        options = KubernetesOptions.model_validate(dict(svc.options.get("kubernetes", {})))
        use_image = image or options.image
        if not use_image:
            raise ConfigError(f"{svc.name}: no image: pass --image IMAGE or set"
                              " options.kubernetes.image")
        try:
            check_image(use_image)
            ns = namespace or options.namespace
            if ns:
                check_label(ns, "--namespace")
        except ValueError as exc:
            raise ConfigError(f"--image/--namespace: {_first(exc)}") from None
        k8s = k8s_name(svc.name)
        if k8s in seen:
            raise ConfigError(f"{svc.name} and {seen[k8s]} are both {k8s!r} in Kubernetes"
                              " (names there hold only a-z 0-9 -): rename one")
        seen[k8s] = svc.name
        rendered = render(svc, image=use_image, namespace=ns, options=options,
                          config_json=config_document(svc), services=by_name, canary=canary)
        for line in rendered.warnings:
            click.echo(f"tts-ops: warning: {svc.name}: {line}", err=True)
        head = "".join(f"# {c}\n" for c in rendered.comments)
        # ASCII with escapes: a value's every character (U+2028 too) reads back exactly
        body = yaml.dump_all(rendered.objects, Dumper=_Dumper, sort_keys=False,
                             allow_unicode=False, explicit_start=True, width=100)
        documents.append((k8s, head + body))
    if out_dir is None:
        sys.stdout.write("".join(text for _name, text in documents))
        return
    from pathlib import Path

    from tts_ops.plugin import ensure_writable_dir
    from tts_ops.statefile import atomic_write_bytes

    target = ensure_writable_dir(Path(out_dir), "output dir")
    for name, text in documents:
        atomic_write_bytes(target / f"{name}.yaml", text.encode(), mode=0o644)
        click.echo(f"{target / f'{name}.yaml'}")


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # no &anchors: each object reads on its own

    return Dumper


def _first(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return str(errors()[0]["msg"])
    return str(exc)
