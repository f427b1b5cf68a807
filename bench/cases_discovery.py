"""Discovery: concurrent heartbeats (8 processes x 2,000 to 1,000 instances), find_services."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, percentile

WORKER = r"""
import json, sys, time
from tts_ops.discovery import ServiceRegistry
reg = ServiceRegistry(sys.argv[1])
n, k = int(sys.argv[2]), int(sys.argv[3])
lat = []
sys.stdin.readline()  # start together
for i in range(n):
    t = time.perf_counter()
    reg.heartbeat(f"b@{(i * 13 + k * 101) % 1000}")
    lat.append(time.perf_counter() - t)
print(json.dumps(lat))
"""


def discovery(quick: bool) -> list[Result]:
    from tts_ops.discovery import InstanceRecord, ServiceRegistry

    tmp = Path(tempfile.mkdtemp(prefix="bench-discovery-"))
    path = tmp / "registry.db"
    registry = ServiceRegistry(path)
    for i in range(1000):
        registry.register_service(InstanceRecord(id=f"b@{i}", service="b", host="127.0.0.1",
                                                 port=10000 + i))
    procs, per = 8, 2000
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(per), str(k)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for k in range(procs)]
    time.sleep(1.0)  # let every worker import and open the registry
    started = time.perf_counter()
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    latencies = []
    for w in workers:
        out, _ = w.communicate(timeout=300)
        latencies.extend(json.loads(out))
    elapsed = time.perf_counter() - started
    lost = procs * per - registry.store.beats()
    rate = procs * per / elapsed
    p99 = percentile(latencies, 99) * 1000
    r1 = Result("discovery: heartbeats, 8 processes x 2,000 to 1,000 instances", rate,
                "beats/s", 2000, "goal floor 2,000/s", ">= 2,000/s, p99 < 10 ms, 0 lost",
                note=f"p50 {percentile(latencies, 50) * 1000:.2f} ms, p99 {p99:.2f} ms,"
                     f" lost updates: {lost}")
    r1.ok = rate >= 2000 and p99 < 10 and lost == 0
    times = []
    for _ in range(20 if quick else 100):
        t = time.perf_counter()
        found = registry.find_services(service_type="text-to-speech", healthy_only=True)
        times.append(time.perf_counter() - t)
    assert len(found) == 1000
    median_ms = statistics.median(times) * 1000
    r2 = Result("discovery: find_services over 1,000 instances", median_ms, "ms", 5.0,
                "goal ceiling 5 ms", "median < 5 ms")
    r2.ok = median_ms < 5
    return [r1, r2]
