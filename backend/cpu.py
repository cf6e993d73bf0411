"""How many CPU threads this process may use, for the thread pools of our own (PNG encoding, per-view bake)."""
from __future__ import annotations

import os

_budget: int | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and container CPU sets
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def set_thread_budget(threads: int) -> None:
    """A batch worker's share of the machine (cores / workers), set once when the worker starts."""
    global _budget
    _budget = max(1, int(threads))


def thread_budget() -> int:
    """The threads our own pools may use: a batch worker's share, else every usable core. Two batch workers that
    each also ran two-thread pools put four threads on two cores, and their items ran 20 % slower side by side
    than alone (python -m bench.batch). Held here rather than read from torch, whose count the bake and the
    tracker lower for a while and which counts physical cores."""
    return _budget or usable_cores()
