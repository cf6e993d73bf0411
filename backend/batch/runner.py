"""Run a batch: plan (what is already up to date), dispatch to a local pool or Ray, record, resume."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from .. import __version__
from ..errors import InputError, OutputError
from .report import BatchReport, Progress
from .resume import STATE_DIR, plan, read_state
from .spec import load_spec

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def run_batch(spec, out_dir, defaults: dict | None = None, *, workers: int | None = None,
              threads: int | None = None, memory_per_worker_gb: float | None = None, ray: str | None = None,
              progress: str = "none", force: bool = False, blend: bool = False, glb: bool = False) -> dict:
    """Reconstruct every item of `spec` into `out_dir/<subject>`. Returns {summary, cancelled, failed,
    report}; raises InputError / OutputError (nothing done) for a bad spec or output folder."""
    items = load_spec(spec, defaults)
    out_dir = _check_out_dir(out_dir)
    if blend or glb:
        _check_blender_names(items, blend, glb)
    with _batch_lock(out_dir):
        return _run(items, Path(spec).expanduser().resolve(), out_dir, workers, threads, memory_per_worker_gb, ray,
                    progress, force, blend, glb)


def _run(items, spec, out_dir, workers, threads, memory_gb, ray, progress, force, blend, glb) -> dict:
    t0 = time.perf_counter()
    actions = {it.subject: "run" if force else plan(it, out_dir, blend, glb) for it in items}
    todo = [it for it in items if actions[it.subject] != "skip"]
    if memory_gb is None:
        from .local import MEMORY_PER_WORKER_GB

        memory_gb = max((MEMORY_PER_WORKER_GB["texture" if it.options.get("texture", True) else "no_texture"]
                         for it in todo), default=MEMORY_PER_WORKER_GB["no_texture"])
    header = {"backend_version": __version__, "spec": str(spec), "output": str(out_dir),
              "blend": blend, "glb": glb, "force": force, "memory_per_worker_gb": memory_gb}
    report = BatchReport(out_dir, items, header)
    for it in items:
        if actions[it.subject] == "skip":
            prev = read_state(out_dir, it.subject) or {}
            report.set(it.subject, {"status": "skipped", "bundle": str(out_dir / it.subject),
                                    "previous_seconds": prev.get("seconds")})
    pool, prog, cancelled = None, None, False
    with _sigterm_as_interrupt():
        try:
            pool = _make_pool(todo, ray, workers, threads, memory_gb) if todo else None
            header["executor"] = _describe(pool)
            prog = Progress(progress, len(items), len(todo), {"executor": header["executor"]})
            for it in largest_first(todo):
                pool.submit({"item": it, "out_dir": str(out_dir), "action": actions[it.subject],
                             "blend": blend, "glb": glb, "threads": pool.threads})
            for _task, rec in (pool.results() if pool else ()):
                if rec.get("error_code") == "worker" and pool.kind == "local":
                    _sweep(out_dir, [rec["subject"]])  # a killed worker may have left a temporary bundle
                report.set(rec["subject"], rec)
                prog.item(rec)
                report.write(time.perf_counter() - t0)
            if pool:
                pool.close()
        except KeyboardInterrupt:
            cancelled = True
            with _ignoring_sigint():
                if pool:
                    pool.cancel()
                stopped = [s for s, r in report.records.items() if r["status"] == "pending"]
                for s in stopped:
                    report.set(s, {"status": "cancelled"})
                if pool is None or pool.kind == "local":
                    _sweep(out_dir, stopped)
            header.setdefault("executor", _describe(pool))
        except BaseException:
            if pool:
                pool.cancel()
            raise
    summary = report.summary(time.perf_counter() - t0)
    report.write(time.perf_counter() - t0, final=True)
    if prog is not None:
        prog.close(summary, cancelled)
    failed = [(r["subject"], r.get("error")) for r in report.records.values() if r["status"] == "failed"]
    return {"summary": summary, "cancelled": cancelled, "failed": failed, "report": str(out_dir / "batch_report.json"),
            "executor": header["executor"]}


def largest_first(items) -> list:
    """The items in the order to start them: largest inputs first (ties keep the spec's order). A pool that
    meets its big items last ends with one worker still busy and the others idle; started first, the small
    ones fill the gaps at the end (longest-processing-time-first). The bytes of the files a reconstruction
    reads (resume.input_files: folders expanded as the pipeline does, a landmarks file's photos included)
    stand for the work: video length, photo count and resolution all grow them (measured: a 3-photo item of
    1024 px photos takes 4.6 s, one of 224 px photos 3.2 s; python -m bench.batch). An input that cannot be
    read counts as nothing: its item fails in its worker with the pipeline's own message."""
    from .resume import input_files

    sizes: dict = {}

    def size(path) -> int:
        if path not in sizes:
            try:
                sizes[path] = path.stat().st_size
            except (OSError, ValueError):
                sizes[path] = 0
        return sizes[path]

    def cost(item) -> int:
        try:
            return sum(size(p) for p in input_files(item))
        except Exception:  # noqa: BLE001 - a missing or bad input: reported by the item's own run
            return 0

    costs = {it.subject: cost(it) for it in items}
    return sorted(items, key=lambda it: -costs[it.subject])


def _make_pool(todo, ray, workers, threads, memory_gb):
    if ray:
        from .ray_pool import RayPool

        return RayPool(ray, memory_gb, threads, local_cpus=workers)
    from .local import LocalPool, pool_size

    gpus = _local_gpus(todo)
    n, auto_threads, why = pool_size(len(todo), memory_gb, workers, gpus)
    pool = LocalPool(n, threads or auto_threads, gpus)
    pool.why = why
    return pool


def _local_gpus(todo) -> int:
    """CUDA GPUs this machine's workers may use: one worker per GPU (none when every item says cpu)."""
    if all(it.options.get("device") == "cpu" for it in todo):
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _describe(pool) -> dict:
    if pool is None:
        return {"kind": "none (nothing to run)"}
    out = {"kind": pool.kind, "workers": pool.workers, "threads_per_worker": pool.threads}
    if pool.kind == "local":
        out["sized_by"] = pool.why
    else:
        out.update(cluster_cpus=pool.cpus, cluster_gpus=pool.gpus)
    return out


def _check_out_dir(out_dir) -> Path:
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, not a folder", out_dir)
    if (out_dir / "result.json").is_file():
        raise OutputError("is a result bundle; give the batch a folder of its own (bundles go inside it)", out_dir)
    try:
        (out_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder ({e.strerror or e})", out_dir) from None
    return out_dir


def _check_blender_names(items, blend, glb) -> None:
    names = {it.subject.casefold(): it for it in items}
    for it in items:
        for ext, wanted in ((".blend", blend), (".glb", glb)):
            other = names.get((it.subject + ext).casefold())
            if wanted and other is not None:
                raise InputError(f"subject {other.subject!r} ({other.where}) would collide with the {ext} file of "
                                 f"subject {it.subject!r}; rename one")


@contextlib.contextmanager
def _batch_lock(out_dir: Path):
    """One batch at a time per output folder (two would redo each other's items and clobber the report)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path = out_dir / STATE_DIR / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputError(f"another batch (pid {holder}) is writing into this folder; wait for it to "
                              "finish", out_dir) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _sweep(out_dir: Path, subjects) -> None:
    """Temporary folders of local workers that were killed before they could clean up (their PIDs are dead
    now, which is what output_dir's sweep checks; a Ray worker's PID belongs to another host's namespace,
    so Ray items are left to the next writer of the same bundle)."""
    from ..output_dir import recover

    for s in subjects:
        recover(out_dir / s)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A scheduler's SIGTERM (or `kill`) stops the batch the way Ctrl-C does: report written, no half bundle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _ignoring_sigint():
    """A second Ctrl-C must not interrupt the clean stop of the workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
