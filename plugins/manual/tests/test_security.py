"""The manual backend against a hostile local user: links, secrets, the notify socket.

The state and log dirs live in a world-traversable directory under /tmp (pytest's own
tmp dirs are 0700, which would make every check pass for the wrong reason), and the other
user is ``nobody`` through ``setpriv``, running the system Python.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tts_ops.backend import BackendContext, State
from tts_ops.errors import ConfigError
from tts_ops.statefile import UnsafeFile, atomic_write_bytes
from tts_ops.testing import DUMMY, free_port, service, wait_for
from tts_ops_manual.backend import ManualBackend
from tts_ops_manual.supervise import backoff_delay

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.fail("these tests need setpriv (util-linux) and /usr/bin/python3")
    return subprocess.run([*NOBODY, SYSTEM_PYTHON, "-c", code, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def shared(tmp_path):
    """A directory every user may enter (0755), as /var/lib or /tmp/tts-service-logs are."""
    path = Path(tempfile.mkdtemp(prefix="tts-ops-sec-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backend(shared, events) -> ManualBackend:
    return ManualBackend(BackendContext(state_dir=shared / "state", emit=events))


@pytest.fixture
def victim(shared):
    """A file another user wants tts-ops to overwrite, append to or chmod."""
    path = shared / "victim"
    path.write_text("precious\n")
    os.chmod(path, 0o600)
    return path


def unchanged(path: Path) -> bool:
    return path.read_text() == "precious\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def sleeper(name: str, **fields):
    fields.setdefault("command", [sys.executable, "-c", "import time; time.sleep(60)"])
    return service(name, notify=False, health_check="none", start_seconds=0.2, **fields)


def test_a_symlink_planted_as_the_log_file_is_refused_not_followed(backend, shared, victim):
    log_dir = shared / "logs"
    log_dir.mkdir(mode=0o777)
    os.chmod(log_dir, 0o1777)  # world-writable, as /tmp/tts-service-logs often is
    (log_dir / "svc.log").symlink_to(victim)
    svc = sleeper("svc", log_file=str(log_dir / "svc.log"))
    with pytest.raises(ConfigError, match=r"^svc: log_file .*svc.log: is a symbolic link"):
        backend.start(svc)
    assert unchanged(victim)
    assert backend.status([svc])[0].state == State.STOPPED


def test_a_foreign_file_planted_as_the_log_file_is_refused(backend, shared):
    log_dir = shared / "logs"
    log_dir.mkdir()
    os.chmod(log_dir, 0o1777)
    planted = log_dir / "svc.log"
    as_nobody("import sys; open(sys.argv[1], 'w').write('mine\\n')", str(planted))
    svc = sleeper("svc", log_file=str(planted))
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        backend.start(svc)
    assert planted.read_text() == "mine\n"


def test_a_symlink_planted_as_the_pid_file_is_replaced_not_followed(backend, shared, victim):
    (shared / "svc.pid").symlink_to(victim)
    svc = sleeper("svc", pid_file=str(shared / "svc.pid"))
    try:
        st = backend.start(svc)
        pid_file = shared / "svc.pid"
        assert not pid_file.is_symlink()
        assert pid_file.read_text().strip() == str(st.pid)
        assert unchanged(victim)
    finally:
        backend.stop(svc, force=True)


def test_the_atomic_writer_never_writes_through_a_planted_temp_name(shared, victim,
                                                                    monkeypatch):
    target = shared / "state.json"
    fixed = b"\x00\x01\x02\x03"
    guess = shared / f".{target.name}.{os.getpid()}.{fixed.hex()}.tmp"
    guess.symlink_to(victim)
    names = iter([fixed, b"\x04\x05\x06\x07"])
    monkeypatch.setattr(os, "urandom", lambda n: next(names))
    atomic_write_bytes(target, b"new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert unchanged(victim)


def test_the_log_is_truncated_through_its_descriptor_when_no_backups_are_kept(shared, victim):
    from tts_ops.logwriter import RotatingLogWriter

    log = shared / "logs" / "x.log"
    writer = RotatingLogWriter(log, max_bytes=20, backups=0, compress=False)
    writer.write(b"0123456789abcdef\n")
    log.unlink()
    log.symlink_to(victim)  # swapped in after the open: the writer keeps its own file
    writer.write(b"0123456789abcdef\n")
    writer.close()
    assert unchanged(victim)
    with pytest.raises(UnsafeFile, match="is a symbolic link"):
        RotatingLogWriter(log, max_bytes=20, backups=0)


def test_another_user_can_read_no_secret_under_the_state_and_log_dirs(backend, shared):
    secret = f"hunter2-{uuid.uuid4().hex}"
    svc = sleeper("svc", env={"API_KEY": secret},
                  command=[sys.executable, "-c", "import os, time; print('key is',"
                           " os.environ['API_KEY'], flush=True); time.sleep(60)"])
    try:
        backend.start(svc)
        wait_for(lambda: any(secret in line for line in backend.logs(svc, 10, False)))
        state = shared / "state"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        spec = backend.service_dir("svc") / "spec.json"
        assert secret in spec.read_text() and stat.S_IMODE(spec.stat().st_mode) == 0o600
        # even with a state dir someone opened up, every file keeps its own mode
        os.chmod(state, 0o755)
        for directory in [p for p in state.rglob("*") if p.is_dir()]:
            os.chmod(directory, 0o755)
        found = as_nobody(
            "import os, sys\n"
            "for root, _dirs, files in os.walk(sys.argv[1]):\n"
            "    for f in files:\n"
            "        try: data = open(os.path.join(root, f), 'rb').read()\n"
            "        except OSError: continue\n"
            "        if sys.argv[2].encode() in data: print(os.path.join(root, f))\n",
            str(state), secret)
        assert found.returncode == 0, found.stderr
        assert found.stdout == "", f"readable by nobody: {found.stdout}"
    finally:
        backend.stop(svc, force=True)


def test_a_state_dir_other_users_may_write_is_refused(shared, events):
    open_dir = shared / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    backend = ManualBackend(BackendContext(state_dir=open_dir, emit=events))
    with pytest.raises(ConfigError, match=r"other users may write to it \(mode 0777\)"):
        backend.start(sleeper("svc"))


SEND = """
import socket, sys, time
addr, seconds = sys.argv[1], float(sys.argv[2])
sent = 0
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for message in sys.argv[3:]:
            s.sendto(message.encode(), "\\0" + addr[1:])
            sent += 1
        time.sleep(0.1)
print(sent)
"""


@pytest.mark.slow
def test_another_user_cannot_drive_a_service_through_its_notify_socket(backend):
    import threading

    port = free_port()
    # READY=1 from the service itself comes only after 30 s, and it feeds no watchdog
    # before that: anything the supervisor acts on sooner came from someone else
    svc = service("notified", command=[*DUMMY, "--port", str(port), "--ready-after", "30"],
                  port=port, notify=True, start_timeout=60, watchdog_sec=2)
    backend_dir = backend.service_dir(svc.name)
    starter = threading.Thread(target=_try, args=(backend.start, svc))
    starter.start()
    try:
        status = wait_for(lambda: _status(backend_dir).get("pid") and _status(backend_dir))
        addr = _notify_address(status["pid"])
        # nobody says READY, sets a status and feeds the 2 s watchdog for 5 s
        sent = as_nobody(SEND, addr, "5", "READY=1\nSTATUS=pwned", "WATCHDOG=1",
                         "EXTEND_TIMEOUT_USEC=999999999")
        assert int(sent.stdout) > 10, sent.stderr
        now = _status(backend_dir)
        assert not now["ready"] and now["state"] in ("starting", "backoff"), now
        assert now["status_text"] != "pwned"
        # the watchdog was not fed by nobody's WATCHDOG=1: it fired while nobody sent
        assert "watchdog timeout" in (now["reason"] or ""), now
    finally:
        backend.stop(svc, force=True)
        starter.join(timeout=70)


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # the start is expected to end when the test stops it
        return exc


def _status(directory: Path) -> dict:
    try:
        return json.loads((directory / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _notify_address(service_pid: int) -> str:
    env = Path(f"/proc/{service_pid}/environ").read_bytes().split(b"\0")
    for item in env:
        if item.startswith(b"NOTIFY_SOCKET="):
            return item.split(b"=", 1)[1].decode()
    raise AssertionError("the service has no NOTIFY_SOCKET")


def test_backoff_never_overflows_however_many_failures():
    assert backoff_delay(5.0, 10.0, 10_001, 86400.0) == 86400.0
    assert backoff_delay(0.001, 1.0, 10_001, 60.0) == 0.001
    assert backoff_delay(1.0, 2.0, 3, 60.0) == 4.0
    assert backoff_delay(0.0, 10.0, 500, 60.0) == 0.0


@pytest.mark.slow
def test_a_crash_loop_past_a_thousand_failures_ends_in_failed(backend):
    svc = service("loop", command=["/bin/false"], notify=False, health_check="none",
                  restart_delay=0.001, restart_delay_max=0.002, restart_backoff=10,
                  restart_window=86400, max_restarts=1000, start_timeout=120)
    try:
        with pytest.raises(Exception, match="gave up after 1000 restarts"):
            backend.start(svc)
        assert backend.status([svc])[0].state == State.FAILED
    finally:
        backend.stop(svc, force=True)


def test_a_user_removed_after_validation_fails_the_start_in_one_line(backend):
    svc = sleeper("gone", user="nobody")
    object.__setattr__(svc, "user", "no-such-user-tts-ops")  # as if deleted since
    with pytest.raises(Exception, match="user 'no-such-user-tts-ops' does not exist"):
        backend.start(svc)
    assert backend.status([svc])[0].state == State.FAILED


FETCH = """
import socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(sys.argv[1])
    _msg, fds, _f, _a = socket.recv_fds(conn, 64, 1)
    print(len(fds))
except OSError as exc:
    print(f"refused: {exc.strerror}")
"""


def test_another_user_cannot_take_a_services_listening_socket(shared):
    from tts_ops import sockets

    state = shared / "state"
    state.mkdir(mode=0o755)
    port = free_port()
    path = sockets.ensure_holder(state, "held", "127.0.0.1", port)
    try:
        assert os.stat(path.parent).st_mode & 0o777 == 0o700
        assert os.stat(path).st_mode & 0o777 == 0o600
        denied = as_nobody(FETCH, str(path))
        assert denied.stdout.startswith("refused: Permission denied"), denied
        # even with the directory and the socket opened up by mistake, the holder checks
        # the asker's credentials and passes nothing
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o777)
        unchecked = as_nobody(FETCH, str(path))
        assert unchecked.stdout.strip() == "0", unchecked
        fd = sockets.fetch(path)  # the owner still gets it
        os.close(fd)
    finally:
        sockets.release(state, "held")
    assert sockets.holder_info(state, "held") is None
