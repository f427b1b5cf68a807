"""``tts-server`` command line (argparse: start-up stays fast)."""

from __future__ import annotations

import argparse
import os
import sys

from tts_server import __version__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    _check(p, args)
    return args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tts-server", description="Reference text-to-speech HTTP"
                                " server: POST /synthesize returns audio/wav.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--engine", choices=["hybrid", "espeak", "piper", "coqui"], default="hybrid")
    p.add_argument("--log-level", default=os.environ.get("TTS_LOG_LEVEL", "INFO"),
                   type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    p.add_argument("--enable-coqui", action="store_true", help="Let hybrid pick coqui.")
    p.add_argument("--coqui-model", default=None)
    p.add_argument("--max-text", type=int, default=5000, help="Longest text in characters.")
    p.add_argument("--max-queue", type=int, default=32,
                   help="Requests waiting for synthesis beyond which 503 is answered.")
    p.add_argument("--workers", default="auto",
                   help="Processes serving requests: a number, or auto (one per core; each"
                        " engine then gets its share of the cores' threads).")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="Seconds to finish in-flight requests after SIGTERM.")
    p.add_argument("--max-body-bytes", type=int, default=1024 * 1024,
                   help="Largest request body; a larger Content-Length is answered 413 unread.")
    p.add_argument("--header-timeout", type=float, default=30.0,
                   help="Seconds a client has to send a request's headers.")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="Seconds a client has to send a request's body.")
    p.add_argument("--cache-bytes", type=int, default=64 * 1024 * 1024,
                   help="Bound of the audio cache shared by the workers, least recently used"
                        " out (default 64 MiB); 0 turns it off, and with it the one synthesis"
                        " for identical requests at once.")
    p.add_argument("--wyoming-idle-timeout", type=float, default=60.0,
                   help="Seconds a Wyoming connection may wait between events.")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="Open connections per worker beyond which idle ones are closed, else 503.")
    p.add_argument("--max-requests-per-connection", type=int, default=100,
                   help="Requests on one keep-alive connection before it is closed (the"
                        " client reconnects: generations sharing a socket share clients).")
    p.add_argument("--threads", type=int, default=0,
                   help="Threads of each worker's engine (default: the cores divided among"
                        " the workers; more lowers one request's latency, costs throughput).")
    p.add_argument("--voices-dir", default=None, metavar="DIR",
                   help="piper voices: every NAME.onnx beside NAME.onnx.json, named NAME.")
    p.add_argument("--voice-map", action="append", default=[], metavar="OPENAI=VOICE",
                   help="Which voice an OpenAI voice name (alloy, nova, ...) speaks with;"
                        " repeat it. Unmapped names use the engine's default voice.")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="Allow browser pages from ORIGIN (repeat it; * for any).")
    p.add_argument("--wyoming-uri", default=None, metavar="tcp://HOST:PORT",
                   help="Also speak the Wyoming protocol (Home Assistant) there.")
    p.add_argument("--espeak-source", choices=["auto", "system", "bundled"], default="auto",
                   help="Which espeak-ng library: the system one or the espeakng-loader wheel.")
    p.add_argument("--instance", default=os.environ.get("TTS_OPS_INSTANCE"), metavar="ID",
                   help="The discovery record id answered as X-TTS-Instance (tts-ops passes it).")
    p.add_argument("--version", action="version", version=f"tts-server {__version__}")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each value held to its range and shape (``p.error``: one line naming the flag)."""
    if args.workers == "auto":
        args.workers = os.cpu_count() or 1
    elif isinstance(args.workers, str):
        if not args.workers.isdigit():
            p.error(f"--workers must be a number or auto (got {args.workers!r})")
        args.workers = int(args.workers)
    voice_map = {}
    for item in args.voice_map:
        name, sep, voice = item.partition("=")
        if not sep or not name or not voice:
            p.error(f"--voice-map must be OPENAI=VOICE, as alloy=en-us (got {item!r})")
        voice_map[name] = voice
    args.voice_map = voice_map
    if args.instance:
        if not args.instance.isprintable() or len(args.instance) > 200:
            p.error("--instance must be printable and at most 200 characters")
        os.environ["TTS_OPS_INSTANCE"] = args.instance  # every worker answers with it
    for name, low, high in (("port", 0, 65535), ("max_text", 1, 10**7), ("max_queue", 1, 10**6),
                            ("workers", 1, 64), ("max_body_bytes", 1, 2**31),
                            ("header_timeout", 0.001, 3600), ("body_timeout", 0.001, 3600),
                            ("wyoming_idle_timeout", 0.001, 3600),
                            ("cache_bytes", 0, 2**40),
                            ("drain_timeout", 0, 3600), ("max_connections", 1, 10**6),
                            ("max_requests_per_connection", 1, 10**9), ("threads", 0, 1024)):
        value = getattr(args, name)
        if not low <= value <= high:  # False for NaN too
            p.error(f"--{name.replace('_', '-')} must be {low}-{high} (got {value})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    metrics_dir = None
    if args.workers > 1:
        import tempfile

        # before anything imports prometheus_client: it picks its mode then
        metrics_dir = tempfile.mkdtemp(prefix="tts-server-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from tts_server.guard import Limits
    from tts_server.logs import capture_stderr, setup_logging
    from tts_server.server import Settings, run

    setup_logging(args.log_level)
    capture_stderr()
    settings = Settings(host=args.host, port=args.port, engine=args.engine,
                        log_level=args.log_level, enable_coqui=args.enable_coqui,
                        coqui_model=args.coqui_model, max_text=args.max_text,
                        max_queue=args.max_queue, workers=args.workers,
                        drain_timeout=args.drain_timeout, espeak_source=args.espeak_source,
                        voices_dir=args.voices_dir, voice_map=args.voice_map,
                        threads=args.threads, cache_bytes=args.cache_bytes,
                        cors_origins=tuple(args.cors_origin), wyoming_uri=args.wyoming_uri,
                        limits=Limits(max_body=args.max_body_bytes,
                                      header_timeout=args.header_timeout,
                                      body_timeout=args.body_timeout,
                                      max_connections=args.max_connections,
                                      max_requests=args.max_requests_per_connection,
                                      wyoming_idle_timeout=args.wyoming_idle_timeout))
    try:
        code = run(settings)
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(code)
