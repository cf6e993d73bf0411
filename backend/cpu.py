"""How many CPU threads this process may use, for the thread pools of our own (PNG encoding, per-view bake)."""
from __future__ import annotations


def thread_budget() -> int:
    """torch's thread count: one per core in a single job, cores / workers in a batch worker (batch.worker pins
    it). Our own pools follow it: two batch workers that each also ran two-thread pools put four threads on two
    cores, and their items ran 20 % slower side by side than alone (python -m bench.batch)."""
    import torch

    return max(1, torch.get_num_threads())
