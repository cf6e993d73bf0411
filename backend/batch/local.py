"""The embedded default: a pool of worker processes on this machine, sized to its cores and memory.

pebble's ProcessPool rather than concurrent.futures: when a worker dies (the kernel's OOM killer, a
crash in native code) pebble fails only the item that worker was running (ProcessExpired) and starts a
new worker, where ProcessPoolExecutor breaks the whole pool and every queued item with it; pebble also
stops running items on cancel, which Ctrl-C needs.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from pathlib import Path

from ..cpu import usable_cores
from .worker import init_local_worker, run_item

# A worker's peak resident memory on a photo job, measured by `python -m bench.batch` (docs/benchmarks.md,
# Batch): 4.0-4.8 GB with the default 2048 px texture bake, 0.55 GB without a texture (~1.3 GB in a worker
# that baked a texture before: freed memory stays with the process); budgets leave some room.
MEMORY_PER_WORKER_GB = {"texture": 5.0, "no_texture": 1.5}


def available_memory_gb() -> float | None:
    """MemAvailable, or the container's memory limit minus its use when that is smaller; None if unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) / 1024 ** 2
    except (OSError, ValueError):
        pass
    try:  # cgroup v2
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            left = (int(limit) - used) / 1024 ** 3
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


def pool_size(n_items: int, memory_per_worker_gb: float, workers: int | None = None,
              gpus: int = 0) -> tuple[int, int, str]:
    """(workers, threads per worker, why) for `n_items` items."""
    cores = usable_cores()
    if workers:
        why = "--workers"
    elif gpus:
        workers, why = gpus, f"one per GPU ({gpus})"
    else:
        workers, why = cores, f"{cores} cores"
        mem = available_memory_gb()
        if mem is not None and int(mem // memory_per_worker_gb) < workers:
            workers = int(mem // memory_per_worker_gb)
            why = f"{mem:.1f} GB available / {memory_per_worker_gb:g} GB per worker"
    workers = max(1, min(workers, n_items))
    return workers, max(1, cores // workers), why


class LocalPool:
    """Runs run_item tasks in `workers` spawned processes; results() yields records as items finish."""

    kind = "local"

    def __init__(self, workers: int, threads: int, gpus: int = 0):
        from pebble import ProcessPool

        self.workers, self.threads = workers, threads
        ctx = multiprocessing.get_context("spawn")  # fresh processes: thread settings precede `import torch`
        self._pool = ProcessPool(max_workers=workers, initializer=init_local_worker,
                                 initargs=(threads, gpus, ctx.Value("i", 0)), context=ctx)
        self._futures: dict = {}

    def submit(self, task: dict) -> None:
        self._futures[self._pool.schedule(run_item, args=(task,))] = task

    def results(self):
        while self._futures:
            done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                task = self._futures.pop(fut)
                yield task, _record(task, fut)

    def cancel(self) -> None:
        """Stop now: queued items never start, running ones get SIGTERM (-> KeyboardInterrupt, so the
        bundle writer removes its temporary folder) and are killed 3 s later if still alive."""
        self._pool.stop()
        self._pool.join()

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


def _record(task: dict, fut) -> dict:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - the worker died or the task could not be sent
        from pebble import ProcessExpired

        if isinstance(e, ProcessExpired):
            code = e.exitcode
            why = "killed (SIGKILL: most likely out of memory)" if code == -9 else f"exit code {code}"
            msg = f"the worker process died ({why}); try fewer workers (--workers) or --memory-per-worker"
        else:
            msg = f"internal error ({type(e).__name__}: {e})"
        return {"subject": task["item"].subject, "status": "failed", "action": task["action"], "error": msg,
                "error_code": "worker", "seconds": None, "timings_s": None, "peak_rss_mib": None}
