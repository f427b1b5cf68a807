"""`Fleet`: a tts-ops command on the hosts of the config's ``fleet`` section, from this
machine, over SSH: all at once (``status``, ``run``) or host by host, ``parallel`` at a time,
stopping at the first that fails (``deploy``, ``rollback``, ``restart``, ``start``,
``stop``), with what each host says reported as it comes.

No click: ``tts-ops fleet`` (`tts_ops.cli.fleet_cmd`) renders the events a `Fleet` reports,
as text lines or JSON lines, and a program may drive it the same way. Each event is a dict
with ``fleet_host`` and ``event``:

- ``running``, ``skipped``, ``ok``, ``failed``, ``undoing`` (with ``message``): a host's step;
- ``output`` (with ``line``): a line a host printed;
- a deploy's or rollback's own events (``start``, ``phase``, ``weights``, ``result``, ...),
  as ``deploy --json`` prints them there;
- ``releases`` (with ``current``): which release each host runs once it is over.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tts_ops.errors import ConfigError, OperationFailed

Report = Callable[[dict[str, Any]], None]

#: what a deploy or rollback reports besides each host's lines: its events, and the release
_WITH_EVENTS = ("deploy", "rollback")


class Fleet:
    """The fleet of ``runtime``'s config: its hosts, and the config document as written
    (each host gets it, not our model's dump with every default). Each host's config is
    validated as the host will validate it, once per content of the config (a marker
    beside its cache entry)."""

    def __init__(self, runtime: Any) -> None:
        from tts_ops.config.loader import read_document

        self.runtime = runtime
        loaded = runtime.loaded
        config = loaded.config.fleet
        if config is None:
            raise ConfigError(f"{loaded.source}: no fleet section: add \"fleet\": {{\"hosts\":"
                              " [{\"name\": \"web-1\", \"ssh\": \"deploy@10.0.0.1\"}]}"
                              " (docs/fleet.md)")
        self.config = config
        self.document: dict[str, Any] = read_document(loaded.path) if loaded.path else {}
        marker = loaded.cache_file.with_suffix(".hosts-ok") if loaded.cache_file else None
        if marker is None or not marker.exists():
            from tts_ops.fleet.inventory import host_problems

            problems = host_problems(self.document, config)
            if problems:
                raise ConfigError(problems[0], problems=problems)
            if marker is not None and marker.parent.is_dir():
                from tts_ops.statefile import atomic_write_bytes

                atomic_write_bytes(marker, b"")

    def hosts(self, names: tuple[str, ...] = ()) -> list[Any]:
        """The hosts called ``names`` (every host without names), in the inventory's order."""
        if not names:
            return list(self.config.hosts)
        chosen = []
        for name in names:
            host = self.config.get(name)
            if host is None:
                known = ", ".join(h.name for h in self.config.hosts)
                raise ConfigError(f"--host {name}: not a host of the fleet ({known})")
            chosen.append(host)
        return chosen

    def payload(self, host: Any, sources: dict[str, str] | None = None) -> bytes:
        from tts_ops.fleet.hosts import host_config

        return json.dumps(host_config(self.document, host, sources)).encode()

    def each(self, hosts: list[Any], args: list[str], parallel: int | None = None
             ) -> list[Any]:
        """Run ``args`` on ``hosts``, ``parallel`` at a time (all by default); the answers
        (`tts_ops.fleet.ssh.Answer`) in the hosts' order."""
        from concurrent.futures import ThreadPoolExecutor

        from tts_ops.fleet import ssh

        def one(host: Any) -> Any:
            return ssh.run(self.config, host, args, self.payload(host))

        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(parallel or len(hosts),
                                                       len(hosts)))) as pool:
            return list(pool.map(one, hosts))

    def status(self, hosts: list[Any]) -> list[dict[str, Any]]:
        """Every host's ``status --json`` rows with ``fleet_host``; a host that could not
        be read is one row with ``error``."""
        rows: list[dict[str, Any]] = []
        for answer in self.each(hosts, ["status", "--json"]):
            try:
                found = json.loads(answer.stdout) if answer.ok else None
            except ValueError:
                found = None
            if not isinstance(found, list):
                rows.append({"fleet_host": answer.host, "error": answer.problem()})
                continue
            rows += [{"fleet_host": answer.host, **r} for r in found if isinstance(r, dict)]
        return rows

    def run(self, hosts: list[Any], args: list[str], report: Report) -> None:
        """``args`` on every host at once; what each printed and whether it worked."""
        answers = self.each(hosts, args)
        for answer in answers:
            _answered(report, answer, " ".join(args), printed=False)
        failed = [a for a in answers if not a.ok]
        if failed:
            raise OperationFailed(f"fleet run: {len(failed)} of {len(answers)} hosts failed;"
                                  f" first: {failed[0].problem()}")

    def one_by_one(self, what: str, args: list[str], hosts: list[Any], report: Report,
                   parallel: int | None = None, undo: list[str] | None = None,
                   names: tuple[str, ...] = ()) -> None:
        """``args`` on each host, ``parallel`` at a time, in the inventory's order; stop at
        the first host that fails (`OperationFailed`); with ``undo``, run it on the hosts
        already done (last first). A host that only routes the services is skipped."""
        if what in ("deploy", "rollback", "restart"):
            routing = [h for h in hosts if self._routes_only(h, names)]
            for host in routing:
                _say(report, host.name, "skipped", f"{host.name} only routes (instances: 0):"
                     f" nothing to {what} there")
            hosts = [h for h in hosts if h not in routing]
        step = parallel or self.config.parallel
        current: dict[str, str] | None = {} if what in _WITH_EVENTS else None
        if current is not None:
            args = [*args, "--json"]
        with _FleetLock(self.runtime, what):
            done: list[Any] = []
            failed = None
            for i in range(0, len(hosts), step):
                batch = hosts[i:i + step]
                for host in batch:
                    _say(report, host.name, "running", f"{what} on {host.name}")
                answers = self._streamed(batch, args, report, with_sources=what == "deploy",
                                         current=current)
                for answer in answers:
                    _answered(report, answer, what)
                done += [h for h, a in zip(batch, answers, strict=True) if a.ok]
                failed = next((a for a in answers if not a.ok), None)
                if failed is not None:
                    break
            if failed is not None and undo:
                for host in reversed(done):
                    _say(report, host.name, "undoing", f"{' '.join(undo)} on {host.name}")
                    if current is not None:
                        current.pop(host.name, None)  # rolled back: asked again below
                    _answered(report, self._streamed([host], undo, report)[0], " ".join(undo))
            self._releases(hosts, report, current or {})
        if failed is not None:
            left = [h.name for h in hosts if h not in done and h.name != failed.host]
            raise OperationFailed(f"fleet {what} stopped at {failed.problem()}"
                                  + (f"; not started on {', '.join(left)}" if left else ""))

    def _routes_only(self, host: Any, names: tuple[str, ...]) -> bool:
        """Whether every service ``names`` picks (all, without names) is only routed on
        ``host``: a router-only host (``instances: 0``) has no instance to deploy."""
        from tts_ops.fleet.hosts import host_config

        services = [s for s in host_config(self.document, host)["services"]
                    if not names or s.get("name") in names]
        return bool(services) and all(s.get("instances", 1) == 0 for s in services)

    def _push_sources(self, host: Any) -> dict[str, str]:
        """Each service's ``source`` directory (as it is on ``host``, overrides applied),
        sent to the host: where the host keeps it, per service."""
        from tts_ops.fleet import sources, ssh
        from tts_ops.fleet.hosts import host_config

        kept: dict[str, str] = {}
        for svc in host_config(self.document, host)["services"]:
            if not svc.get("source"):
                continue
            remote = ssh.tts_ops_argv(host, ["fleet", "receive-source", "--name", svc["name"]])
            answer = ssh.run(self.config, host, [], sources.pack(Path(svc["source"])),
                             remote=remote)
            if not answer.ok:
                raise OperationFailed(f"{answer.problem()} (sending the source of"
                                      f" {svc['name']})")
            kept[svc["name"]] = answer.stdout.strip()
        return kept

    def _streamed(self, hosts: list[Any], args: list[str], report: Report,
                  with_sources: bool = False, current: dict[str, str] | None = None
                  ) -> list[Any]:
        """``args`` on ``hosts`` at once, each host's lines reported as they come; the
        answers in the hosts' order. A deploy's or rollback's events (``current`` given:
        it runs with ``--json`` there) are reported as events, and each deployed release
        is noted in ``current``."""
        from tts_ops.fleet import ssh

        lock = threading.Lock()
        answers: dict[str, Any] = {}

        def one(host: Any) -> None:
            try:
                kept = self._push_sources(host) if with_sources else None
            except OperationFailed as exc:
                answers[host.name] = ssh.Answer(host.name, 1, "", exc.message)
                return
            proc = ssh.stream(self.config, host, args, self.payload(host, kept))
            assert proc.stdout is not None and proc.stderr is not None
            out = []
            for line in proc.stdout:
                out.append(line)
                event = event_of(line) if current is not None else None
                with lock:
                    if event is None:
                        report({"fleet_host": host.name, "event": "output",
                                "line": line.rstrip("\n")})
                        continue
                    if event.get("event") == "result" and event.get("result") == "deployed":
                        noted = f"{event.get('service')}={event.get('release')}"
                        current[host.name] = ", ".join(filter(None, [current.get(host.name),
                                                                     noted]))
                    report({"fleet_host": host.name, **event})
            err = proc.stderr.read()
            answers[host.name] = ssh.Answer(host.name, proc.wait(), "".join(out), err)

        threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [answers[h.name] for h in hosts]

    def _releases(self, hosts: list[Any], report: Report, known: dict[str, str]) -> None:
        """Which release each host runs now (one event a host): as its deploy just said,
        else asked (a host not reached, failed, or rolled back)."""
        for host in hosts:
            if host.name in known:
                report({"fleet_host": host.name, "event": "releases",
                        "current": known[host.name]})
        for answer in self.each([h for h in hosts if h.name not in known],
                                ["releases", "--json"]):
            current = "unreachable"
            try:
                found = json.loads(answer.stdout) if answer.ok else None
            except ValueError:
                found = None
            if isinstance(found, list):
                ids = sorted({f"{r.get('service')}={r.get('id')}" for r in found
                              if isinstance(r, dict) and r.get("current")})
                current = ", ".join(ids) or "no release"
            report({"fleet_host": answer.host, "event": "releases", "current": current})


def event_of(line: str) -> dict[str, Any] | None:
    """A deploy's JSON event, or None for any other line."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _say(report: Report, host: str, phase: str, message: str) -> None:
    report({"fleet_host": host, "event": phase, "message": message})


def _answered(report: Report, answer: Any, what: str, printed: bool = True) -> None:
    """A host's answer: its lines (unless they were reported as they came), then ok or
    failed with why."""
    if not printed:
        for line in answer.stdout.splitlines():
            report({"fleet_host": answer.host, "event": "output", "line": line})
    _say(report, answer.host, "ok" if answer.ok else "failed",
         f"{what} {'done' if answer.ok else 'failed'}"
         + ("" if answer.ok else f": {answer.problem().split(': ', 1)[-1]}"))


class _FleetLock:
    """The fleet-wide lock of a shared registry (etcd), when the config has one: two
    operators' fleet deploys never interleave. A registry of this machine alone (the
    file registry) has no other operator to keep out: nothing is taken."""

    def __init__(self, runtime: Any, what: str) -> None:
        self.runtime = runtime
        self.what = what
        self.held: Any = None

    def __enter__(self) -> _FleetLock:
        if self.runtime.config.discovery.registry == "file":
            return self
        holder = {"pid": os.getpid(), "since": time.time(), "cmd": f"tts-ops fleet {self.what}"}
        self.held = self.runtime.registry().deploy_lock("fleet", holder)
        self.held.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held is not None:
            self.held.__exit__(*exc)
