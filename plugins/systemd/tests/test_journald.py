"""The journald log sink against a real systemd-journald (started for this module only).

journald listens on the system-wide /run/systemd/journal paths, so the fixture removes them
when it is done; units started meanwhile send their output to the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tts_ops.backend import BackendContext
from tts_ops.testing import free_port, make_host, run_cli, service, wait_for
from tts_ops.testing.contracts import LogSinkConformance

JOURNALD = "/lib/systemd/systemd-journald"
SOCKETS = Path("/run/systemd/journal")


@pytest.fixture(scope="module")
def journald(user_manager):
    from tts_ops_systemd.systemctl import journal_running

    if not Path(JOURNALD).exists() or shutil.which("journalctl") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide systemd-journald and journalctl (Debian systemd)")
        pytest.skip("systemd-journald is not installed")
    if journal_running():
        pytest.skip("a journald already runs here; not starting a second one")
    existed = SOCKETS.exists()
    SOCKETS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(journal_running, timeout=10, message="journald to answer")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if not existed:
            shutil.rmtree(SOCKETS, ignore_errors=True)


def test_units_log_to_the_journal_and_every_command_reads_it(journald, tmp_path):
    from tts_ops_systemd import plugin
    from tts_ops_systemd.backend import SystemdBackend

    state = tmp_path / "st"
    backend = SystemdBackend(BackendContext(state_dir=state, options={"scope": "user"}))
    port = free_port()
    name = f"jd-{os.urandom(3).hex()}"
    svc = service(name, engine_type="espeak", port=port)
    plan = backend.plan(svc)
    assert plan.log_file is None  # a journal runs: no append: file
    assert backend.log_sink(svc)[0] == "journald"
    try:
        backend.start(svc)
        import urllib.request

        for _ in range(3):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/synthesize",
                                         data=b'{"text": "journal"}',
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
        lines = wait_for(lambda: [ln for ln in backend.logs(svc, 50, False)
                                  if '"event": "request"' in ln and len(ln) > 0], timeout=10,
                         message="request lines in the journal")
        assert len(lines) >= 3
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"services": [{"name": name, "engine_type": "espeak",
                                                 "port": port, "process_manager": "systemd",
                                                 "options": {"systemd": {"scope": "user"}}}]}))
        out = run_cli(["-c", str(cfg), "--state-dir", str(state), "logs", "stats", "--json"],
                      host=make_host(plugin))
        assert out.exit_code == 0, out.output
        (stats,) = json.loads(out.stdout)
        assert stats["requests"] >= 3 and stats["levels"]["INFO"] >= 5
        assert stats["synth_ms"]["p50"] is not None
        # logs -f follows through journalctl -f; SIGTERM ends both, in one line
        import signal

        import psutil

        follower = subprocess.Popen([sys.executable, "-m", "tts_ops", "-c", str(cfg),
                                     "--state-dir", str(state), "logs", "tail", name, "-f"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert follower.stdout.readline()
            helpers = psutil.Process(follower.pid).children(recursive=True)
            assert [p.name() for p in helpers] == ["journalctl"]
            follower.send_signal(signal.SIGTERM)
            _out, err = follower.communicate(timeout=20)
        finally:
            follower.kill()
        assert err.strip().splitlines() == ["tts-ops: terminated"] and follower.returncode == 143
        assert not any(p.is_running() for p in helpers)  # no journalctl -f left behind
    finally:
        backend.uninstall(svc)
        time.sleep(0.2)


class TestJournaldSinkConformance(LogSinkConformance):
    """The registered ``journald`` sink against the real journal: each sink's unit is a
    transient user unit (``systemd-run --user``) whose output, the lines of a file, goes to
    the journal (``tail -F``); ``append`` writes one more line to the file."""

    @pytest.fixture
    def make_sink(self, journald, tmp_path):
        from tts_ops_systemd import plugin

        factory = make_host(plugin).lookup("log_sink", "journald").factory
        units: list[str] = []

        def make(lines: list[bytes]):
            path = tmp_path / f"lines-{len(units)}.txt"
            path.write_bytes(b"".join(lines))
            unit = f"sink-{os.urandom(4).hex()}.service"
            subprocess.run(["systemd-run", "--user", "--quiet", f"--unit={unit}",
                            "-p", "StandardOutput=journal", "tail", "-n", "+1", "-F",
                            str(path)], check=True, timeout=30)
            units.append(unit)
            sink = factory((unit, "user"))
            if lines:  # the journal has them all before the suite reads them
                # a journalctl every 0.2 s, not every 0.02: fifty a second on 2 cores
                # starved the journald they ask (a CI run timed out waiting)
                try:
                    wait_for(lambda: len(list(sink.lines(lambda _m: None))) >= len(lines),
                             timeout=60, interval=0.2,
                             message="the unit's lines in the journal")
                except AssertionError as exc:  # a CI run: say where the lines went
                    raise AssertionError(f"{exc}\n{_whereabouts(unit)}") from None

            def append(line: bytes) -> None:
                with open(path, "ab") as fh:
                    fh.write(line)

            return sink, append

        yield make
        for unit in units:
            subprocess.run(["systemctl", "--user", "stop", unit], timeout=30, check=False)


def _whereabouts(unit: str) -> str:
    """What systemd and the journal know of ``unit`` and the journal's last entries (the
    manager's own warnings among them), for a test that did not find the unit's lines."""
    def run(*argv: str) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return f"$ {' '.join(argv)} ({done.returncode})\n{done.stdout}{done.stderr}"

    last = subprocess.run(["journalctl", "--no-pager", "-n", "15", "-o", "json"],
                          capture_output=True, text=True, timeout=30)
    entries = [json.loads(line) for line in last.stdout.splitlines() if line.startswith("{")]
    return "\n".join([
        run("systemctl", "--user", "show", unit, "-p",
            "ActiveState,SubState,MainPID,ExecMainStatus,ControlGroup,StandardOutput"),
        f"the journal's last entries ({last.returncode}, {last.stderr.strip()}):",
        *(f"  {e.get('_PID')} {e.get('_SYSTEMD_UNIT') or e.get('_SYSTEMD_USER_UNIT')}:"
          f" {str(e.get('MESSAGE'))[:160]}" for e in entries),
        run("ls", "-l", str(SOCKETS)),
    ])
