"""``tts-ops fleet`` against four hosts as network namespaces, each with Debian's OpenSSH
server and (three of them) an etcd member: three fleet hosts run the reference server,
the fourth is a router-only host (``router_scope: cluster``) ``hey`` goes through.

- ``fleet status`` of the 3 hosts against ``ssh host tts-ops status --json`` to the 3
  hosts at once (the same ssh options and multiplexed connections, warm), medians: goal
  <= 1.5x. The namespaces share this machine's 2 cores: three statuses at once here are
  what one host's is on three machines; one host's alone is in the note;
- ``fleet deploy`` of the 3 hosts, one at a time, against the sum of the three hosts' own
  ``tts-ops deploy`` run on each (in its namespace), same run: goal <= 1.15x;
- hey through the router during ``fleet deploy`` and ``fleet rollback``: goal 0 failed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Result, clean_env

SERVICE = {"name": "tts", "host": "0.0.0.0", "port": 9000, "engine_type": "espeak",
           "workers": 1, "process_manager": "manual",
           "deploy": {"drain_seconds": 1.0, "progress_deadline_seconds": 60}}


def fleet(quick: bool) -> list[Result]:
    from tts_ops.testing.load import PinnedLoad
    from tts_ops.testing.netns import Network, client_key
    from tts_ops_etcd.testing import EtcdCluster

    if os.geteuid() != 0 or (shutil.which("sshd") is None and not os.path.exists(
            "/usr/sbin/sshd")):
        return [Result("fleet: needs root and openssh-server", 0, "", ok=False)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    runtime = tempfile.mkdtemp(prefix="btf")  # short: ssh's control sockets live there
    tts_ops = os.path.join(os.path.dirname(sys.executable), "tts-ops")
    key, public = client_key(tmp / "client")
    results: list[Result] = []
    with Network(4) as net, EtcdCluster(tmp / "etcd", hosts=net.hosts[:3]) as cluster:
        known = tmp / "known_hosts"
        known.write_text("".join(h.start_sshd(tmp / f"sshd-{h.name}", public) + "\n"
                                 for h in net.hosts))
        discovery = {"registry": "etcd", "endpoints": cluster.endpoints,
                     "prefix": f"/bench-{uuid.uuid4().hex[:8]}", "ttl": 3}
        ssh_options = ["-i", str(key), "-o", f"UserKnownHostsFile={known}",
                       "-o", "StrictHostKeyChecking=yes"]
        hosts = [{"name": h.name, "ssh": f"root@{h.ip}", "tts_ops": tts_ops,
                  "state_dir": str(tmp / f"{h.name}-state")} for h in net.hosts[:3]]
        cfg = tmp / "fleet.json"
        cfg.write_text(json.dumps({"discovery": discovery, "services": [SERVICE],
                                   "fleet": {"hosts": hosts, "ssh_options": ssh_options}}))
        env = clean_env(TTS_OPS_CONFIG=str(cfg), TTS_OPS_STATE_DIR=str(tmp / "operator"),
                        XDG_RUNTIME_DIR=runtime)
        router_host = net.hosts[3]
        router_cfg = tmp / "router.json"
        router_cfg.write_text(json.dumps({
            "discovery": {**discovery, "node": router_host.name},
            "services": [{**SERVICE, "router": "haproxy", "router_scope": "cluster",
                          "instances": 0}]}))
        router_env = clean_env(TTS_OPS_CONFIG=str(router_cfg),
                               TTS_OPS_STATE_DIR=str(tmp / "router-state"))

        def cli(*args: str) -> float:
            started = time.perf_counter()
            done = subprocess.run([tts_ops, *args], env=env, capture_output=True, text=True,
                                  timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"tts-ops {' '.join(args)}: {done.stdout[-2000:]}"
                                   f" {done.stderr[-2000:]}")
            return time.perf_counter() - started

        watch = None
        try:
            cli("fleet", "deploy", "--strategy", "blue_green")
            repeat = 5 if quick else 11
            cli("fleet", "status", "--json")  # the connections are up: both sides warm
            from tts_ops.fleet import ssh
            from tts_ops.fleet.inventory import FleetConfig

            inventory = FleetConfig.model_validate({"hosts": hosts,
                                                    "ssh_options": ssh_options})
            os.environ["XDG_RUNTIME_DIR"] = runtime  # the same control sockets
            commands = []
            for host in inventory.hosts:
                config = tmp / f"{host.name}-status.json"
                config.write_text(json.dumps({"discovery": {**discovery, "node": host.name},
                                              "services": [SERVICE]}))
                commands.append(ssh.ssh_argv(inventory, host, ssh.tts_ops_argv(
                    host, ["-c", str(config), "status", "--json"])))
            ones, threes, figures = [], [], []
            for _ in range(repeat):
                started = time.perf_counter()
                subprocess.run(commands[0], check=True, capture_output=True, timeout=60)
                ones.append(time.perf_counter() - started)
                started = time.perf_counter()
                running = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
                for proc in running:
                    proc.wait(60)
                threes.append(time.perf_counter() - started)
                figures.append(cli("fleet", "status", "--json"))
            one, anchor = statistics.median(ones), statistics.median(threes)
            figure = statistics.median(figures)
            results.append(Result(
                "fleet: status of 3 hosts", figure * 1000, "ms", anchor * 1000,
                "ssh host tts-ops status --json, to the 3 hosts at once (same multiplexed"
                " connections)", "<= 1.5x", figure / anchor <= 1.5,
                note=f"one host alone: {one * 1000:.0f} ms (ratio {figure / one:.2f}); the"
                     " three namespaces share this machine's 2 cores, so the 3 statuses at"
                     " once are what one host's costs on 3 machines"))

            own = 0.0
            for host, spec in zip(net.hosts[:3], hosts, strict=True):
                local = tmp / f"{host.name}.json"
                local.write_text(json.dumps({"discovery": {**discovery, "node": host.name},
                                             "services": [SERVICE]}))
                started = time.perf_counter()
                host.run([tts_ops, "--state-dir", spec["state_dir"], "-c", str(local),
                          "deploy", "--strategy", "blue_green"], check=True, timeout=600)
                own += time.perf_counter() - started
            together = cli("fleet", "deploy", "--strategy", "blue_green")
            results.append(Result("fleet: deploy of 3 hosts, one at a time", together * 1000,
                                  "ms", own * 1000, "the 3 hosts' own deploys, one after"
                                  " another", "<= 1.15x", together / own <= 1.15))

            subprocess.run([*router_host.prefix, tts_ops, "start"], env=router_env,
                           check=True, capture_output=True, timeout=120)
            watch = router_host.popen([tts_ops, "discovery", "watch"], env=router_env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            from tts_ops_haproxy.testing import who

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and {i.rsplit(":", 1)[-1] for i in who(
                    router_host.ip, 9000, 30)} != {"h1", "h2", "h3"}:
                time.sleep(0.1)
            with PinnedLoad(f"http://{router_host.ip}:9000/synthesize", connections=4,
                            rate=10) as load:
                cli("fleet", "deploy", "--strategy", "blue_green")
                cli("fleet", "rollback")
            results.append(Result(
                "fleet: hey through the cluster router during fleet deploy and rollback",
                load.result.total - load.result.statuses.get(200, 0), "failed or non-200",
                goal="0", ok=load.result.clean and load.result.total > 0,
                note=load.result.summary()))
        finally:
            if watch is not None:
                watch.kill()
                watch.wait()
            subprocess.run([*router_host.prefix, tts_ops, "stop", "--all"], env=router_env,
                           capture_output=True, timeout=120)
            subprocess.run([tts_ops, "fleet", "stop", "--all"], env=env, capture_output=True,
                           timeout=300)
            shutil.rmtree(runtime, ignore_errors=True)
    return results
