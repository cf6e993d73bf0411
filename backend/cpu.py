"""How many CPU threads this process may use: for the thread pools of our own (PNG encoding, per-view bake), and
torch held to one thread where its ops are too small to share."""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def one_torch_thread(device="cpu"):
    """torch on one CPU thread for the duration, the count restored after; nothing for another device. Already
    at one (a caller that holds it there while its own threads run), it leaves the count alone: two threads
    each restoring it behind the other's back would leave it wrong."""
    import torch

    old = torch.get_num_threads()
    if torch.device(device).type != "cpu" or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
