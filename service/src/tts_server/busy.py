"""How many cores each worker's syntheses use now, so that a synthesis takes every core
only when no other worker runs one, and a worker runs syntheses side by side while the
other workers leave cores free (piper's adaptive threads).

One byte per worker in memory shared by all of them (made by the master before it forks):
each worker writes only its own byte, so no lock is needed (a lock held by a worker killed
with SIGKILL would stop every other one), and the master clears the byte of a worker that
died, so a crash mid-synthesis never leaves a core counted as busy. The count is a hint:
two workers that start at the same instant may both see the other idle.
"""

from __future__ import annotations

import multiprocessing
from typing import Any


class Busy:
    def __init__(self, workers: int = 1) -> None:
        self._flags: Any = multiprocessing.RawArray("b", max(1, workers))
        self.slot = 0  # this worker's byte: set by the master before it forks the worker

    def others(self) -> int:
        """The cores the other workers' syntheses use now."""
        return sum(used for i, used in enumerate(self._flags) if i != self.slot)

    def using(self, cores: int) -> None:
        """The cores this worker's syntheses use now."""
        self._flags[self.slot] = max(0, min(cores, 127))

    def clear(self, slot: int) -> None:
        """The master's: the worker at ``slot`` is gone."""
        self._flags[slot] = 0

    @property
    def slots(self) -> int:
        return len(self._flags)
