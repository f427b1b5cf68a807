"""One HAProxy in front of two hosts' instances (``router_scope: cluster``): two state dirs
on one real etcd cluster, services on 127.0.0.2 and 127.0.0.3, the real CLI. The router
on host A routes to host B's instance from the registry, and ``discovery watch`` on A
takes it out when B stops it and back when B starts it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tts_ops.testing import free_port, wait_for

pytestmark = pytest.mark.slow


def _host(root, name, service, cluster, prefix):
    home = root / name
    home.mkdir()
    cfg = home / "tts.json"
    cfg.write_text(json.dumps({
        "discovery": {"registry": "etcd", "endpoints": cluster.endpoints, "prefix": prefix,
                      "node": name, "ttl": 5},
        "services": [service]}))
    env = {**os.environ, "TTS_OPS_STATE_DIR": str(home / "state"), "TTS_OPS_CONFIG": str(cfg),
           "TTS_OPS_PLUGINS": "manual,strategies,etcd,haproxy"}

    def cli(*args, check=True):
        done = subprocess.run([sys.executable, "-m", "tts_ops", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert not check or done.returncode == 0, (args, done.stderr)
        return done

    return cli, env


def test_a_router_fronts_another_hosts_instance_and_follows_it(haproxy, etcd_cluster,
                                                               tmp_path):
    from tts_ops_haproxy.testing import who

    prefix = f"/t-{uuid.uuid4().hex[:12]}"
    port_a, port_b = free_port(), free_port()
    common = {"name": "tts-primary", "engine_type": "espeak", "workers": 1,
              "process_manager": "manual"}
    a, a_env = _host(tmp_path, "host-a", {**common, "host": "127.0.0.2", "port": port_a,
                                          "router": "haproxy", "router_scope": "cluster"},
                     etcd_cluster, prefix)
    b, _ = _host(tmp_path, "host-b", {**common, "host": "127.0.0.3", "port": port_b},
                 etcd_cluster, prefix)
    watch = None
    try:
        b("start")
        a("start")
        # each answers with its record id: host B's plain instance, host A's blue slot
        assert set(who("127.0.0.2", port_a, 20)) == {"tts-primary@blue:host-a",
                                                      "tts-primary:host-b"}
        state = json.loads(a("router", "status", "--json").stdout)[0]
        assert sorted(s["name"] for s in state["servers"]) == ["blue", "plain.host-b"]
        assert any(s["address"] == f"127.0.0.3:{port_b}" for s in state["servers"])

        watch = subprocess.Popen([sys.executable, "-m", "tts_ops", "discovery", "watch"],
                                 env=a_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        def servers():
            state = json.loads(a("router", "status", "--json").stdout)[0]
            return sorted(s["name"] for s in state["servers"])

        b("stop", "--all")  # not only down for HAProxy's checks: out of its config
        wait_for(lambda: servers() == ["blue"], timeout=20,
                 message="host A's router to drop host B's instance")
        assert set(who("127.0.0.2", port_a, 10)) == {"tts-primary@blue:host-a"}
        b("start")
        wait_for(lambda: servers() == ["blue", "plain.host-b"], timeout=20,
                 message="host A's router to take host B's instance back")
        wait_for(lambda: "tts-primary:host-b" in who("127.0.0.2", port_a, 10), timeout=20,
                 message="host B's instance to serve through host A's router again")
    finally:
        if watch is not None:
            watch.kill()
            watch.communicate()
        a("stop", "--all", check=False)
        b("stop", "--all", check=False)

