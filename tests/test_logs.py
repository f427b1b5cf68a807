"""Log management over real files: stats, export, archive, rotate, monitor."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time

import pytest

from tts_ops import hookimpl
from tts_ops.logs.monitor import LogMonitor, Thresholds
from tts_ops.logs.records import parse
from tts_ops.testing import DUMMY, free_port, make_host, run_cli, wait_for
from tts_ops_manual import plugin as manual_plugin


def line(ts: str, level: str, msg: str, **extra) -> str:
    return json.dumps({"ts": ts, "level": level, "logger": "tts_server", "msg": msg, **extra})


@pytest.fixture
def logset(tmp_path):
    """A service log with a gzipped rotated file, a plain rotated file and the live file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "svc.log"
    old = [line(f"2024-01-01T00:00:{i:02d}.000Z", "INFO", "POST /synthesize 200",
                event="request", status=200, synth_ms=float(i + 1)) for i in range(50)]
    with gzip.open(logs / "svc.log.20240101T000000.000000001.gz", "wt") as fh:
        fh.write("\n".join(old) + "\n")
    mid = [line("2024-01-01T00:01:00.000Z", "ERROR", "synthesis failed"),
           line("2024-01-01T00:01:30.000Z", "ERROR", "synthesis failed"),
           line("2024-01-01T00:01:40.000Z", "CRITICAL", "engine lost")]
    (logs / "svc.log.20240101T000100.000000002").write_text("\n".join(mid) + "\n")
    live.write_text("\n".join([
        "2024-01-01 00:02:00,000 WARNING disk almost full",
        "Traceback (most recent call last):",
        line("2024-01-01T00:03:00.000Z", "INFO", "POST /synthesize 200", event="request",
             status=200, synth_ms=100.0),
    ]) + "\n")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "svc", "command": ["true"],
                                             "log_file": str(live)}]}))
    return tmp_path, cfg, live


def cli(tmp_path, cfg, *args, host=None):
    return run_cli(["-c", str(cfg), "--state-dir", str(tmp_path / "st"), *args],
                   host=host or make_host(manual_plugin))


def test_stats_reads_rotated_and_gzipped_files(logset):
    tmp, cfg, _live = logset
    out = cli(tmp, cfg, "logs", "stats", "--json")
    assert out.exit_code == 0, out.output
    (s,) = json.loads(out.stdout)
    assert s["lines"] == 56
    assert s["levels"] == {"INFO": 51, "ERROR": 2, "CRITICAL": 1, "WARNING": 1, "UNKNOWN": 1}
    assert s["unparsed_lines"] == 1  # the traceback line is kept as raw, not dropped
    assert s["requests"] == 51
    assert s["synth_ms"]["p50"] == pytest.approx(26, rel=0.02)
    assert s["synth_ms"]["p99"] == pytest.approx(100, rel=0.02)  # the 51st of 51
    assert s["top_errors"] == [{"msg": "synthesis failed", "count": 2},
                               {"msg": "engine lost", "count": 1}]
    assert (s["first"], s["last"]) == ("2024-01-01T00:00:00.000Z", "2024-01-01T00:03:00.000Z")
    assert s["errors"] == 3 and s["errors_per_minute"] == 1.0


def test_stats_time_window(logset):
    tmp, cfg, _ = logset
    out = cli(tmp, cfg, "logs", "stats", "--json", "--since", "2024-01-01T00:01:00Z",
              "--until", "2024-01-01T00:02:30Z")
    (s,) = json.loads(out.stdout)
    assert s["lines"] == 4 and s["requests"] == 0


def test_corrupt_and_unreadable_files_are_skipped_with_exit_1(logset):
    tmp, cfg, live = logset
    (live.parent / "svc.log.20240101T000200.000000003.gz").write_bytes(
        gzip.compress(b"x" * 1000)[:30] + b"garbage")
    (live.parent / "svc.log.20240101T000300.000000004").mkdir()
    out = cli(tmp, cfg, "logs", "stats", "--json")
    assert out.exit_code == 1
    skipped = [ln for ln in out.stderr.splitlines() if ln.startswith("tts-ops: skipped:")]
    assert len(skipped) == 2
    assert any("corrupt" in s for s in skipped) and any("cannot read" in s for s in skipped)
    assert json.loads(out.stdout)[0]["lines"] == 56  # the rest was still counted


def test_bad_times_and_services(logset):
    tmp, cfg, _ = logset
    bad = cli(tmp, cfg, "logs", "export", "x.json", "--start-time", "the dawn of time")
    assert bad.exit_code == 2 and "--start-time 'the dawn of time': not a time" in bad.stderr
    unknown = cli(tmp, cfg, "logs", "stats", "nope")
    assert unknown.exit_code == 2 and "unknown service 'nope'" in unknown.stderr


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_export_formats_and_filters(logset, fmt):
    tmp, cfg, _ = logset
    target = tmp / f"out.{fmt}"
    out = cli(tmp, cfg, "logs", "export", str(target), "--level", "ERROR", "--format", fmt,
              "--start-time", "2024-01-01T00:00:30Z")
    assert out.exit_code == 0, out.output
    text = target.read_text()
    if fmt == "json":
        rows = json.loads(text)
    elif fmt == "jsonl":
        rows = [json.loads(x) for x in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["msg"] for r in rows] == ["synthesis failed", "synthesis failed", "engine lost"]
    assert [r["level"] for r in rows] == ["ERROR", "ERROR", "CRITICAL"]


def test_archive_packs_rotated_files_with_a_manifest(logset):
    tmp, cfg, live = logset
    rotated = sorted(p for p in live.parent.iterdir() if p != live)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in rotated}
    live_before = live.read_bytes()
    out = cli(tmp, cfg, "logs", "archive", "--output", str(tmp / "arch"))
    assert out.exit_code == 0, out.output
    (archive,) = (tmp / "arch").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert {e["name"].split("/")[1]: e["sha256"] for e in manifest["files"]} == digests
        for entry in manifest["files"]:
            data = tar.extractfile(entry["name"]).read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert [p for p in live.parent.iterdir()] == [live]  # rotated ones gone, live kept
    assert live.read_bytes() == live_before


def test_interrupted_archive_leaves_nothing_partial_and_deletes_nothing(logset, monkeypatch):
    tmp, cfg, live = logset
    before = sorted(p.name for p in live.parent.iterdir())
    original = tarfile.TarFile.add
    calls = []

    def failing_add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived mid-archive
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "add", failing_add)
    cli(tmp, cfg, "logs", "archive", "--output", str(tmp / "arch"))
    assert list((tmp / "arch").iterdir()) == []
    assert sorted(p.name for p in live.parent.iterdir()) == before


def test_archive_older_than_keeps_recent_files(logset):
    tmp, cfg, live = logset
    out = cli(tmp, cfg, "logs", "archive", "--older-than", "1d", "--output", str(tmp / "a"))
    assert "nothing to archive" in out.stdout
    assert len(list(live.parent.iterdir())) == 3


def test_rotate_a_running_manual_service(tmp_path):
    port = free_port()
    log = tmp_path / "r.log"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{
        "name": "r", "port": port, "notify": True, "log_file": str(log),
        "command": [*DUMMY, "--port", str(port), "--print", "before rotation"]}]}))
    try:
        assert cli(tmp_path, cfg, "start").exit_code == 0
        out = cli(tmp_path, cfg, "logs", "rotate")
        assert "r: rotated" in out.stdout
        gz = wait_for(lambda: list(tmp_path.glob("r.log.*.gz")), message="the gzipped file")
        assert b"before rotation" in gzip.decompress(gz[0].read_bytes())
        assert (log.stat().st_mode & 0o777) == 0o640
    finally:
        cli(tmp_path, cfg, "stop", "--force")


def test_monitor_alerts_on_errors_pattern_latency_and_survives_rotation(tmp_path):
    path = tmp_path / "m.log"
    path.write_text("")
    alerts = []
    mon = LogMonitor({"m": path}, Thresholds(error_rate=5, pattern=None, latency_p95=50,
                                             window=60), alerts.append)
    t = threading.Thread(target=mon.run, kwargs={"duration": 15}, daemon=True)
    t.start()
    time.sleep(0.3)
    with open(path, "a") as fh:
        for _ in range(3):
            fh.write(line("2024-01-01T00:00:00Z", "ERROR", "boom") + "\n")
        fh.flush()
    time.sleep(0.5)
    assert alerts == []  # 3 errors/min: under the threshold
    os.rename(path, tmp_path / "m.log.1")  # rotated under the monitor
    with open(path, "a") as fh:
        for _ in range(5):
            fh.write(line("2024-01-01T00:00:00Z", "ERROR", "boom") + "\n")
        for ms in range(30):
            fh.write(line("2024-01-01T00:00:00Z", "INFO", "ok", synth_ms=200.0 + ms) + "\n")
    wait_for(lambda: {a["kind"] for a in alerts} >= {"error_rate", "latency_p95"}, timeout=5,
             message="both alerts")
    mon.stop.set()
    t.join(5)
    rate = next(a for a in alerts if a["kind"] == "error_rate")
    assert rate["value"] == 6.0 and rate["threshold"] == 5  # raised by the 6th error
    assert sum(a["kind"] == "error_rate" for a in alerts) == 1  # no repeat inside the window


@pytest.mark.slow
def test_monitor_cli_pattern_alert_reaches_the_hook(tmp_path):
    class Alerts:
        def __init__(self):
            self.seen = []

        @hookimpl
        def tts_ops_alert(self, alert):
            self.seen.append(alert)

    log = tmp_path / "p.log"
    log.write_text("")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"services": [{"name": "p", "command": ["true"],
                                             "log_file": str(log)}]}))
    plugin = Alerts()

    def writer():
        time.sleep(1.0)
        with open(log, "a") as fh:
            fh.write("2024-01-01 00:00:00 ERROR out of memory\n")

    threading.Thread(target=writer, daemon=True).start()
    out = cli(tmp_path, cfg, "logs", "monitor", "--pattern", "out of memory", "--duration", "3",
              "--json", host=make_host(manual_plugin, plugin))
    assert out.exit_code == 0
    (alert,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert alert["kind"] == "pattern" and "out of memory" in alert["message"]
    assert [a["kind"] for a in plugin.seen] == ["pattern"]
    bad = cli(tmp_path, cfg, "logs", "monitor", "--pattern", "([", "--duration", "1")
    assert bad.exit_code == 2 and "not a valid regex" in bad.stderr


@pytest.mark.parametrize(("text", "level", "has_ts"), [
    ("2024-01-01 00:00:00,123 ERROR boom", "ERROR", True),
    ("[2024-01-01T00:00:00+02:00] [warn] disk", "WARNING", True),
    ("Jan  5 10:11:12 host app[1]: CRIT down", "CRITICAL", True),
    ('{"time": 1700000000, "levelname": "info", "message": "hi"}', "INFO", True),
    ("plain words", None, False),
])
def test_plain_text_and_other_json_lines(text, level, has_ts):
    rec = parse(text, "s")
    assert rec.level == level and (rec.ts is not None) == has_ts
    assert rec.raw == text


ODD = ['{"ts": 1e999, "level": "INFO", "msg": "from the far future"}',
       '{"ts": -1e20, "level": "INFO", "msg": "before time"}',
       '{"ts": NaN, "level": "INFO", "msg": "not a time"}',
       '{"ts": 1' + "0" * 400 + ', "level": "INFO", "msg": "a very long int"}',
       line("2024-01-01T00:04:00.000Z", "INFO", "POST /synthesize 200", event="request",
            synth_ms=1e999),
       '{"ts": "2024-01-01T00:04:01.000Z", "level": "INFO", "msg": "x", "synth_ms": NaN}',
       '{"ts": "2024-01-01T00:04:02.000Z", "level": "INFO", "msg": "x", "synth_ms": -5}',
       '{"ts": "2024-01-01T00:04:03.000Z", "level": "INFO", "msg": "x", "other": Infinity}',
       '{"level": "INFO", "ts": "2024-01-01T00:04:04.000Z", "msg": "x", "synth_ms": 1e309}']


def test_records_with_impossible_numbers_are_counted_and_skipped(logset):
    tmp, cfg, live = logset
    with live.open("a") as fh:
        fh.write("\n".join(ODD) + "\n")
    stats = cli(tmp, cfg, "logs", "stats", "--json")
    assert stats.exit_code == 0, stats.output
    [row] = json.loads(stats.stdout)
    # stats reads ts, level and synth_ms: the record whose impossible number is in a field
    # it never reads ("other") is counted like any other, on the fast path and off it (the
    # one parser, lenient); export writes every field, so there it is malformed
    assert row["malformed_lines"] == len(ODD) - 1
    assert row["lines"] == 57  # the logset's 56 lines and the "other": Infinity one
    text = cli(tmp, cfg, "logs", "stats")
    assert f"{len(ODD) - 1} malformed lines skipped" in text.stdout
    for fmt in ("json", "jsonl", "csv"):
        out = cli(tmp, cfg, "logs", "export", str(tmp / f"all.{fmt}"), "--format", fmt)
        assert out.exit_code == 0, out.output
        assert f"skipped {len(ODD)} malformed records" in out.stderr
        assert "Infinity" not in (tmp / f"all.{fmt}").read_text()


def test_export_and_archive_are_no_more_readable_than_the_logs(logset):
    tmp, cfg, _live = logset
    victim = tmp / "victim"
    victim.write_text("precious\n")
    target = tmp / "out.jsonl"
    target.symlink_to(victim)  # a planted link is replaced, never written through
    assert cli(tmp, cfg, "logs", "export", str(target), "--format", "jsonl").exit_code == 0
    assert not target.is_symlink() and victim.read_text() == "precious\n"
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert cli(tmp, cfg, "logs", "archive", "--output", str(tmp / "arch")).exit_code == 0
    (archive,) = (tmp / "arch").glob("*.tar.gz")
    assert os.stat(archive).st_mode & 0o777 == 0o640
