"""Timing helpers, the result record, and a throwaway supervisord for comparisons."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass
class Result:
    name: str
    figure: float
    unit: str
    anchor: float | None = None
    anchor_label: str = ""
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.figure / self.anchor if self.anchor else None


def median_run(cmd: list[str], repeat: int, env: dict | None = None) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def Supervisord():
    """A private supervisord (the supervisor plugin's helper), started by the caller."""
    from tts_ops_supervisor.daemon import PrivateSupervisord

    return PrivateSupervisord()


def tts_ops(*args: str, cwd: Path | None = None, env: dict | None = None) -> list[str]:
    return [str(VENV_BIN / "tts-ops"), *args]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_OPS_")}
    env.update(extra)
    return env
