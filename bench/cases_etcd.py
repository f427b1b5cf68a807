"""Discovery on a real 3-member etcd cluster: heartbeats (lease keep-alives) from 8
processes to 1,000 instances next to etcdctl's put rate, a dead host's time to leave
``passing``, and find_services over 1,000 instances."""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Result, percentile
from tts_ops.discovery import InstanceRecord, ServiceRegistry

WORKER = r"""
import json, sys, time
from tts_ops.discovery import ServiceRegistry
reg = ServiceRegistry(sys.argv[1])
n, k = int(sys.argv[2]), int(sys.argv[3])
mine = [f"b@i{j}" for j in range(k, 1000, 8)]
for rid in mine:  # each process keeps its own 125 instances, as 8 hosts would
    reg.heartbeat(rid)
lat = []
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
for i in range(n):
    t = time.perf_counter()
    assert reg.heartbeat(mine[i % len(mine)])
    lat.append(time.perf_counter() - t)
print(json.dumps(lat))
"""

KEEPER = r"""
import sys, time
from tts_ops.discovery import InstanceRecord, ServiceRegistry
reg = ServiceRegistry(sys.argv[1])
reg.register_service(InstanceRecord(id="dead", service="dead", host="127.0.0.1", port=9,
                                    ttl=float(sys.argv[2])))
print("up", flush=True)
while True:  # a supervisor's heartbeat, every ttl/3
    time.sleep(float(sys.argv[2]) / 3)
    reg.heartbeat("dead")
"""



def etcd(quick: bool) -> list[Result]:
    if shutil.which("etcd") is None:
        raise RuntimeError("etcd is not installed (apt install etcd-server etcd-client)")
    from tts_ops_etcd.testing import EtcdCluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    with EtcdCluster(tmp / "etcd") as cluster:
        url = cluster.url("/bench")
        registry = ServiceRegistry(url)
        for i in range(1000):
            registry.register_service(InstanceRecord(id=f"b@i{i}", service="b",
                                                     host="127.0.0.1", port=10000 + i,
                                                     ttl=600.0))  # outlives the run
        results = [_heartbeats(url, cluster, quick), _find(registry, quick),
                   _death(url, quick)]
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def _heartbeats(url: str, cluster, quick: bool) -> Result:
    procs, per = 8, 300 if quick else 1000
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(per), str(k)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for k in range(procs)]
    for w in workers:
        assert w.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    latencies: list[float] = []
    for w in workers:
        out, _ = w.communicate(timeout=600)
        latencies.extend(json.loads(out))
    elapsed = time.perf_counter() - started
    rate = procs * per / elapsed
    # the anchor: etcdctl's own put rate, its perf check at the "l" load (500 gRPC clients
    # writing as fast as the cluster takes it; 60 s, so not in --quick)
    ctl_rate = None if quick else _etcdctl_put_rate(cluster)
    p99 = percentile(latencies, 99) * 1000
    result = Result("etcd: heartbeats (lease keep-alives), 8 processes, 1,000 instances",
                    rate, "beats/s", ctl_rate, "etcdctl check perf --load=l (puts/s)",
                    ">= 2,000/s, p99 < 20 ms",
                    note=f"p50 {percentile(latencies, 50) * 1000:.2f} ms, p99 {p99:.2f} ms")
    result.ok = rate >= 2000 and p99 < 20
    return result


def _etcdctl_put_rate(cluster) -> float:
    import os
    import re

    done = subprocess.run(["etcdctl", "--endpoints=" + ",".join(cluster.endpoints), "check",
                           "perf", "--load=l"], capture_output=True, text=True,
                          env={**os.environ, "ETCDCTL_API": "3"}, timeout=300)
    found = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", done.stdout)
    if not found:
        raise RuntimeError(f"etcdctl check perf said: {done.stdout[-300:]} {done.stderr[-300:]}")
    return float(found[1])


def _find(registry, quick: bool) -> Result:
    times = []
    found: list = []
    for _ in range(20 if quick else 100):
        t = time.perf_counter()
        found = registry.find_services(service_type="text-to-speech", healthy_only=True)
        times.append(time.perf_counter() - t)
    assert len(found) == 1000, len(found)
    cold = []
    for _ in range(5 if quick else 20):  # a new client each time: one range read
        fresh = ServiceRegistry(store=type(registry.store)(registry.store.options))
        t = time.perf_counter()
        fresh.find_services(service_type="text-to-speech", healthy_only=True)
        cold.append(time.perf_counter() - t)
        fresh.store.close()
    median_ms = statistics.median(times) * 1000
    result = Result("etcd: find_services over 1,000 instances", median_ms, "ms", 20.0,
                    "goal ceiling 20 ms", "median < 20 ms",
                    note=f"a new client's first call (one linearizable range read):"
                         f" {statistics.median(cold) * 1000:.1f} ms")
    result.ok = median_ms < 20
    return result


def _death(url: str, quick: bool) -> Result:
    ttl = 3.0
    took = []
    registry = ServiceRegistry(url)
    for _ in range(3 if quick else 5):
        keeper = subprocess.Popen([sys.executable, "-c", KEEPER, url, str(ttl)],
                                  stdout=subprocess.PIPE, text=True)
        assert keeper.stdout.readline().strip() == "up"
        seen = threading.Event()
        gone_at: list[float] = []
        since = registry.last_seq()

        def watch(since=since, seen=seen, gone_at=gone_at):
            for change in registry.store.follow(since, "dead", seen.is_set):
                if change["kind"] == "stale_removed":
                    gone_at.append(time.monotonic())
                    seen.set()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        time.sleep(ttl)  # let it beat a few times: the lease is fresh, as a live host's is
        killed = time.monotonic()
        keeper.send_signal(signal.SIGKILL)
        keeper.wait()
        seen.wait(ttl + 10)
        thread.join(1)
        took.append(gone_at[0] - killed if gone_at else float("inf"))
    median = statistics.median(took)
    result = Result("etcd: a killed host's instance leaves passing (ttl 3 s)", median, "s",
                    ttl + 1, "goal ceiling ttl + 1 s", "median <= ttl + 1 s",
                    note="each: " + ", ".join(f"{t:.2f}" for t in took)
                         + " s (seen by a watch)")
    result.ok = median <= ttl + 1
    return result
