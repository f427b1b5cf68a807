"""A private etcd cluster on loopback ports, for the tests and the benchmarks.

``with EtcdCluster(tmp, members=3) as cluster: cluster.endpoints`` starts real ``etcd``
members (Debian ``etcd-server``), waits until each reports healthy, and stops them all at
the end; ``kill(i)`` and ``start(i)`` take one member down and bring it back.
``EtcdCluster(tmp, hosts=net.hosts)`` runs one member in each network namespace of a
`tts_ops.testing.netns.Network`, on the host's own address.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def require_etcd() -> None:
    """Skip the calling test without etcd; fail it in CI (``CI=true``), where it must exist."""
    import pytest

    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install etcd (Debian etcd-server and etcd-client)")
        pytest.skip("etcd is not installed (apt install etcd-server etcd-client)")


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


class EtcdCluster:
    def __init__(self, directory: Path, members: int = 3, extra: list[str] | None = None,
                 tls: dict[str, Path] | None = None, hosts: list | None = None) -> None:
        self.directory = Path(directory)
        self.extra = list(extra or [])
        #: {"ca", "cert", "key"}: clients must connect with https and a cert the CA signed
        self.tls = tls
        self.scheme = "https" if tls else "http"
        if tls:
            self.extra += ["--cert-file", str(tls["cert"]), "--key-file", str(tls["key"]),
                           "--trusted-ca-file", str(tls["ca"]), "--client-cert-auth"]
        self.hosts = list(hosts or [])
        self.size = len(self.hosts) or members
        if self.hosts:  # a namespace each: the ports are theirs alone
            self.ips = [h.ip for h in self.hosts]
            self.client_ports, self.peer_ports = [2379] * self.size, [2380] * self.size
        else:
            self.ips = ["127.0.0.1"] * self.size
            ports = free_ports(2 * self.size)
            self.client_ports, self.peer_ports = ports[:self.size], ports[self.size:]
        members = self.size
        self.procs: list[subprocess.Popen | None] = [None] * members
        self.started = False

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.scheme}://{ip}:{p}" for ip, p in self._members(self.client_ports)]

    def _members(self, ports: list[int]) -> list[tuple[str, int]]:
        return list(zip(self.ips, ports, strict=True))

    def url(self, prefix: str = "/tts-ops") -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"{ip}:{p}"
                                         for ip, p in self._members(self.client_ports)) + prefix

    def _argv(self, i: int) -> list[str]:
        peers = ",".join(f"m{j}=http://{ip}:{p}"
                         for j, (ip, p) in enumerate(self._members(self.peer_ports)))
        client = f"{self.scheme}://{self.ips[i]}:{self.client_ports[i]}"
        peer = f"http://{self.ips[i]}:{self.peer_ports[i]}"
        inside = self.hosts[i].prefix if self.hosts else []
        return [*inside, shutil.which("etcd") or "etcd", "--name", f"m{i}",
                "--data-dir", str(self.directory / f"m{i}"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", peers, "--initial-cluster-token", "tts-ops-test",
                "--initial-cluster-state", "existing" if self.started else "new",
                "--log-level", "error", "--logger", "zap", *self.extra]

    def start(self, i: int | None = None, timeout: float = 30.0) -> None:
        members = range(self.size) if i is None else [i]
        for j in members:
            log = open(self.directory / f"m{j}.log", "ab")
            self.procs[j] = subprocess.Popen(self._argv(j), stdout=log, stderr=log,
                                             start_new_session=True)
            log.close()
        deadline = time.monotonic() + timeout
        for j in members:
            while not self.healthy(j):
                proc = self.procs[j]
                if proc is not None and proc.poll() is not None:
                    tail = (self.directory / f"m{j}.log").read_text(errors="replace")[-800:]
                    raise RuntimeError(f"etcd member m{j} exited: {tail}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member m{j} not healthy within {timeout} s")
                time.sleep(0.05)
        self.started = True

    def healthy(self, i: int) -> bool:
        context = None
        if self.tls:
            import ssl

            context = ssl.create_default_context(cafile=str(self.tls["ca"]))
            context.load_cert_chain(str(self.tls["cert"]), str(self.tls["key"]))
        try:
            with urllib.request.urlopen(f"{self.endpoints[i]}/health", timeout=1,
                                        context=context) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(self.size):
            self.kill(i, signal.SIGTERM)

    def __enter__(self) -> EtcdCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_certs(directory: Path) -> dict[str, Path]:
    """A CA, and one key and certificate it signed for 127.0.0.1 (server and client use),
    made with the openssl command."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "node.key",
                                                          "node.csr", "node.pem"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "2", "-subj", "/CN=tts-ops test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}
