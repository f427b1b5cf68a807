"""A tts-ops service as Kubernetes objects: what each field becomes, and what cannot go.

Each service gives a ``Deployment`` (plus ``NAME-canary`` for a canary, or an Argo
``Rollout`` instead), a ``Service`` on its port, a ``PodDisruptionBudget`` and a
``ConfigMap`` holding its config. Objects are plain dicts; `tts_ops_kubernetes.command`
writes them with PyYAML, which quotes every hostile string. What Kubernetes cannot
carry is a warning line, never dropped without a word.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tts_ops_kubernetes.options import LABEL_KEY, LABEL_VALUE

MANAGED_BY = "tts-ops"
NAME_KEY = "app.kubernetes.io/name"
TRACK_KEY = "tts-ops/track"
_UNITS = {"K": "Ki", "M": "Mi", "G": "Gi", "T": "Ti"}


@dataclass
class Rendered:
    """One service's objects, the comment lines before them, and its warnings."""

    service: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def k8s_name(name: str) -> str:
    """A service name (``a-z 0-9 . _ -``, starting with a letter) as a DNS-1035 label."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].rstrip("-")
    return out or "tts"


def memory(value: str) -> str | None:
    """systemd's ``512M`` (1024-based) as Kubernetes' ``512Mi``; None for infinity."""
    if value == "infinity":
        return None
    unit = value[-1].upper()
    return value[:-1] + _UNITS[unit] if unit in _UNITS else value


def cpu(percent: int) -> str:
    """systemd's ``CPUQuota=`` percent of one core, in millicores."""
    return f"{percent * 10}m"


def container_argv(svc: Any) -> list[str]:
    """The command in the image: ``command`` (``{port}`` filled in, ``{host}`` as every
    address of the pod), or the reference server's own arguments, listening on every
    address of the pod (a Service reaches it there, never on loopback)."""
    if svc.command is not None:
        return svc.command_at(svc.port, "0.0.0.0")
    argv = svc.model_copy(update={"host": "0.0.0.0"}).argv(python="python")
    return ["tts-server", *argv[3:]] if argv[1:3] == ["-m", "tts_server"] else argv


def probes(svc: Any) -> tuple[dict | None, dict | None, str | None]:
    """(readiness, liveness, warning): the reference server's /ready and /health, else the
    service's health check."""
    def http(path: str) -> dict:
        return {"httpGet": {"path": path, "port": "http"}}

    timeout = max(1, math.ceil(svc.health_check.timeout))
    period = max(1, min(300, math.ceil(svc.health_check_interval)))
    tuning = {"timeoutSeconds": timeout, "periodSeconds": period,
              "failureThreshold": svc.unhealthy_threshold}
    if svc.uses_reference_server and svc.health_check.type == "http" and \
            not svc.health_check.url:
        return ({**http("/ready"), "periodSeconds": 2, "timeoutSeconds": timeout},
                {**http(svc.health_check.path), **tuning}, None)
    check = svc.health_check
    if check.type == "none":
        return None, None, "health_check none: no readiness or liveness probe (a pod is ready" \
                           " once its container runs)"
    if check.type == "tcp":
        sock = {"tcpSocket": {"port": "http"}}
        return ({**sock, "periodSeconds": 2, "timeoutSeconds": timeout},
                {**sock, **tuning}, None)
    warning = None
    path = check.path
    if check.url:
        from urllib.parse import urlsplit

        parts = urlsplit(check.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        warning = (f"health_check {check.url}: probed as {path} on the pod's own port (a"
                   " probe cannot reach another host)")
    return ({**http(path), "periodSeconds": 2, "timeoutSeconds": timeout},
            {**http(path), **tuning}, warning)


def split_labels(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(labels, annotations, warnings): a label Kubernetes cannot hold as a label is kept as
    an annotation when its key allows, else said."""
    ok, notes, warnings = {}, {}, []
    for key, value in labels.items():
        if key.startswith("tts-ops/"):
            continue  # the core's own bookkeeping (slots, releases)
        if LABEL_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(value):
            ok[key] = value
        elif LABEL_KEY.fullmatch(key):
            notes[key] = value
        else:
            warnings.append(f"labels.{key[:60]!r}: not a Kubernetes label or annotation key;"
                            " left out")
    return ok, notes, warnings


def strategy_of(svc: Any) -> tuple[dict[str, Any], str]:
    """(the Deployment's ``strategy``, the comment that says how it maps)."""
    name = svc.deploy.strategy
    if name == "direct":
        return {"type": "Recreate"}, "strategy direct -> Recreate (the old pods stop first)"
    if name == "rolling":
        rolling = _section(svc, "rolling")
        surge = rolling.get("max_surge", 1)
        unavailable = rolling.get("max_unavailable", 0)
        return ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge,
                                                            "maxUnavailable": unavailable}},
                f"strategy rolling -> RollingUpdate (maxSurge {surge}, maxUnavailable"
                f" {unavailable}, from deploy.rolling)")
    if name == "blue_green":
        return ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%",
                                                            "maxUnavailable": 0}},
                "strategy blue_green -> RollingUpdate with maxUnavailable 0 and a full surge"
                " (every new pod ready before an old one goes)")
    if name == "canary":
        return ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                            "maxUnavailable": 0}},
                "strategy canary -> a second Deployment NAME-canary under the same Service,"
                " its replicas in the first step's share")
    return ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            f"strategy {name} -> RollingUpdate (Kubernetes knows no {name}: the pods are"
            " replaced one at a time, each ready first)")


def _section(svc: Any, name: str) -> dict[str, Any]:
    value = svc.deploy.model_dump(mode="json").get(name)
    return value if isinstance(value, dict) else {}


def canary_steps(svc: Any) -> list[int]:
    return list(_section(svc, "canary").get("steps") or [10, 50, 100])


def canary_replicas(stable: int, share: int) -> int:
    """Pods of the canary so that it takes ``share`` percent of the Service's pods."""
    if share >= 100:
        return stable
    return max(1, round(stable * share / (100 - share)))


def render(svc: Any, *, image: str, namespace: str | None, options: Any, config_json: str,
           services: dict[str, Any], canary: str = "deployment") -> Rendered:
    """Every object of ``svc``; ``services``: the config's services by name (for the ports
    of its dependencies)."""
    out = Rendered(svc.name)
    name = k8s_name(svc.name)
    labels, annotations, out.warnings = split_labels(dict(svc.labels))
    selector = {NAME_KEY: name}
    meta_labels = {**labels, **selector, "app.kubernetes.io/managed-by": MANAGED_BY}

    def meta(object_name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": object_name, "labels": {**meta_labels, **(extra or {})}}
        if namespace:
            m["namespace"] = namespace
        if annotations:
            m["annotations"] = dict(annotations)
        return m

    strategy, comment = strategy_of(svc)
    out.comments.append(f"{svc.name}: {comment}")
    out.warnings += _not_carried(svc)
    pod = _pod(svc, _container(svc, image, out), services, options, out)
    stable_replicas = svc.instances

    def deployment(object_name: str, replicas: int, track: str, strat: dict) -> dict[str, Any]:
        track_labels = {**selector, TRACK_KEY: track}
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": meta(object_name, {TRACK_KEY: track}),
                "spec": {"replicas": replicas, "strategy": strat,
                         "selector": {"matchLabels": track_labels},
                         "template": {"metadata": {"labels": {**meta_labels, **track_labels}},
                                      "spec": pod}}}

    if svc.deploy.strategy == "canary" and canary == "argo":
        out.comments[-1] = (f"{svc.name}: strategy canary -> an Argo Rollouts Rollout with"
                            " setWeight steps (needs the Argo Rollouts controller)")
        out.objects.append(_rollout(svc, name, meta, selector, meta_labels, pod))
    else:
        out.objects.append(deployment(name, stable_replicas, "stable", strategy))
        if svc.deploy.strategy == "canary":
            first = canary_steps(svc)[0]
            replicas = canary_replicas(stable_replicas, first)
            out.comments.append(f"{svc.name}: {name}-canary runs {replicas} pod(s) beside"
                                f" {stable_replicas}: the first step's {first}%")
            out.objects.append(deployment(f"{name}-canary", replicas, "canary", strategy))
    out.objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(name),
        "spec": {"type": options.service_type, "selector": selector,
                 "ports": [{"name": "http", "port": svc.port, "targetPort": "http",
                            "protocol": "TCP"}]
                 + ([{"name": "wyoming", "port": svc.wyoming_port, "targetPort": "wyoming",
                      "protocol": "TCP"}] if svc.wyoming_port and svc.command is None else [])}})
    out.objects.append({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name),
        "spec": {"selector": {"matchLabels": selector},
                 **({"maxUnavailable": 1} if svc.instances > 1 else {"maxUnavailable": 0})}})
    out.objects.append({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{name}-config"),
        "data": {"tts_services.json": config_json}})
    return out



def _container(svc: Any, image: str, out: Rendered) -> dict[str, Any]:
    """The service's container: its command, ports, probes, drain and limits."""
    readiness, liveness, warning = probes(svc)
    if warning:
        out.warnings.append(warning)
    container: dict[str, Any] = {
        "name": "tts", "image": image, "command": container_argv(svc),
        "ports": [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in svc.env.items()],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/tts-ops", "readOnly": True}],
    }
    if svc.wyoming_port and svc.command is None:
        container["ports"].append({"name": "wyoming", "containerPort": svc.wyoming_port,
                                   "protocol": "TCP"})
    if readiness:
        container["readinessProbe"] = readiness
        container["livenessProbe"] = liveness
        container["startupProbe"] = {**{k: v for k, v in readiness.items()
                                        if k in ("httpGet", "tcpSocket")},
                                     "periodSeconds": 1, "timeoutSeconds": 1,
                                     "failureThreshold": max(1, math.ceil(svc.start_timeout))}
    drain = math.ceil(svc.deploy.drain_seconds)
    if drain > 0:  # endpoints leave after SIGTERM is sent (kubernetes#43576): wait first
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": drain}}}
    limits = _limits(svc, out.warnings)
    if limits:
        container["resources"] = {"limits": limits}
    if svc.working_dir is not None and svc.source is None:
        container["workingDir"] = str(svc.working_dir)
    return container


def _pod(svc: Any, container: dict[str, Any], services: dict[str, Any], options: Any,
         out: Rendered) -> dict[str, Any]:
    """The pod spec: the container, its config volume, the dependencies' init containers."""
    drain = math.ceil(svc.deploy.drain_seconds)
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": math.ceil(svc.stop_timeout) + drain,
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": f"{k8s_name(svc.name)}-config"}}],
    }
    init = _init_containers(svc, services, options, out)
    if init:
        pod["initContainers"] = init
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    return pod

def _limits(svc: Any, warnings: list[str]) -> dict[str, str]:
    limits: dict[str, str] = {}
    if svc.memory_max is not None:
        value = memory(svc.memory_max)
        if value is not None:
            limits["memory"] = value
    if svc.cpu_quota is not None:
        limits["cpu"] = cpu(svc.cpu_quota)
    if svc.tasks_max is not None:
        warnings.append(f"tasks_max {svc.tasks_max}: Kubernetes has no per-container task"
                        " limit (a node's podPidsLimit is the kubelet's); not carried")
    return limits


def _not_carried(svc: Any) -> list[str]:
    out = []
    if svc.user is not None:
        out.append(f"user {svc.user!r}: the image decides the user (set securityContext"
                   " runAsUser by hand); not carried")
    if svc.working_dir is not None and svc.source is not None:
        out.append("working_dir: a release's source copy is a host path, not in the image;"
                   " not carried")
    elif svc.working_dir is not None:
        out.append(f"working_dir {str(svc.working_dir)!r}: carried as workingDir; it must exist"
                   " in the image")
    if svc.socket_mode == "inherit":
        out.append("socket inherit: the Service owns the address (endpoints replace the"
                   " inherited socket); not carried")
    if svc.router:
        out.append(f"router {svc.router!r}: the Service balances the pods instead; not carried")
    if svc.log_file is not None:
        out.append(f"log_file {str(svc.log_file)!r}: host-local; the container's output goes to"
                   " kubectl logs instead")
    if svc.watchdog_sec is not None:
        out.append("watchdog_sec: Kubernetes has no watchdog; the liveness probe stands in")
    if svc.process_manager:
        out.append(f"process_manager {svc.process_manager!r}: the kubelet manages the"
                   " container; not carried")
    return out


def _init_containers(svc: Any, services: dict[str, Any], options: Any,
                     out: Rendered) -> list[dict[str, Any]]:
    init = []
    for dep in svc.depends_on:
        target = services.get(dep.service_name)
        if dep.dependency_type != "required":
            out.warnings.append(f"depends_on {dep.service_name}: optional, so not waited for"
                                " (Kubernetes starts the pods independently)")
            continue
        if target is None:
            out.warnings.append(f"depends_on {dep.service_name}: not in this config; no init"
                                " container waits for it")
            continue
        host, port = k8s_name(target.name), target.port
        # the values reach the shell as variables, never as text of the script
        init.append({"name": f"wait-for-{host}"[:63].rstrip("-"), "image": options.wait_image,
                     "command": ["sh", "-c",
                                 'until nc -z "$DEP_HOST" "$DEP_PORT"; do sleep 1; done'],
                     "env": [{"name": "DEP_HOST", "value": host},
                             {"name": "DEP_PORT", "value": str(port)}]})
        out.comments.append(f"{svc.name}: waits for {dep.service_name} (required) in an init"
                            " container")
    return init


def _rollout(svc: Any, name: str, meta: Any, selector: dict, meta_labels: dict,
             pod: dict) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    pause = math.ceil(float(_section(svc, "canary").get("step_pause_seconds", 5.0)))
    for weight in canary_steps(svc):
        steps.append({"setWeight": weight})
        if weight < 100:
            steps.append({"pause": {"duration": f"{pause}s"}})
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": meta(name),
            "spec": {"replicas": svc.instances, "selector": {"matchLabels": selector},
                     "strategy": {"canary": {"steps": steps}},
                     "template": {"metadata": {"labels": {**meta_labels, **selector}},
                                  "spec": pod}}}


def config_document(svc: Any) -> str:
    """The service's config as the ConfigMap holds it: ``tts-ops -c`` reads it back."""
    return json.dumps({"services": [svc.model_dump(mode="json")]}, indent=1, sort_keys=True)
