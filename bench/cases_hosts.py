"""Three hosts as network namespaces on a bridge, one etcd member each, the reference
server on every host and a ``router_scope: cluster`` HAProxy on the third; ``hey`` from
the root namespace through that router the whole time (keep-alive, 4 connections).

- every host runs a blue_green deploy in turn: failed requests and non-200s (goal 0), and
  after each deploy each host's share of 300 requests through the router (goal: within
  20% of even);
- every etcd member down for ttl + 3 s: from the end of the outage until every record has
  the weight and health it had before (goal <= 2 ttl), and failed requests (goal 0);
- a host killed (every process in its namespace but its etcd member, SIGKILL): until the
  router sends it nothing (goal <= 2 s) and until another host's discovery no longer
  lists it passing (goal <= ttl + 2 s).

The numbers are absolute: the issue's goals, measured in one run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Result, clean_env

TTL = 3
SERVICE = {"name": "tts", "host": "0.0.0.0", "port": 9000, "engine_type": "espeak",
           "workers": 1, "process_manager": "manual",
           "deploy": {"drain_seconds": 1.0, "progress_deadline_seconds": 60}}


class _Node:
    def __init__(self, host, root: Path, cluster, prefix: str, service: dict) -> None:
        self.host, self.name, self.ip = host, host.name, host.ip
        home = root / host.name
        home.mkdir()
        cfg = home / "tts.json"
        cfg.write_text(json.dumps({
            "discovery": {"registry": "etcd", "endpoints": cluster.endpoints,
                          "prefix": prefix, "node": host.name, "ttl": TTL},
            "services": [service]}))
        self.env = clean_env(TTS_OPS_STATE_DIR=str(home / "state"), TTS_OPS_CONFIG=str(cfg),
                             XDG_CACHE_HOME=str(home / "cache"),
                             TTS_OPS_PLUGINS="manual,strategies,etcd,haproxy")

    def cli(self, *args: str) -> str:
        done = self.host.run([sys.executable, "-m", "tts_ops", *args], env=self.env,
                             timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: tts-ops {' '.join(args)}: {done.stderr}")
        return done.stdout

    def records(self) -> dict[str, tuple[int, str]]:
        return {r["id"]: (r["weight"], r["health"])
                for r in json.loads(self.cli("discovery", "list", "--json"))}


def _shares(ip: str, count: int) -> dict[str, int]:
    from tts_ops_haproxy.testing import who

    served: dict[str, int] = {}
    for instance, n in who(ip, 9000, count).items():
        node = instance.rsplit(":", 1)[-1]
        served[node] = served.get(node, 0) + n
    return served


def _until(predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def hosts(quick: bool) -> list[Result]:
    from tts_ops.testing.load import PinnedLoad
    from tts_ops.testing.netns import Network
    from tts_ops_etcd.testing import EtcdCluster

    if os.geteuid() != 0:
        return [Result("hosts: needs root for network namespaces", 0, "", ok=False)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    prefix = f"/bench-{uuid.uuid4().hex[:8]}"
    results: list[Result] = []
    with Network(3) as net, EtcdCluster(tmp / "etcd", hosts=net.hosts) as cluster:
        routed = {**SERVICE, "router": "haproxy", "router_scope": "cluster"}
        nodes = [_Node(h, tmp, cluster, prefix, routed if h.index == 2 else SERVICE)
                 for h in net.hosts]
        h1, h2, h3 = nodes
        watch = None
        try:
            for node in nodes:
                node.cli("deploy", "--strategy", "blue_green")
            watch = h3.host.popen([sys.executable, "-m", "tts_ops", "discovery", "watch"],
                                  env=h3.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            _until(lambda: set(_shares(h3.ip, 30)) == {"h1", "h2", "h3"}, 30)
            url = f"http://{h3.ip}:9000/synthesize"
            worst = 0.0
            with PinnedLoad(url, connections=4, rate=10) as load:
                for node in nodes:
                    node.cli("deploy", "--strategy", "blue_green")
                    _until(lambda: set(_shares(h3.ip, 30)) == {"h1", "h2", "h3"}, 30)
                    shares = _shares(h3.ip, 300)
                    even = 300 / 3
                    worst = max(worst, *(abs(shares.get(n, 0) - even) / even
                                         for n in ("h1", "h2", "h3")))
            results.append(Result(
                "hosts: hey through the cluster router, 3 hosts deploying in turn",
                load.result.total - load.result.statuses.get(200, 0), "failed or non-200",
                goal="0", ok=load.result.clean and load.result.total > 0,
                note=load.result.summary()))
            results.append(Result(
                "hosts: each host's share of 300 requests after each deploy, worst",
                worst * 100, "% from even", goal="<= 20%", ok=worst <= 0.2))

            before = h2.records()
            with PinnedLoad(url, connections=4, rate=10) as load:
                for i in range(cluster.size):
                    cluster.kill(i)
                time.sleep(TTL + 3)  # the outage itself: its length is the scenario
                cluster.start()
                back = _until(lambda: h2.records() == before, 10 * TTL)
            results.append(Result(
                f"hosts: etcd down for ttl + 3 s ({TTL + 3} s): until every weight and"
                " health is back", (back if back is not None else 10 * TTL), "s",
                goal=f"<= {2 * TTL} s", ok=back is not None and back <= 2 * TTL,
                note=f"hey meanwhile: {load.result.summary()}"))
            results.append(Result(
                "hosts: failed or non-200 requests through the router during the etcd outage",
                load.result.total - load.result.statuses.get(200, 0), "requests", goal="0",
                ok=load.result.clean and load.result.total > 0))

            etcd_pid = cluster.procs[0].pid if cluster.procs[0] else None
            victims = [int(p) for p in subprocess.run(
                ["ip", "netns", "pids", h1.host.netns], capture_output=True,
                text=True).stdout.split() if int(p) != etcd_pid]
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            out_of_router = _until(lambda: "h1" not in _shares(h3.ip, 20), 30)
            out_of_discovery = _until(
                lambda: not any(i.endswith(":h1") and v[1] == "passing"
                                for i, v in h2.records().items()), 30)
            results.append(Result("hosts: a killed host out of the router's rotation",
                                  out_of_router if out_of_router is not None else 30, "s",
                                  goal="<= 2 s", ok=out_of_router is not None
                                  and out_of_router <= 2))
            results.append(Result("hosts: a killed host out of discovery",
                                  out_of_discovery if out_of_discovery is not None else 30,
                                  "s", goal=f"<= ttl + 2 s ({TTL + 2} s)",
                                  ok=out_of_discovery is not None
                                  and out_of_discovery <= TTL + 2))
        finally:
            if watch is not None:
                watch.kill()
                watch.wait()
            for node in nodes:
                node.host.run([sys.executable, "-m", "tts_ops", "stop", "--all", "--force"],
                              env=node.env, timeout=120)
    return results
