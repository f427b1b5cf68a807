"""Lifecycle faults of the manual backend: races, full disks, long lines, SIGKILLed supervisors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import psutil
import pytest

from tts_ops.testing import DUMMY, free_port


def supervisors_of(sdir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "name", "ppid"]):
        cmd = proc.info["cmdline"] or []
        # a supervisor's keeper is a fork of it, named tts-ops-keeper
        if "tts_ops_manual.supervise" in cmd and str(sdir) in cmd and \
                proc.info["name"] != "tts-ops-keeper":
            found.append(proc)
    # a fork of a supervisor (its keeper before it takes its name, a heartbeat writer, a
    # log compressor) shares its command line for a moment: it is not a second supervisor
    pids = {p.pid for p in found}
    return [p for p in found if p.info["ppid"] not in pids]


@pytest.mark.slow
def test_two_concurrent_starts_make_one_supervisor(tmp_path):
    for attempt in range(4):
        port = free_port()
        cfg = tmp_path / f"c{attempt}.json"
        state = tmp_path / f"state{attempt}"
        cfg.write_text(json.dumps({"services": [{
            "name": "twin", "port": port, "command": [*DUMMY, "--port", str(port)],
            "notify": True, "restart_delay": 0}]}))
        base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir", str(state)]
        starts = [subprocess.Popen([*base, "start", "twin", "--process-manager", "manual"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in starts]
        try:
            assert [p.returncode for p in starts] == [0, 0], outs
            assert len(supervisors_of(state / "manual" / "twin")) == 1
            status = json.loads(subprocess.run([*base, "status", "--json"], capture_output=True,
                                               text=True, check=True).stdout)
            assert status[0]["state"] == "running"
        finally:
            subprocess.run([*base, "stop", "--all"], capture_output=True, timeout=60)
        assert supervisors_of(state / "manual" / "twin") == []


def test_a_line_over_64_kb_is_split_into_whole_lines(backend, tmp_path):
    from tts_ops.testing import service, wait_for

    make = "''.join(f'{i:07d}' for i in range(30_000))"  # 210,000 characters, one line
    text = eval(make)
    svc = service("long", command=[sys.executable, "-c", f"import sys, time;"
                                   f" sys.stdout.write({make}); sys.stdout.flush();"
                                   " print(); print('after', flush=True); time.sleep(60)"],
                  notify=False, health_check="none", start_seconds=0.2, log_max_bytes=100_000,
                  log_backups=5)
    try:
        backend.start(svc)
        log = svc.log_path(backend.ctx.state_dir)
        from tts_ops.logwriter import rotated_files

        def read(f):
            import gzip

            return gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()

        def lines():
            files = [*rotated_files(log), log]
            return [ln for f in files for ln in read(f).split(b"\n")[:-1]]

        wait_for(lambda: b"after" in lines(), message="the line after the long one")
        pieces = [ln for ln in lines() if ln and ln[:1].isdigit()]
        assert b"".join(pieces).decode() == text
        # cut into 64 KiB pieces, at the same places however the pipe was read
        assert [len(p) for p in pieces] == [65536, 65536, 65536, 210_000 - 3 * 65536]
        # every file ends with a whole line: no line spreads over two files
        for f in [*rotated_files(log), log]:
            assert read(f).endswith(b"\n")
    finally:
        backend.stop(svc, force=True)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real ENOSPC, not a simulated one."""
    from tts_ops.testing import tiny_disk as mount

    with mount(tmp_path) as disk:
        yield disk


def ticks(log) -> list[int]:
    return [int(n) for n in re.findall(rb"^tick (\d+)$", log.read_bytes(), re.M)]


def fill(disk) -> None:
    from tts_ops.testing import fill_disk

    fill_disk(disk)


TICKER = [sys.executable, "-u", "-c", "import itertools, time; [(print(f'tick {i}',"
          " flush=True), time.sleep(0.01)) for i in itertools.count()]"]


@pytest.mark.slow
def test_a_full_log_disk_drops_and_counts_lines_and_the_service_keeps_its_pid(
        backend, tiny_disk):
    from tts_ops.testing import service, wait_for

    log = tiny_disk / "logs" / "ticker.log"
    svc = service("ticker", command=TICKER, notify=False, health_check="none",
                  start_seconds=0.2, log_file=str(log), log_max_bytes=10**9)
    try:
        pid = backend.start(svc).pid
        wait_for(lambda: log.stat().st_size > 0)
        fill(tiny_disk)
        st = wait_for(lambda: (s := backend.status([svc])[0]).extra["log_dropped"] > 20 and s,
                      message="lines counted as dropped")
        assert st.pid == pid and st.state.value == "running"
        (tiny_disk / "filler").unlink()  # space returns: so does the log
        last = ticks(log)[-1]
        wait_for(lambda: ticks(log)[-1] > last + 20, message="new lines after space returned")
        assert backend.status([svc])[0].pid == pid
        # a line the full disk tore is ended by a newline, never glued to the next one
        lines = log.read_bytes().splitlines()
        odd = [ln for ln in lines if not re.fullmatch(rb"t(i(c(k( \d*)?)?)?)?", ln)]
        assert not odd, odd
        assert sum(1 for ln in lines if not re.fullmatch(rb"tick \d+", ln)) <= 1
    finally:
        backend.stop(svc, force=True)


def test_a_full_state_disk_does_not_stop_supervision(tiny_disk, tmp_path, events):
    import os
    import signal

    from tts_ops.backend import BackendContext
    from tts_ops.testing import service, wait_for
    from tts_ops_manual.backend import ManualBackend

    backend = ManualBackend(BackendContext(state_dir=tiny_disk / "state", emit=events))
    svc = service("ticker", command=TICKER, notify=False, health_check="none",
                  start_seconds=0.2, restart_delay=0, log_file=str(tmp_path / "t.log"))
    try:
        first = backend.start(svc)
        supervisor = psutil.Process(first.extra["supervisor_pid"])
        fill(tiny_disk)
        os.kill(first.pid, signal.SIGKILL)
        # the supervisor cannot write its status, but it restarts the service all the same
        def cmdline(proc) -> str:
            try:
                return " ".join(proc.cmdline())
            except psutil.Error:  # a zombie not reaped yet
                return ""

        # the ticker's own code, not a keeper's command line (which names .../ticker)
        child = wait_for(lambda: [c.pid for c in supervisor.children() if c.pid != first.pid
                                  and "itertools" in cmdline(c)],
                         message="a restarted service")
        assert supervisor.is_running()
        (tiny_disk / "filler").unlink()
        st = wait_for(lambda: (s := backend.status([svc])[0]).pid == child[0]
                      and s.state.value == "running" and s,
                      message="the status written once space returned")
        assert st.restarts == 1 and st.state.value == "running"
    finally:
        backend.stop(svc, force=True)


def _tree(pid: int) -> list[psutil.Process]:
    """A supervisor's descendants, its keeper left out."""
    return [p for p in psutil.Process(pid).children(recursive=True)
            if p.name() != "tts-ops-keeper"]


def _gone(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("path", ["cgroup", "process-group"])
def test_a_sigkilled_supervisor_takes_its_whole_tree_along(backend, monkeypatch, path):
    import os
    import signal

    from tts_ops.testing import free_port, service, wait_for

    if path == "process-group":
        monkeypatch.setenv("TTS_OPS_CGROUPS", "off")
    port = free_port()
    svc = service("workers", port=port, engine_type="espeak",
                  command=[sys.executable, "-m", "tts_server", "--port", str(port),
                           "--engine", "espeak", "--workers", "2"], notify=True,
                  start_timeout=60)
    try:
        st = backend.start(svc)
        supervisor = st.extra["supervisor_pid"]
        raw = json.loads((backend.service_dir("workers") / "status.json").read_text())
        assert (raw["cgroup"] is not None) == (path == "cgroup")
        tree = _tree(supervisor)
        assert len(tree) == 3  # the master and its two workers
        os.kill(supervisor, signal.SIGKILL)
        wait_for(lambda: _gone(tree) and not _listening(port), timeout=10,
                 message="every process of the service gone, and the port closed")
    finally:
        backend.stop(svc, force=True)


def test_a_grandchild_that_left_the_process_group_dies_with_the_cgroup(backend, tmp_path):
    import os
    import signal

    from tts_ops import cgroups
    from tts_ops.testing import service, wait_for

    if cgroups.root() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have a writable cgroup v2 hierarchy")
        pytest.skip("no writable cgroup v2 hierarchy here")
    pidfile = tmp_path / "escaped"
    escape = ("import os, time; pid = os.fork();"
              " (os.setsid(), time.sleep(600)) if pid == 0 else"
              f" open({str(pidfile)!r}, 'w').write(str(pid)); time.sleep(600)")
    svc = service("escaper", command=[sys.executable, "-c", escape], notify=False,
                  health_check="none", start_seconds=0.2)
    try:
        st = backend.start(svc)
        escaped = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
        assert os.getsid(escaped) == escaped  # in a session (and group) of its own
        os.kill(st.extra["supervisor_pid"], signal.SIGKILL)
        wait_for(lambda: _gone([psutil.Process(escaped)]), timeout=10,
                 message="the escaped grandchild gone")
    finally:
        backend.stop(svc, force=True)


def test_a_killed_worker_is_replaced_and_the_service_keeps_serving(backend):
    import os
    import signal

    import httpx

    from tts_ops.testing import free_port, live_children, service, wait_for

    port = free_port()
    svc = service("respawn", port=port, engine_type="espeak",
                  command=[sys.executable, "-m", "tts_server", "--port", str(port),
                           "--engine", "espeak", "--workers", "2"], notify=True,
                  start_timeout=60)
    try:
        st = backend.start(svc)
        master = psutil.Process(st.pid)
        workers = {p.pid for p in master.children()}
        assert len(workers) == 2
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        now = wait_for(lambda: (w := live_children(master.pid))
                       and len(w) == 2 and victim not in w and w, timeout=20,
                       message="a new worker in place of the killed one")
        assert len(now - workers) == 1
        for _ in range(4):
            resp = httpx.post(f"http://127.0.0.1:{port}/synthesize", json={"text": "hi"},
                              timeout=30)
            assert resp.status_code == 200
        st2 = backend.status([svc])[0]
        assert st2.pid == st.pid and st2.restarts == 0 and st2.state.value == "running"
    finally:
        backend.stop(svc, force=True)


@pytest.mark.parametrize("path", ["cgroup", "process-group"])
def test_a_grandchild_with_no_death_signal_of_its_own_dies_with_the_supervisor(
        backend, monkeypatch, tmp_path, path):
    import os
    import signal

    from tts_ops.testing import DUMMY, free_port, service, wait_for

    if path == "process-group":
        monkeypatch.setenv("TTS_OPS_CGROUPS", "off")
    pidfile = tmp_path / "grandchild"
    port = free_port()
    # the grandchild ignores SIGTERM and has no parent-death signal: only a keeper ends it
    svc = service("family", port=port, notify=True,
                  command=[*DUMMY, "--port", str(port), "--fork-grandchild", str(pidfile)])
    try:
        st = backend.start(svc)
        grandchild = psutil.Process(int(wait_for(lambda: pidfile.exists() and
                                                 pidfile.read_text())))
        os.kill(st.extra["supervisor_pid"], signal.SIGKILL)
        wait_for(lambda: _gone([grandchild]), timeout=10, message="the grandchild gone")
    finally:
        backend.stop(svc, force=True)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.integers(0, 40) | st.integers(0, 200_000), min_size=1, max_size=40),
       cuts=st.lists(st.integers(1, 300_000) | st.integers(1, 100), min_size=1, max_size=20),
       max_bytes=st.integers(50, 400_000))
def test_lines_are_cut_the_same_way_however_the_output_is_read(lines, cuts, max_bytes):
    import tempfile
    from pathlib import Path

    from tts_ops.logwriter import RotatingLogWriter, rotated_files
    from tts_ops_manual.supervise import MAX_PARTIAL, Supervisor

    data = b"".join(bytes([65 + i % 26]) * n + b"\n" for i, n in enumerate(lines))

    def written(sizes: list[int], joined: bool = False) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            sup = Supervisor.__new__(Supervisor)  # just the output path, to a real writer
            sup.partial = b""
            sup.timers = {}
            log = Path(tmp) / "out.log"
            sup.log = RotatingLogWriter(log, max_bytes, 10_000, compress=False)
            sup.note_drops = lambda: None
            pos = 0
            for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
                if pos >= len(data):
                    break
                (sup.write_output_joined if joined else sup.write_output)(
                    data[pos:pos + size])
                pos += size
            sup.log.close()
            files = [*rotated_files(log), log]
            # a file holds whole lines only: rotation falls between lines
            assert all(f.read_bytes().endswith(b"\n") for f in files if f.stat().st_size)
            return b"".join(f.read_bytes() for f in files)

    one_read = written([len(data)])
    assert written(cuts) == one_read
    assert written(cuts, joined=True) == one_read  # the copy-free path is the general one
    assert one_read.replace(b"\n", b"") == data.replace(b"\n", b"")
    assert all(len(line) <= MAX_PARTIAL for line in one_read.split(b"\n"))


def test_cgroups_of_supervisors_that_are_gone_are_swept(tmp_path):
    import os

    from tts_ops import cgroups

    if cgroups.root() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have a writable cgroup v2 hierarchy")
        pytest.skip("no writable cgroup v2 hierarchy here")
    gone = subprocess.Popen(["true"])  # a pid that existed and is gone
    gone.wait()
    stale = cgroups.create(f"swept.{gone.pid}")
    alive = cgroups.create(f"kept.{os.getpid()}")
    try:
        cgroups.sweep()
        assert not stale.exists()
        assert alive.exists()
    finally:
        cgroups.remove(stale)
        cgroups.remove(alive)


def test_the_long_line_check_says_what_the_regex_says():
    """`has_long_line` (a jump per limit bytes) against the plain regex it replaced."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tts_ops_manual.supervise import has_long_line

    lines = st.lists(st.integers(0, 20).map(lambda n: b"x" * n), max_size=12)

    @settings(max_examples=500, deadline=None)
    @given(lines, st.integers(1, 12), st.booleans())
    def check(parts, limit, ends_with_newline):
        data = b"\n".join(parts) + (b"\n" if ends_with_newline else b"")
        regex = re.compile(b"[^\n]{%d}" % (limit + 1))
        assert has_long_line(data, limit) == (regex.search(data) is not None)

    check()


def test_stop_works_on_a_full_state_disk(tiny_disk, tmp_path):
    """A full disk is when an operator stops things: the record of the intent (for the
    orchestration monitor) cannot be written, and the stop goes on with a warning."""
    import json
    import subprocess

    from tts_ops.testing import DUMMY, free_port

    port = free_port()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "full", "port": port, "notify": True, "process_manager": "manual",
        "log_file": str(tmp_path / "full.log"), "command": [*DUMMY, "--port", str(port)]}]}))
    base = [sys.executable, "-m", "tts_ops", "-c", str(cfg), "--state-dir",
            str(tiny_disk / "state")]
    started = subprocess.run([*base, "start"], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = json.loads(subprocess.run([*base, "status", "--json"], capture_output=True,
                                    text=True).stdout)[0]["pid"]
    fill(tiny_disk)
    try:
        stopped = subprocess.run([*base, "stop", "--all"], capture_output=True, text=True,
                                 timeout=60)
    finally:
        (tiny_disk / "filler").unlink()
        subprocess.run([*base, "stop", "--all"], capture_output=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert "tts-ops: warning: cannot record that full was stopped" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not psutil.pid_exists(pid)
