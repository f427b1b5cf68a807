"""Running the server: engine first (fail fast), serve, warm up, then say READY=1.

SIGTERM stops accepting at once, answers in-flight requests, closes each keep-alive
connection after its next answer (see `tts_server.guard`), and exits 0 within
``drain_timeout``. With ``workers > 1`` the main process binds the sockets, forks workers
that share them, reports READY=1 once every worker is warm, and forwards SIGTERM to them.

A socket shared with another generation of the service (inherited from the process
manager) is accepted from only after the warm-up: until then the generation already
serving takes every connection from the common queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tts_server.app import ServerState, create_app
from tts_server.audio import check_speech, encode_wav
from tts_server.engines import create_engine
from tts_server.engines.base import EngineUnavailable
from tts_server.guard import ACCEPT_BATCH, Budget, Limits, protocol_class, raise_fd_limit
from tts_server.metrics import worker_died
from tts_server.notify import Notifier
from tts_server.sockets import LISTEN_BACKLOG, listening_sockets

log = logging.getLogger("tts_server")
WARMUP_TEXT = "The text to speech service is warming up."


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 9000
    engine: str = "hybrid"
    log_level: str = "INFO"
    enable_coqui: bool = False
    coqui_model: str | None = None
    max_text: int = 5000
    max_queue: int = 32
    workers: int = 1
    drain_timeout: float = 30.0
    espeak_source: str = "auto"
    limits: Limits = field(default_factory=Limits)
    voice_map: dict[str, str] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    voices_dir: str | None = None
    threads: int = 0  # per worker's engine; 0: the cores divided among the workers
    cache_bytes: int = 0  # the audio cache's bound (0: no cache, no coalescing)
    cache_dir: str | None = None  # made by run(), shared by the workers
    busy: Any = None  # cores each worker's syntheses use now (`tts_server.busy.Busy`, by run())
    wyoming_uri: str | None = None
    wyoming_sock: socket.socket | None = None  # bound by run(), shared by the workers


class _Server(uvicorn.Server):
    """uvicorn, but a SIGTERM drains and exits 0 instead of re-raising the signal."""

    notifier: Notifier | None = None

    def handle_exit(self, sig: int, frame) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
            if self.notifier is not None:
                self.notifier.stopping()
            log.info("draining", extra={"event": "stopping", "signal": sig})


def warm_up(state: ServerState) -> None:
    audio = state.engine.synthesize(WARMUP_TEXT, None, None)
    info = check_speech(encode_wav(audio.pcm, audio.sample_rate))
    log.info(f"warm-up passed: {info.duration_s:.2f}s of audio", extra={"event": "warmup",
             "duration_s": round(info.duration_s, 3), "rms": round(info.rms, 1)})


def serve(settings: Settings, socks: list[socket.socket], notifier: Notifier,
          on_ready=None, shared: bool = False) -> None:
    from tts_server.busy import Busy

    busy = settings.busy if settings.busy is not None else Busy()
    # explicit --threads: fixed; by default a lone request may take every core (piper)
    solo = 0 if settings.threads else (os.cpu_count() or 1)
    engine, note = create_engine(settings.engine, enable_coqui=settings.enable_coqui,
                                 coqui_model=settings.coqui_model,
                                 espeak_source=settings.espeak_source,
                                 voices_dir=settings.voices_dir, threads=settings_threads(settings),
                                 solo_threads=solo, busy=busy)
    cache = None
    if settings.cache_bytes and settings.cache_dir:
        from tts_server.cache import AudioCache

        cache = AudioCache(settings.cache_dir, settings.cache_bytes)
    state = ServerState(engine=engine, engine_note=note, max_text=settings.max_text,
                        max_queue=settings.max_queue, voice_map=dict(settings.voice_map),
                        cache=cache)
    if cache is not None:
        cache.metrics = state.metrics
    app = create_app(state, settings.limits, settings.cors_origins)
    closed = state.metrics.connections_closed
    budget = Budget(settings.limits.max_connections)  # HTTP's and Wyoming's connections
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            backlog=ACCEPT_BATCH,
                            http=protocol_class(settings.limits,
                                                lambda kind: closed.labels(kind).inc(),
                                                budget),
                            timeout_graceful_shutdown=settings.drain_timeout,
                            log_level=settings.log_level.lower())
    server = _Server(config)
    server.notifier = notifier

    async def main() -> None:
        if shared:  # the other generation keeps the common queue until this one is warm
            await _warm_up_or_exit(state)
        serving = asyncio.create_task(server.serve(sockets=socks))
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        if serving.done():
            await serving
            return
        wyoming = None
        if settings.wyoming_sock is not None:
            from tts_server import wyoming_server

            wyoming = await wyoming_server.serve(state, settings.wyoming_sock,
                                                 settings.limits, budget)
        # asyncio listened with the small accept batch as the backlog: give the kernel
        # queue its full size back (the batch stays small)
        for sock in [*socks, *([settings.wyoming_sock] if wyoming is not None else [])]:
            sock.listen(LISTEN_BACKLOG)
        if not shared:
            try:
                await _warm_up_or_exit(state)
            except SystemExit:
                server.should_exit = True
                await serving
                raise
        state.ready = True
        state.metrics.ready.set(1)
        message = f"ready: engine {engine.name} on {', '.join(_address(s) for s in socks)}"
        log.info(message, extra={"event": "ready", "engine": engine.name, "choice": note})
        if on_ready is not None:
            on_ready(message)
        else:
            notifier.ready(message)
        interval = Notifier.watchdog_interval()
        if interval:
            while not serving.done():
                notifier.watchdog()
                await asyncio.wait([serving], timeout=interval)
        await serving
        if wyoming is not None:
            wyoming.close()
        log.info("stopped", extra={"event": "stopped"})

    asyncio.run(main())


async def _warm_up_or_exit(state: ServerState) -> None:
    try:
        await asyncio.to_thread(warm_up, state)
    except Exception as exc:
        log.error(f"warm-up failed: {exc}", extra={"event": "warmup_failed"})
        raise SystemExit(1) from None


def settings_threads(settings: Settings) -> int:
    """Threads each engine may use: the cores shared among the workers (no oversubscription)."""
    if settings.threads:
        return settings.threads
    return max(1, (os.cpu_count() or 1) // max(1, settings.workers))


def _address(sock: socket.socket) -> str:
    addr = sock.getsockname()
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


def run(settings: Settings) -> int:
    notifier = Notifier()
    master = os.getpid()
    usable = raise_fd_limit()
    if settings.limits.max_connections > usable:
        log.warning(f"max connections lowered to {usable}: the descriptor limit allows no more",
                    extra={"event": "limits"})
        settings.limits.max_connections = usable
    if settings.wyoming_uri:
        from tts_server import wyoming_server

        try:
            settings.wyoming_sock = wyoming_server.bind(settings.wyoming_uri)
        except (ValueError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"tts-server: error: --wyoming-uri {settings.wyoming_uri}: {why}",
                  file=sys.stderr)
            return 1
    try:
        socks, shared = listening_sockets(settings.host, settings.port)
    except OSError as exc:
        print(f"tts-server: error: cannot listen on {settings.host}:{settings.port}:"
              f" {exc.strerror}", file=sys.stderr)
        return 1
    if settings.cache_bytes and settings.cache_dir is None:
        from tts_server.cache import make_directory

        settings.cache_dir = made = make_directory()  # before the fork: shared
    else:
        made = None
    from tts_server.busy import Busy

    settings.busy = Busy(settings.workers)
    try:
        if settings.workers <= 1:
            serve(settings, socks, notifier, shared=shared)
            return 0
        return _prefork(settings, socks, notifier, shared)
    except EngineUnavailable as exc:
        print(f"tts-server: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if made is not None and os.getpid() == master:
            import shutil

            shutil.rmtree(made, ignore_errors=True)


RESPAWN_LIMIT = 5  # worker deaths within RESPAWN_WINDOW seconds before the master gives up
RESPAWN_WINDOW = 30.0
PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Make this worker die when ``parent`` (the master) dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)


def _prefork(settings: Settings, socks: list[socket.socket], notifier: Notifier,
             shared: bool) -> int:
    """Fork ``workers`` processes sharing ``socks``; READY=1 when all of them are warm.

    The master keeps the socket to replace a worker that dies (a crash, kill -9) with a new
    one, which warms up before it accepts (the others take every connection meanwhile), so
    the service keeps all its workers and no client meets a cold one; workers that keep
    dying (more than RESPAWN_LIMIT in RESPAWN_WINDOW) take the whole service down for its
    supervisor to restart. Each worker dies with the master.
    """
    os.environ.pop("NOTIFY_SOCKET", None)  # workers must not speak for the main process
    ready_r, ready_w = os.pipe()
    master = os.getpid()
    children: set[int] = set()
    busy, slots = settings.busy, {}  # worker pid -> its byte of `busy`

    # every worker warms before it accepts, at first start as on respawn: a fresh server's
    # cold worker answered 503 after another one's /ready said 200
    def fork_worker(warm_first: bool = True) -> None:
        busy.slot = min(set(range(busy.slots)) - set(slots.values()))
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _die_with(master)
            code = 0
            try:
                serve(settings, socks, Notifier(),
                      on_ready=lambda message: os.write(ready_w, f"R{message}\n".encode()),
                      shared=warm_first)
            except SystemExit as exc:
                code = int(exc.code or 0)
            except EngineUnavailable as exc:  # the master says it, once
                os.write(ready_w, f"E{exc}\n".encode())
                code = 1
            except BaseException:
                log.exception("worker failed")
                code = 1
            os._exit(code)
        children.add(pid)
        slots[pid] = busy.slot

    def gone(pid: int) -> None:
        worker_died(pid)
        if pid in slots:
            busy.clear(slots.pop(pid))  # it may have died mid-synthesis

    for _ in range(settings.workers):
        fork_worker()
    stop = threading.Event()

    def forward(sig, _frame):
        stop.set()
        notifier.stopping()
        for child in list(children):
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    ready, problem = _warm_up(ready_r, settings.workers, children, stop)
    if ready is not None:
        notifier.ready(f"{ready}, {settings.workers} workers")
        _watchdog_thread(notifier, stop)
    elif not stop.is_set():  # a worker died warming up: nothing to serve with
        if problem:
            print(f"tts-server: error: {problem}", file=sys.stderr)
        forward(signal.SIGTERM, None)
        worst = 1
    return max(worst, _keep_workers(children, stop, fork_worker, forward, gone))


def _keep_workers(children: set[int], stop: threading.Event, fork_worker: Any,
                  forward: Any, gone: Any) -> int:
    """Reap workers until none is left: each that dies is replaced by a new one (warm before
    it accepts) unless we stop or too many died lately (then all stop); the worst exit
    code of a stop."""
    worst = 0
    deaths: list[float] = []
    while children:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        gone(pid)
        code = os.waitstatus_to_exitcode(wstatus)
        if stop.is_set():
            worst = max(worst, code if code > 0 else 0)
            continue
        now = time.monotonic()
        deaths = [t for t in deaths if now - t < RESPAWN_WINDOW] + [now]
        how = f"exited {code}" if code >= 0 else f"was killed by signal {-code}"
        if len(deaths) > RESPAWN_LIMIT:
            log.error(f"worker {pid} {how}; {len(deaths)} workers died within"
                      f" {RESPAWN_WINDOW:g}s: stopping", extra={"event": "workers_failing"})
            forward(signal.SIGTERM, None)
            worst = 1
            continue
        log.warning(f"worker {pid} {how}: starting another", extra={"event": "worker_respawn"})
        fork_worker(warm_first=True)  # the others serve meanwhile: no 503 from a cold one
    return worst


def _warm_up(ready_r: int, workers: int, children: set[int],
             stop: threading.Event) -> tuple[str | None, str | None]:
    """Wait until every worker said it is warm: (the first one's ready message, None), or
    (None, why) if one died first (its engine error, if it said one) or we were stopped."""
    import select

    warm: list[str] = []
    buffer = b""
    while len(warm) < workers and not stop.is_set():
        readable, _w, _x = select.select([ready_r], [], [], 0.1)
        if readable:
            buffer += os.read(ready_r, 4096)
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text.startswith("E"):
                    return None, text[1:]
                warm.append(text[1:])
            continue
        pid, _status = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.discard(pid)
            return None, None
    return (warm[0] if len(warm) >= workers else None), None


def _watchdog_thread(notifier: Notifier, stop: threading.Event) -> None:
    """The master feeds the manager's watchdog while its workers serve (each worker's own
    notifier is silent: only the main process may speak)."""
    interval = Notifier.watchdog_interval()
    if not interval:
        return

    def feed() -> None:
        while not stop.wait(interval):
            notifier.watchdog()

    threading.Thread(target=feed, daemon=True, name="watchdog").start()
