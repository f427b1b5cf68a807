"""Releases: ``<state>/releases/<service>/<id>/`` with a manifest, and a ``current`` symlink.

A release holds the service's config snapshot and, when the service names a ``source``
directory, a copy of it plus the output of its ``install`` command. States: ``prepared``,
``active``, ``superseded`` (was active: a known good release), ``failed``, ``rolled_back``.
``current`` is switched atomically (a symlink under a temporary name, then rename).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tts_ops.errors import OperationFailed
from tts_ops.statefile import UntrustedState, atomic_write_json, read_json

GOOD = ("active", "superseded")
STATES = ("prepared", "active", "superseded", "failed", "rolled_back")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_release_id(rid: Any) -> bool:
    """A release id names a directory under the service's releases: no path in it."""
    return isinstance(rid, str) and _ID.fullmatch(rid) is not None


def manifest_problem(data: Any, service: str, rid: str) -> str | None:
    """What is wrong with a manifest, or None. Its ``config`` is run by the next start, so
    it goes through the config's own model (`ServiceConfig`), as the config file did."""
    if not isinstance(data, dict):
        return "not an object"
    unknown = set(data) - _RELEASE_FIELDS
    if unknown:
        return f"unknown field {sorted(unknown)[0][:40]!r}"
    if data.get("id") != rid or data.get("service") != service:
        return "its id or service is not the one it is filed under"
    if data.get("state") not in STATES:
        return "state: not a release state"
    for key in ("strategy", "environment", "dir"):
        if not isinstance(data.get(key, ""), str):
            return f"{key}: not a string"
    for key in ("source", "install_log", "reason"):
        if not isinstance(data.get(key), str | None):
            return f"{key}: not a string"
    created = data.get("created_at")
    if not isinstance(created, int | float) or isinstance(created, bool):
        return "created_at: not a time"
    config = data.get("config")
    if not isinstance(config, dict):
        return "config: not an object"
    from pydantic import ValidationError

    from tts_ops.config.models import ServiceConfig

    try:
        checked = ServiceConfig.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"config.{where}: {first['msg']}"
    if checked.name != service:
        return "config.name: not the service it is filed under"
    return None


@dataclass
class Release:
    id: str
    service: str
    created_at: float
    state: str = "prepared"
    strategy: str = "direct"
    environment: str = "development"
    config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    install_log: str | None = None
    reason: str | None = None
    dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_RELEASE_FIELDS = {f for f in Release.__dataclass_fields__}


class ReleaseStore:
    def __init__(self, state_dir: Path, service: str) -> None:
        self.root = state_dir / "releases" / service
        self.service = service

    def _manifest(self, rid: str) -> Path:
        return self.root / rid / "manifest.json"

    def new_id(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return f"{stamp}-{os.urandom(2).hex()}"

    def create(self, config: dict[str, Any], strategy: str, environment: str,
               source: Path | None, install: list[str] | None) -> Release:
        rid = self.new_id()
        rdir = self.root / rid
        rdir.mkdir(parents=True)
        release = Release(rid, self.service, time.time(), "prepared", strategy, environment,
                          config, dir=str(rdir))
        if source is not None:
            target = rdir / "source"
            try:
                shutil.copytree(source, target, symlinks=True)
            except OSError as exc:
                raise OperationFailed(f"cannot copy source {source}: {exc}") from None
            release.source = str(target)
            if install:
                log = rdir / "install.log"
                with open(log, "wb") as out:
                    try:
                        proc = subprocess.run(install, cwd=target, stdout=out,
                                              stderr=subprocess.STDOUT, timeout=1800)
                    except OSError as exc:
                        raise OperationFailed(f"install command {install[0]!r} cannot run:"
                                              f" {exc.strerror}") from None
                release.install_log = str(log)
                if proc.returncode != 0:
                    tail = log.read_text(errors="replace").splitlines()[-20:]
                    self.save(release, state="failed", reason=f"install exited {proc.returncode}")
                    raise OperationFailed(f"install command exited {proc.returncode}: "
                                          + " | ".join(tail[-3:]))
        self.save(release)
        return release

    def save(self, release: Release, **changes: Any) -> Release:
        for key, value in changes.items():
            setattr(release, key, value)
        atomic_write_json(self._manifest(release.id), release.to_json())
        return release

    def get(self, rid: str) -> Release | None:
        """The release, or None if there is none; a manifest that is not one (another
        user's, a link, a config its model refuses) raises `UntrustedState` (exit 2)."""
        if not valid_release_id(rid):
            return None
        try:
            data = read_json(self._manifest(rid))
        except ValueError:
            return None
        if data is None:
            return None
        problem = manifest_problem(data, self.service, rid)
        if problem is not None:
            raise UntrustedState(f"{self._manifest(rid)}: not a release manifest ({problem});"
                                 " nothing was started from it: remove it")
        return Release(**data)

    def all(self) -> list[Release]:
        if not self.root.is_dir():
            return []
        found = [self.get(p.name) for p in self.root.iterdir()
                 if p.is_dir() and not p.is_symlink() and (p / "manifest.json").exists()]
        return sorted((r for r in found if r is not None), key=lambda r: r.created_at)

    def current(self) -> Release | None:
        link = self.root / "current"
        try:
            return self.get(os.readlink(link).rstrip("/").split("/")[-1])
        except OSError:
            return None

    def activate(self, release: Release) -> None:
        """Mark ``release`` active (the previous active one superseded) and switch ``current``."""
        for other in self.all():
            if other.id != release.id and other.state == "active":
                self.save(other, state="superseded")
        self.save(release, state="active", reason=None)
        link = self.root / "current"
        tmp = self.root / f".current.{os.getpid()}"
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(release.id, tmp)
        os.replace(tmp, link)

    def last_good(self, exclude: str | None = None) -> Release | None:
        good = [r for r in self.all() if r.state in GOOD and r.id != exclude]
        return good[-1] if good else None

    def prune(self, keep: int) -> list[str]:
        """Keep ``keep`` releases: remove failed ones first, never the current or last good."""
        releases = self.all()
        current = self.current()
        protected = {r.id for r in (current, self.last_good()) if r is not None}
        candidates = [r for r in releases if r.id not in protected]
        order = [r for r in candidates if r.state not in GOOD] + [
            r for r in candidates if r.state in GOOD]
        removed = []
        while len(releases) - len(removed) > keep and order:
            victim = order.pop(0)
            shutil.rmtree(self.root / victim.id, ignore_errors=True)
            removed.append(victim.id)
        return removed
