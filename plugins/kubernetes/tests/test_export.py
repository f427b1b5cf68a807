"""``tts-ops export kubernetes`` through the real CLI: every document validated offline by
``kubernetes-validate --strict`` against Kubernetes 1.30 and the newest it knows, and the
mapped values read back from the YAML (PyYAML), not just its validity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tts_ops.testing import HOSTILE_TEXT

VERSIONS = ["1.30.0", "1.37.0"]


def full_config() -> dict:
    """Every field the mapping reads, and hostile strings where a string may go."""
    env = {f"V{i}": v for i, v in enumerate(HOSTILE_TEXT)}
    env["LINE_SEP"] = "a\u2028b"  # a character YAML would take for a line break
    return {"services": [
        {"name": "tts-a", "engine_type": "espeak", "port": 9000, "instances": 3,
         "wyoming_port": 10300, "memory_max": "512M", "cpu_quota": 150, "tasks_max": 64,
         "env": env, "user": "nobody", "log_file": "/var/log/tts-a.log",
         "labels": {"team": "voice", "note": "has spaces", "weird key!": "v"},
         "start_timeout": 20.5, "stop_timeout": 7.5, "health_check_interval": 15,
         "deploy": {"strategy": "canary", "drain_seconds": 2.5,
                    "canary": {"steps": [25, 50, 100], "step_pause_seconds": 3}},
         "depends_on": [{"service_name": "db"},
                        {"service_name": "cache", "dependency_type": "optional"}],
         "options": {"kubernetes": {"service_account": "tts", "node_selector": {
             "disk": "ssd"}}}},
        {"name": "db", "command": ["/usr/bin/db", "--port", "{port}", "--host", "{host}",
                                   *HOSTILE_TEXT],
         "port": 5432, "health_check": "tcp", "working_dir": "/srv/db",
         "deploy": {"strategy": "rolling", "rolling": {"max_surge": 2, "max_unavailable": 1}}},
        {"name": "cache", "command": ["/bin/cache"], "port": 6379, "health_check": "none",
         "deploy": {"strategy": "direct", "drain_seconds": 0}},
        {"name": "web_ui.v2", "command": ["/bin/web"], "port": 8080,
         "health_check": "http:/healthz", "memory_max": "infinity",
         "deploy": {"strategy": "blue_green"}},
    ]}


def export(tmp_path, config: dict, *args: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
                           str(tmp_path / "state"), "export", "kubernetes", *args],
                          capture_output=True, text=True, timeout=120)


def validate(path, version: str) -> None:
    tool = shutil.which("kubernetes-validate") or os.path.join(
        os.path.dirname(sys.executable), "kubernetes-validate")
    result = subprocess.run([tool, "--strict", "-k", version, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k8s")
    result = export(tmp, full_config(), "--image", "registry.example/tts:1.2",
                    "--namespace", "voice")
    assert result.returncode == 0, result.stderr
    path = tmp / "all.yaml"
    path.write_text(result.stdout)
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    return path, docs, result


def find(docs, kind: str, name: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_passes_strict_validation(rendered, version):
    path, docs, _ = rendered
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget",
                                         "ConfigMap"}
    validate(path, version)


def test_the_reference_server_maps_field_by_field(rendered):
    _, docs, _ = rendered
    dep = find(docs, "Deployment", "tts-a")
    assert dep["metadata"]["namespace"] == "voice"
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "registry.example/tts:1.2"
    assert c["command"][:5] == ["tts-server", "--host", "0.0.0.0", "--port", "9000"]
    assert "--wyoming-uri" in c["command"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 9000,
                                                                  "wyoming": 10300}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == full_config()["services"][0]["env"]  # every character, exactly
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["periodSeconds"] == 15
    assert c["startupProbe"]["failureThreshold"] == 21  # start_timeout 20.5 s, every 1 s
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 3  # drain 2.5 s
    assert pod["terminationGracePeriodSeconds"] >= 7.5 + 2.5
    assert c["resources"]["limits"] == {"memory": "512Mi", "cpu": "1500m"}
    assert pod["serviceAccountName"] == "tts" and pod["nodeSelector"] == {"disk": "ssd"}
    labels = dep["metadata"]["labels"]
    assert labels["team"] == "voice" and "weird key!" not in labels
    assert dep["metadata"]["annotations"] == {"note": "has spaces"}
    service = find(docs, "Service", "tts-a")
    assert service["spec"]["ports"][0]["port"] == 9000
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "tts-a"}
    pdb = find(docs, "PodDisruptionBudget", "tts-a")
    assert pdb["spec"]["maxUnavailable"] == 1
    config = json.loads(find(docs, "ConfigMap", "tts-a-config")["data"]["tts_services.json"])
    assert config["services"][0]["env"] == env


def test_a_canary_is_a_second_deployment_in_the_first_steps_share(rendered):
    _, docs, result = rendered
    stable = find(docs, "Deployment", "tts-a")
    canary = find(docs, "Deployment", "tts-a-canary")
    assert canary["spec"]["replicas"] == 1  # 25% of 4 pods: 1 beside 3
    service = find(docs, "Service", "tts-a")
    for dep in (stable, canary):  # the Service selects both
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert "# tts-a: strategy canary -> a second Deployment" in result.stdout


def test_each_strategy_maps_to_what_kubernetes_can_do(rendered):
    _, docs, result = rendered
    assert find(docs, "Deployment", "cache")["spec"]["strategy"] == {"type": "Recreate"}
    assert find(docs, "Deployment", "db")["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 2, "maxUnavailable": 1}
    assert find(docs, "Deployment", "web-ui-v2")["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "100%", "maxUnavailable": 0}
    for line in ("strategy direct -> Recreate", "strategy rolling -> RollingUpdate",
                 "strategy blue_green -> RollingUpdate with maxUnavailable 0"):
        assert f"# {line}" in result.stdout.replace("# cache: ", "# ").replace(
            "# db: ", "# ").replace("# web_ui.v2: ", "# ")


def test_probes_follow_each_health_check(rendered):
    _, docs, _ = rendered
    [db] = find(docs, "Deployment", "db")["spec"]["template"]["spec"]["containers"]
    assert db["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert db["command"] == ["/usr/bin/db", "--port", "5432", "--host", "0.0.0.0",
                             *HOSTILE_TEXT]
    assert db["workingDir"] == "/srv/db"
    [web] = find(docs, "Deployment", "web-ui-v2")["spec"]["template"]["spec"]["containers"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "resources" not in web  # memory_max infinity: no limit
    [cache] = find(docs, "Deployment", "cache")["spec"]["template"]["spec"]["containers"]
    assert "readinessProbe" not in cache and "lifecycle" not in cache  # no drain: no preStop


def test_dependencies_are_init_containers_or_said(rendered):
    _, docs, result = rendered
    pod = find(docs, "Deployment", "tts-a")["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["name"] == "wait-for-db"
    assert {e["name"]: e["value"] for e in init["env"]} == {"DEP_HOST": "db",
                                                            "DEP_PORT": "5432"}
    assert "depends_on cache: optional, so not waited for" in result.stderr


def test_what_cannot_be_carried_is_one_warning_line_each(rendered):
    _, _, result = rendered
    lines = result.stderr.splitlines()
    for needle in ("user 'nobody'", "socket inherit", "log_file '/var/log/tts-a.log'",
                   "tasks_max 64", "labels.'weird key!'", "working_dir '/srv/db'",
                   "health_check none"):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert all(line.startswith("tts-ops: warning: ") for line in lines)


def test_argo_rollout_steps(tmp_path):
    result = export(tmp_path, full_config(), "tts-a", "--image", "r/t:1", "--canary", "argo")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    rollout = find(docs, "Rollout", "tts-a")
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [
        {"setWeight": 25}, {"pause": {"duration": "3s"}}, {"setWeight": 50},
        {"pause": {"duration": "3s"}}, {"setWeight": 100}]
    others = tmp_path / "others.yaml"
    others.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] != "Rollout"]))
    validate(others, VERSIONS[0])


def test_output_dir_gets_one_file_per_service(tmp_path):
    out = tmp_path / "out"
    result = export(tmp_path, full_config(), "--image", "r/t:1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cache.yaml", "db.yaml", "tts-a.yaml",
                                                     "web-ui-v2.yaml"]
    validate(out / "db.yaml", VERSIONS[-1])


def test_environment_overrides_apply_first(tmp_path):
    config = full_config()
    config["environments"] = {"production": {"db": {"instances": 4, "port": 5433}}}
    result = export(tmp_path, config, "db", "--image", "r/t:1", "--environment", "production")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    dep = find(docs, "Deployment", "db")
    assert dep["spec"]["replicas"] == 4
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 5433


@pytest.mark.parametrize(("args", "config_change", "needle"), [
    ([], None, "no image: pass --image IMAGE"),
    (["--image", "r/t:1 ; rm -rf /"], None, "not an image reference"),
    (["--image", "--privileged"], None, "not an image reference"),
    (["--image", "r/t:1", "--namespace", "Bad_NS"], None, "--namespace must be"),
    (["--image", "r/t:1"], {"options": {"kubernetes": {"imagee": "x"}}}, "imagee"),
    (["--image", "r/t:1"], {"name": "a_b"}, "'a-b' in Kubernetes"),
])
def test_hostile_or_missing_values_are_one_line_exit_2(tmp_path, args, config_change, needle):
    config = {"services": [{"name": "a-b", "command": ["/bin/x"], "port": 8000}]}
    if config_change:
        if "name" in config_change:
            config["services"].append({"name": "a_b", "command": ["/bin/x"], "port": 8001})
        else:
            config["services"][0].update(config_change)
    result = export(tmp_path, config, *args)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert needle in line and "Traceback" not in result.stderr


def test_a_hostile_service_still_gives_valid_yaml(tmp_path):
    """Every hostile text in a command, an env value and a label value: the stream reads
    back to exactly those strings, and validates."""
    svc = {"name": "x9", "command": ["/bin/sh", *HOSTILE_TEXT], "port": 8000,
           "env": {f"E{i}": v for i, v in enumerate(HOSTILE_TEXT)},
           "labels": {f"l{i}": v for i, v in enumerate(HOSTILE_TEXT)}}
    result = export(tmp_path, {"services": [svc]}, "--image", "r/t:1")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    [c] = find(docs, "Deployment", "x9")["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["/bin/sh", *HOSTILE_TEXT]
    assert {e["name"]: e["value"] for e in c["env"]} == svc["env"]
    meta = find(docs, "Deployment", "x9")["metadata"]
    assert {**meta.get("labels", {}), **meta.get("annotations", {})}.items() >= {
        k: v for k, v in svc["labels"].items()}.items()
    path = tmp_path / "x.yaml"
    path.write_text(result.stdout)
    validate(path, VERSIONS[-1])


def test_without_the_plugin_export_names_it(tmp_path):
    """`pip install ./core` alone: the command says which plugin to install (exit 3)."""
    import os

    result = subprocess.run([sys.executable, "-m", "tts_ops", "--state-dir",
                             str(tmp_path / "s"), "export", "kubernetes", "--image", "r/t:1"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TTS_OPS_PLUGINS": "manual"})
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert "comes with tts-ops-kubernetes" in line and "plugins/kubernetes" in line
