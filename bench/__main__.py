"""``bench/run``: every benchmark, each figure next to its anchor from the same run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench.cases_core import cold_start
from bench.cases_deploy import deploy
from bench.cases_discovery import discovery
from bench.cases_etcd import etcd
from bench.cases_fleet import fleet
from bench.cases_hosts import hosts
from bench.cases_kubernetes import kubernetes
from bench.cases_logs import logs
from bench.cases_manual import manual_vs_supervisord
from bench.cases_orchestrate import orchestrate
from bench.cases_router import router
from bench.cases_server import server
from bench.cases_speech import speech
from bench.cases_supervisor import supervisor
from bench.cases_systemd import systemd
from bench.cases_views import views
from bench.cases_zero_downtime import zero_downtime
from bench.common import Result

CASES = {"core": cold_start, "server": server, "manual": manual_vs_supervisord,
         "systemd": systemd, "supervisor": supervisor, "discovery": discovery,
         "deploy": deploy, "logs": logs, "orchestrate": orchestrate,
         "zero_downtime": zero_downtime, "speech": speech, "views": views, "etcd": etcd,
         "router": router, "kubernetes": kubernetes, "hosts": hosts,
         "fleet": fleet}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
NOTES = """
## Notes

- systemd status: the floor is what any click program asking systemctl pays, both measured
  in the same run: `python -c "import click"` plus `systemctl --user show` of the 20 units.
  tts-ops asks systemd once per scope (one `systemctl show` for every unit), and starts that
  query from the `tts-ops` entry point, before importing anything else, when the last same
  command ran it (`tts_ops.prefetch`): it then runs while Python imports click and the
  plugins. What else it took: journald's liveness asked once per run instead of once per
  unit plan (40 socket connects), `logging` and `difflib` imported only when used, entry
  points' METADATA read only for distributions that have tts-ops entry points, and the
  status records and registrations built without dataclasses' deep copies and generated
  code.
- manual stop --all: best of 5 on each side, everything started again between runs and
  settled for 1 s before each measure; supervisorctl's stop all is bimodal (about 0.1 s
  when SIGCHLD wakes supervisord's loop, 1.1 s when it waits for its 1-second tick), so it
  is asked again until one run missed the tick, and the goal is against that best run.
  supervisorctl asks a resident supervisord, which kills 20 children it holds. The manual
  backend runs one small supervisor per service (as runit's runsv), so a stop waits for 20
  Python processes to exit on 2 cores: the note's "no CLI at all" figure
  (`bench/signal_all.py`, standard library only, signals them and waits on their pidfds) is
  that floor, and it leaves 30-45 ms of supervisorctl's best for everything `tts-ops
  stop` does first (Python's start, click, pluggy, the config, the intent and discovery
  records), where importing click alone takes about 30 ms here. The goal needs one resident
  process that supervises every service and a client that imports no click: a different
  design, not a faster CLI.
- manual log capture: timed from the service's spawn (the supervisor's `started_at`) to the
  status that says it exited, written after its last line, as supervisord's figure starts at
  its spawn and leaves out supervisorctl; `tts-ops start`'s own start-up is in the note.
  The writer is `cat` of the 1,000,000 numbered lines (15 MB), written beforehand by
  coreutils' `seq`: it puts them through a pipe in about 10 ms, so the figure is the
  capture's own throughput. With `seq` itself as the writer (0.25 s) both sides measured
  mostly `seq` and came out even; with a Python printer (0.8 s) only the printer. Both sides
  run 9 times, alternating, and the medians are compared. A line cut in two counts as not
  kept: supervisord cuts lines where it rotates. What the capture gained: lines over 64 KiB
  are found by one `rfind` per 64 KiB (a regex cost 20 ms a MiB); each read is written
  from its own buffer, never copied (a fresh MiB cost more in page faults than its write);
  rotated files are gzipped by one compressor a second after the rotation, not one started
  in the middle of the burst (logrotate's `delaycompress`); the discovery heartbeat's
  forked writer runs at nice 10.
- zero downtime: `hey -c 4 -q 25` with keep-alive, pinned to the service's configured
  address, through `restart`, `deploy` with blue_green, rolling (2 instances) and canary, and
  `rollback`, on each backend (a real `systemd --user`, a real supervisord); the restart is
  measured against a cold `tts-ops start` to ready plus the drain time, in the same run.
- speech: against `python -m piper.http_server` (the same piper-tts package and voice),
  every request a text never sent before unless said, the two servers measured in turns
  (single requests alternating, and four throughput windows A B B A ...) so that the
  machine's drift falls on both alike. A lone request runs on a session of every core
  (adaptive threads), as piper's server runs it: the same graph on the same runtime, so the
  p50 sits at parity and the table's ratio falls either side of 1.00 from run to run (six
  paired measurements of 30 requests on 2026-12-06: 0.992-1.007). The run inside tts-server
  takes what a bare onnxruntime session takes (0.996x, 30 paired texts), and the time
  outside it is 3.0 ms against 4.8 ms in piper's Flask server; thread counts, spinning,
  thread affinity, optimization levels, denormals as zero and the memory arena each came
  within 1% of piper's default session. Many requests at once run on one-thread sessions,
  one per worker (1.16-1.28x across runs): every core runs a synthesis of its own, which is
  the most 2 cores give (a bare one-thread session takes 643 ms for this text, 3.11 a second
  on 2 cores; tts-server serves 3.05-3.20), so the ratio is piper's server's own
  oversubscription (4 requests of 2 spinning threads each on 2 cores). The
  repeated text and the 8 identical requests are the cache and the coalescing; the RSS row
  fills the default 64 MiB cache past its bound (espeak, 2,000-character answers) and
  compares peak RSS with `--cache-bytes 0`: the answers live in files, not in the workers.
- supervisor status: the 1.2 goal is met with a 25-line unix-socket XML-RPC transport;
  importing supervisor's own (`supervisor.xmlrpc`) costs about 55 ms.
- views: `tts-ops top` runs in a real terminal (tmux) and refreshes every second; its CPU is
  measured over 10 s with 20 reference servers (1 worker each) running and nothing
  happening. It lays out its rows itself (a rich Table of 20 rows cost 25 ms of CPU per
  refresh, more than the 2% budget), keeps one connection open to each service's
  `/metrics`, asks only for the two families it shows (`?name[]=`), and parses nothing when
  only its own scrape changed. The anchor is supervisord idle with 20 programs (it has no
  live terminal view); its `getAllProcessInfo` is what its web page shows.
- logs stats: the fast path reads a line only when a few finds read it as `json.loads` would
  (a property test holds it to the one parser); the rotated files are shared out between
  the cores (one worker process per core): 70 MiB/s on one core, over 100 on two.
- etcd: a real 3-member cluster on loopback ports (Debian etcd-server 3.4). Heartbeats are
  lease keep-alives through etcd's JSON gateway (etcd3gw), one HTTP request each once a
  client knows an instance's lease; each of the 8 processes keeps its own 125 instances, as
  8 hosts would. The anchor is etcdctl's own put rate against the same cluster in the same
  run: `etcdctl check perf --load=l` (500 gRPC clients putting as fast as the cluster
  takes it, 60 s; not run with --quick). A keep-alive is not a raft write, a put is.
  A killed host's instance leaves when etcd expires its lease (checked every 0.5 s by the
  leader): between 2/3 ttl and ttl + 0.5 s after the death, seen by a watch on another
  client.
- router: HAProxy 2.6 (Debian) in front of the reference server (`"router": "haproxy"`).
  The hop is the p50 of 1,000 `/synthesize` requests through HAProxy minus the p50 of
  1,000 straight to the instance's private port, alternating on two keep-alive
  connections of one client. The hey run is the zero-downtime scenario above with the
  router; HAProxy's worker pid is read (`show info`) after each step: a reload or a
  restart would change it. The canary share counts `X-TTS-Instance` over 1,000 requests
  at the 25% step, then the deploy is interrupted (SIGINT) and rolls back.
- The bench byte-compiles the sources first: this environment sets
  PYTHONDONTWRITEBYTECODE, which would otherwise make every measured start compile edited
  modules again.
"""


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def table(results: list[Result]) -> list[str]:
    rows = ["| benchmark | figure | anchor (same run) | ratio | goal | met |",
            "|---|---|---|---|---|---|"]
    for r in results:
        anchor = f"{fmt(r.anchor)} {r.unit} ({r.anchor_label})" if r.anchor else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r.ok]
        note = f"<br>{r.note}" if r.note else ""
        rows.append(f"| {r.name}{note} | {fmt(r.figure)} {r.unit} | {anchor} | {ratio} |"
                    f" {r.goal} | {met} |")
    return rows


def merge(doc: str, rows: list[str], cases: list[str]) -> str:
    """``doc`` with the rows of the benchmarks just run replaced (the others kept as they
    were measured), new ones added at the end of the table, and the run line saying so."""
    def name(row: str) -> str:
        return row.split(" | ")[0].split("<br>")[0]

    fresh = {name(r): r for r in rows}
    lines = [line for line in (_without(line, cases) if line.startswith("Rows of ") else line
                               for line in doc.splitlines()) if line is not None]
    out, placed = [], set()
    last_row = max(i for i, line in enumerate(lines) if line.startswith("| "))
    for i, line in enumerate(lines):
        if line.startswith("| ") and name(line) in fresh:
            out.append(fresh[name(line)])
            placed.add(name(line))
        else:
            out.append(line)
        if i == last_row:
            out += [r for n, r in fresh.items() if n not in placed]
        if line.startswith("Run: "):
            out.append(f"Rows of {', '.join(cases)}: re-run"
                       f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (bench/run"
                       f" --only {' --only '.join(cases)} --write-docs).")
    return "\n".join(out) + "\n"


def _without(line: str, cases: list[str]) -> str | None:
    """A "Rows of A, B: re-run ..." line without the cases re-run now (None: none left):
    the rows of the others still come from the run it names."""
    head, _, rest = line.partition(": re-run")
    names = [n for n in head.removeprefix("Rows of ").split(", ") if n not in cases]
    return f"Rows of {', '.join(names)}: re-run{rest}" if names else None


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/run")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--only", choices=sorted(CASES), action="append")
    p.add_argument("--write-docs", action="store_true", help="rewrite docs/benchmarks.md")
    args = p.parse_args()
    results: list[Result] = []
    for name, case in CASES.items():
        if args.only and name not in args.only:
            continue
        print(f"# {name} ...", flush=True)
        for r in case(args.quick):
            results.append(r)
            ratio = f"ratio {r.ratio:.2f}" if r.ratio is not None else ""
            print(f"{r.name}: {fmt(r.figure)} {r.unit}"
                  + (f" vs {fmt(r.anchor)} {r.unit} ({r.anchor_label}) {ratio}" if r.anchor else "")
                  + (f" [{r.note}]" if r.note else "")
                  + (f" goal {r.goal}: {'met' if r.ok else 'NOT MET'}" if r.ok is not None else ""),
                  flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))
    if args.write_docs and args.only and DOCS.exists():
        DOCS.write_text(merge(DOCS.read_text(), table(results)[2:], args.only))
    elif args.write_docs:
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python"
                   f" {platform.python_version()}, {platform.platform()}")
        text = [
            "# Benchmarks",
            "",
            "Produced by `bench/run --write-docs`. Each figure is the median of repeated runs;",
            "its anchor was measured in the same run on the same machine, so the ratio is what",
            "carries across machines.",
            "",
            f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine}.",
            "",
            *table(results),
            NOTES,
        ]
        DOCS.write_text("\n".join(text))
    return 0 if all(r.ok is not False for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
