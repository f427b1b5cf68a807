"""Hosts for tests: Linux network namespaces on a bridge of their own.

``with Network(3) as net:`` makes namespaces ``net.hosts[0..2]``, each with loopback and
one interface on a private /24 (``10.A.B.1`` .. ``10.A.B.N``) bridged to the root
namespace (``10.A.B.254``), so the test process reaches every host and every host reaches
the others, while each has its own ports and its own loopback: a record that names
``127.0.0.1`` is as unreachable from another host as it would be on real machines.
``host.run(argv)`` runs a command inside; ``host.down()``/``up()`` cut its link;
``host.start_sshd(dir, key)`` runs Debian's OpenSSH server on its address, letting in the
holder of ``key`` (see `client_key`).

Needs root and iproute2; a test without them is skipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def require_netns() -> None:
    import pytest

    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with iproute2 (ip netns)")
        pytest.skip("needs root and iproute2 for network namespaces")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no interface of the root namespace is on (two runs at once
    take two)."""
    done = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
    taken = [ipaddress.ip_interface(word).network for line in done.stdout.splitlines()
             for word in line.split()[3:4]]
    for _ in range(100):
        raw = uuid.uuid4().bytes
        net = ipaddress.ip_network(f"10.{100 + raw[0] % 100}.{raw[1]}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.x.y.0/24 for the test network")


class Host:
    def __init__(self, network: Network, index: int) -> None:
        self.index = index
        self.name = f"h{index + 1}"
        self.netns = f"{network.tag}-{self.name}"
        self.ip = str(network.subnet.network_address + index + 1)
        self.link = f"{network.tag}{index + 1}"  # the root side of its veth pair

    @property
    def prefix(self) -> list[str]:
        """An argv prefix that runs a command in this host's namespace."""
        return ["ip", "netns", "exec", self.netns]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return subprocess.run([*self.prefix, *argv], **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix, *argv], **kwargs)

    def start_sshd(self, directory: Path, authorized: str) -> str:
        """OpenSSH's server on this host's address, port 22, key logins only, for
        ``authorized`` (a public key line). Returns its ``known_hosts`` line."""
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True, capture_output=True)
        (directory / "authorized_keys").write_text(authorized + "\n")
        config = directory / "sshd_config"
        config.write_text("\n".join([
            "Port 22", f"ListenAddress {self.ip}", f"HostKey {key}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"PidFile {directory / 'sshd.pid'}", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "LogLevel ERROR", "MaxStartups 100",
            "MaxSessions 100", ""]))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation dir
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self.sshd = self.popen([sshd, "-D", "-e", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        public = (directory / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{self.ip} {public[0]} {public[1]}"

    def stop_sshd(self) -> None:
        proc = getattr(self, "sshd", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    def down(self) -> None:
        _ip("link", "set", self.link, "down")

    def up(self) -> None:
        _ip("link", "set", self.link, "up")


def client_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key for the test's ssh client: its path and its public line."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, capture_output=True)
    return key, (directory / "id_ed25519.pub").read_text().strip()


def require_ssh() -> None:
    import pytest

    if shutil.which("ssh") is None or not (shutil.which("sshd") or os.path.exists(
            "/usr/sbin/sshd")):
        if os.environ.get("CI"):
            pytest.fail("CI must install openssh-client and openssh-server")
        pytest.skip("needs OpenSSH's client and server (apt install openssh-server)")


class Network:
    def __init__(self, count: int) -> None:
        self.tag = f"tt{uuid.uuid4().hex[:6]}"
        self.subnet = _free_subnet()
        self.bridge = f"{self.tag}br"
        self.gateway = str(self.subnet.network_address + 254)
        self.hosts = [Host(self, i) for i in range(count)]

    def __enter__(self) -> Network:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                _ip("netns", "add", host.netns)
                _ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0",
                    "netns", host.netns)
                _ip("link", "set", host.link, "master", self.bridge, "up")
                _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
                _ip("-n", host.netns, "link", "set", "eth0", "up")
                _ip("-n", host.netns, "link", "set", "lo", "up")
                _ip("-n", host.netns, "route", "add", "default", "via", self.gateway)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for host in self.hosts:
            host.stop_sshd()
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
