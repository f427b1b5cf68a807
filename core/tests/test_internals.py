"""Core helpers that hot paths rely on: config cache, entry-point scan, /proc, spawn."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tts_ops.config.loader import load_config
from tts_ops.errors import ConfigError
from tts_ops.procinfo import children, descendants, is_alive, start_ticks, usage
from tts_ops.spawn import spawn


def test_validated_config_is_cached_and_edits_revalidate(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "port": 9100, "log_file": "/x/a.log"}]}))
    cache = tmp_path / "cache"
    first = load_config(str(cfg), cache_dir=cache)
    assert not first.from_cache
    first.remember()
    second = load_config(str(cfg), cache_dir=cache)
    assert second.from_cache
    a, b = first.config.services[0], second.config.services[0]
    for attr in ("argv", "health_url"):
        assert getattr(a, attr)() == getattr(b, attr)()
    assert (a.log_file, a.speaks_notify, a.uses_port) == (b.log_file, b.speaks_notify, b.uses_port)
    with pytest.raises(AttributeError):
        b.port = 1
    cfg.write_text(json.dumps({"services": [{"name": "a", "port": 70000}]}))
    with pytest.raises(ConfigError, match=r"services\[0\]\.port: must be 1-65535"):
        load_config(str(cfg), cache_dir=cache)


def test_different_validation_plugins_do_not_share_the_cache(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a"}]}))
    cache = tmp_path / "cache"
    load_config(str(cfg), cache_dir=cache, salt="").remember()
    assert not load_config(str(cfg), cache_dir=cache, salt="policy 1.0").from_cache


def test_status_from_the_cache_does_not_import_pydantic(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "a", "command": ["true"]}]}))
    code = ("import sys; from tts_ops.cli import create_cli\n"
            "try:\n    create_cli()(['-c', sys.argv[1], '--state-dir', sys.argv[2], 'status',"
            " '--process-manager', 'manual'], standalone_mode=False)\nexcept SystemExit: pass\n"
            "print('PYDANTIC', 'pydantic' in sys.modules, file=sys.stderr)")
    args = [sys.executable, "-c", code, str(cfg), str(tmp_path / "st")]
    first = subprocess.run(args, capture_output=True, text=True)
    second = subprocess.run(args, capture_output=True, text=True)
    assert "PYDANTIC True" in first.stderr
    assert "PYDANTIC False" in second.stderr, second.stderr


def test_entry_point_scan_matches_importlib_metadata():
    from importlib import metadata

    from tts_ops.entrypoints import entry_points

    for group in ("tts_ops", "console_scripts", "pytest11"):
        ours = sorted((e.name, e.value, e.dist_name, e.dist_version) for e in entry_points(group))
        theirs = sorted((e.name, e.value, e.dist.name, e.dist.version)
                        for e in metadata.entry_points(group=group))
        assert ours == theirs, group


def test_usage_matches_psutil():
    proc = subprocess.Popen([sys.executable, "-c", "x = bytearray(30 * 2**20); import time;"
                             " time.sleep(30)"])
    try:
        time.sleep(0.5)
        cpu, rss = usage([proc.pid])
        assert abs(rss - psutil.Process(proc.pid).memory_info().rss) < 256 * 1024
        assert rss > 30 * 2**20 and cpu >= 0
        assert usage([2**22 + 7]) is None
    finally:
        proc.kill()
        proc.wait()


def test_children_and_descendants():
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    found: list[int] = []
    try:
        found = _wait(lambda: len(children(proc.pid)) == 2 and children(proc.pid))
        assert set(found) == {p.pid for p in psutil.Process(proc.pid).children()}
        assert proc.pid in children(os.getpid())
        assert set(descendants(proc.pid)) == set(found)
    finally:
        proc.kill()
        proc.wait()
        for pid in found:
            os.kill(pid, 9)


def _wait(pred, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_pid_plus_start_time():
    me = os.getpid()
    assert is_alive(me, start_ticks(me))
    assert not is_alive(me, start_ticks(me) + 1)
    assert not is_alive(None, 5)


def test_spawn_reports_exec_failure_in_the_parent(tmp_path):
    with pytest.raises(OSError) as info:
        spawn([str(tmp_path / "missing")], env=dict(os.environ))
    assert info.value.errno == errno.ENOENT
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(OSError) as info:
        spawn([str(script)], env=dict(os.environ))
    assert info.value.errno == errno.EACCES


def test_spawn_new_group_and_output(tmp_path):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        pid = spawn(["sh", "-c", "echo $$ $(ps -o pgid= -p $$)"], env=dict(os.environ),
                    stdout=fd, new_group=True)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    shown_pid, pgid = out.read_text().split()
    assert shown_pid == pgid == str(pid)


def test_state_dir_resolution(monkeypatch, tmp_path):
    from tts_ops.config.paths import resolve_state_dir

    monkeypatch.delenv("TTS_OPS_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir() == tmp_path / "xdg" / "tts-ops"
    monkeypatch.setenv("TTS_OPS_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env"
    assert resolve_state_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.delenv("TTS_OPS_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME")
    expected = ("/var/lib/tts-ops" if os.geteuid() == 0
                else str(Path.home() / ".local" / "state" / "tts-ops"))
    assert str(resolve_state_dir()) == expected


def test_follow_survives_rotation_and_loses_nothing(tmp_path):
    import threading

    from tts_ops.logread import follow
    from tts_ops.logwriter import RotatingLogWriter

    path = tmp_path / "f.log"
    writer = RotatingLogWriter(path, max_bytes=2000, backups=50, compress=False)
    writer.write(b"before follow\n")
    seen: list[str] = []
    done = threading.Event()

    def reader():
        for line in follow(path, poll=0.01, stop=done.is_set):
            seen.append(line)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    for i in range(500):
        writer.write(f"line {i:05d}\n".encode())
        if i % 50 == 0:
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while len(seen) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    done.set()
    t.join(5)
    writer.close()
    assert seen == [f"line {i:05d}" for i in range(500)]


def test_tail_reads_across_rotated_and_gzipped_files(tmp_path):
    import gzip

    from tts_ops.logread import tail
    from tts_ops.logwriter import RotatingLogWriter, rotated_files

    path = tmp_path / "t.log"
    writer = RotatingLogWriter(path, max_bytes=100, backups=50, compress=False)
    for i in range(30):
        writer.write(f"entry {i:03d}\n".encode())
    writer.close()
    first = rotated_files(path)[0]
    with open(first, "rb") as src, gzip.open(f"{first}.gz", "wb") as dst:
        dst.write(src.read())
    first.unlink()
    assert tail(path, 30) == [f"entry {i:03d}" for i in range(30)]
    assert tail(path, 3) == ["entry 027", "entry 028", "entry 029"]


def test_write_lines_keeps_every_line_once_in_order_and_rotates_only_between_lines(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tts_ops.logwriter import RotatingLogWriter, rotated_files

    lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x") + b"\n"),
                     min_size=1, max_size=60)

    @settings(max_examples=150, deadline=None)
    @given(lines, st.integers(min_value=1, max_value=120), st.data())
    def check(all_lines, max_bytes, data):
        import uuid

        path = tmp_path / f"{uuid.uuid4().hex}.log"
        writer = RotatingLogWriter(path, max_bytes, backups=10_000, compress=False)
        i = 0
        while i < len(all_lines):  # whole lines, in blocks of any size, as reads give them
            n = data.draw(st.integers(min_value=1, max_value=len(all_lines) - i))
            writer.write_lines(b"".join(all_lines[i:i + n]))
            i += n
        writer.close()
        files = [*rotated_files(path), path]
        contents = [f.read_bytes() for f in files if f.exists()]
        assert b"".join(contents) == b"".join(all_lines)
        for content in contents:
            assert content == b"" or content.endswith(b"\n")  # split only between lines
            assert len(content) <= max_bytes or content.count(b"\n") == 1

    check()
