"""How a deploy is interrupted and shielded: SIGTERM, SIGHUP and a lost deploy lock act
as SIGINT does (`Interrupted`), and nothing interrupts a rollback or a record."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tts_ops.deploy.context import DeployFailed


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a deploy: handled exactly like SIGINT (Ctrl-C)."""


_SIGNALS = ("SIGTERM", "SIGHUP", "SIGUSR2")


def watch_lock(lock: Any) -> Callable[[], str | None]:
    """A shared registry's deploy lock can be lost while held (the deploy was paused past
    its ttl): it interrupts the deploy (SIGUSR2 to the main thread, as `interruptible`
    handles it) and the returned function says why. Locks without the notion: never."""
    if lock is None or not hasattr(lock, "lost"):
        return lambda: None
    if threading.current_thread() is threading.main_thread():
        import _thread

        lock.on_lost = lambda: _thread.interrupt_main(signal.SIGUSR2)
    return lambda: lock.lost


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Interrupted` in the deploy, as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {name: signal.signal(getattr(signal, name), handler) for name in _SIGNALS}
    try:
        yield
    finally:
        for name, previous in old.items():
            signal.signal(getattr(signal, name), previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP off while a rollback or a record is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", *_SIGNALS)
    old = {name: signal.signal(getattr(signal, name), signal.SIG_IGN) for name in names}
    try:
        yield
    finally:
        for name, previous in old.items():
            signal.signal(getattr(signal, name), previous)


def why(exc: BaseException) -> str:
    if isinstance(exc, DeployFailed):
        return exc.reason
    if isinstance(exc, Interrupted):
        return f"interrupted ({exc.args[0]})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, BrokenPipeError):
        return "interrupted (its output was closed)"
    return f"failed: {type(exc).__name__}: {exc}"
