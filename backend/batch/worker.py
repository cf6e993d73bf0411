"""One batch item, inside a worker process: the single-job entry point (pipeline.reconstruct, which writes
the bundle atomically), then optionally the headless Blender scene through run.py's own code path, with
the resume sidecar (resume.py) around both.

Runs in a local pool worker (local.py) or a Ray task (ray_pool.py). A worker is set up once (configure):
thread counts pinned before torch is imported, the face model loaded, MediaPipe's runtime warmed; every
item after that reuses them (load_face_model is cached per process).
"""
from __future__ import annotations

import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import FaceForgeError, InputError, SetupError
from .resume import blender_outputs, clear_state, fingerprint, read_state, result_digest, write_state
from .spec import Item

# Read by OpenMP (torch's CPU kernels), MKL and OpenBLAS when they load: set before `import torch`.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")

_state = {"configured": False, "setup_error": None, "term_interrupts": False}


class BlenderStepError(FaceForgeError):
    code = "blender"


def configure(threads: int, gpu: int | None = None) -> None:
    """Set this worker process up once. Each worker gets `threads` CPU threads (cores / workers): two
    workers whose torch each starts one OpenMP thread per core would fight over the cores."""
    if _state["configured"]:
        return
    _state["configured"] = True
    threads = max(1, int(threads))
    from ..cpu import set_thread_budget

    set_thread_budget(threads)
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set (a Ray worker that imported torch before us)
            pass
        import cv2

        cv2.setNumThreads(threads)
        from .. import pipeline, texture  # noqa: F401  (imports are part of a worker's start-up, not an item's)
        from ..face_model import load_face_model
        from ..landmarks.mediapipe_detector import MediaPipeDetector

        load_face_model()
        # pipeline.detect_views makes its own detector per item; the first one in a process costs ~0.5 s
        # (runtime and model load), later ones ~0.02 s (python -m bench.batch measures both), so warming
        # it here is enough and the pipeline needs no detector hand-over.
        MediaPipeDetector().close()
    except FaceForgeError as e:  # weights or packages missing: every item of this worker reports it
        _state["setup_error"] = e
    except Exception as e:  # noqa: BLE001
        _state["setup_error"] = SetupError(f"worker set-up failed ({type(e).__name__}: {e})")


def init_local_worker(threads: int, gpus: int, counter) -> None:
    """Initializer of a local pool worker (a fresh spawned process)."""
    # Stray prints of libraries must not mix into the driver's JSON-lines progress on stdout.
    os.dup2(2, 1)
    _state["term_interrupts"] = True
    gpu = None
    if gpus:
        with counter.get_lock():
            gpu = counter.value % gpus
            counter.value += 1
    configure(threads, gpu)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _reset_peak_rss() -> None:
    try:  # Linux >= 4.0: "5" resets VmHWM, so the peak below belongs to this item
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def run_item(task: dict) -> dict:
    """task: {item: Item, out_dir, action: 'run'|'export', blend, glb, threads}. Returns the item's record
    for the batch report; a failure is recorded (one line), never raised, except KeyboardInterrupt."""
    configure(task.get("threads") or 1)
    item: Item = task["item"]
    out_dir = Path(task["out_dir"])
    bundle = out_dir / item.subject
    rec = {"subject": item.subject, "status": "failed", "action": task["action"], "error": None,
           "error_code": None, "seconds": 0.0, "timings_s": None, "peak_rss_mib": None,
           "host": platform.node(), "pid": os.getpid(), "bundle": None, "started": time.time()}
    t0 = time.perf_counter()
    _reset_peak_rss()
    # The local pool stops workers with SIGTERM (Ctrl-C, cancel). During an item it raises KeyboardInterrupt
    # instead of ending the process on the spot, so the bundle writer deletes its temporary folder and a
    # Blender child is stopped; an idle worker keeps pebble's own quiet exit.
    old_term = signal.signal(signal.SIGTERM, _interrupt) if _state["term_interrupts"] else None
    try:
        if _state["setup_error"] is not None:
            raise _state["setup_error"]
        if task["action"] == "run":
            rec["timings_s"] = _reconstruct(item, out_dir, bundle)
        rec["bundle"] = str(bundle)
        outputs = blender_outputs(out_dir, item.subject, task.get("blend"), task.get("glb"))
        if outputs:
            t = time.perf_counter()
            _export_blender(item.subject, out_dir, bundle, outputs)
            rec.update({k: str(v) for k, v in outputs.items()})
            rec["timings_s"] = {**(rec["timings_s"] or {}), "blender": round(time.perf_counter() - t, 3)}
        rec["status"] = "done"
    except FaceForgeError as e:
        rec["error"], rec["error_code"] = _one_line(e), e.code
    except MemoryError:
        rec["error"] = "out of memory (use fewer workers: --workers N, or a larger --memory-per-worker)"
        rec["error_code"] = "memory"
    except Exception as e:  # noqa: BLE001 - a bug in one item must not stop the batch
        import traceback

        rec["error"] = f"internal error ({type(e).__name__}: {_one_line(e)}); please report it with its traceback"
        rec["error_code"] = "internal"
        rec["traceback"] = traceback.format_exc()  # batch_report.json only: the error itself stays one line
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["ended"] = time.time()
        rec["peak_rss_mib"] = round(_peak_rss_mib(), 1)
        rec.update(_worker_facts())
    return rec


def _worker_facts() -> dict:
    """What this worker process reuses across items: its thread count and how often it loaded the face
    model (1 = once for the worker's life)."""
    try:
        import torch

        from ..face_model import load_face_model

        return {"threads": torch.get_num_threads(), "face_model_loads": load_face_model.cache_info().misses}
    except ImportError:
        return {}


def _reconstruct(item: Item, out_dir: Path, bundle: Path) -> dict:
    from ..pipeline import reconstruct

    # Forget the old record first: if this run dies after the new bundle is in but before the record is
    # written, the next run redoes the item instead of trusting a record of other inputs.
    clear_state(out_dir, item.subject)
    if item.problem:
        raise InputError(item.problem)
    key, files = fingerprint(item)  # before reading the inputs: a file edited meanwhile is redone next time
    t = time.perf_counter()
    result = reconstruct(item.inputs, bundle, subject=item.subject, **item.options)
    write_state(out_dir, item.subject, {
        "fingerprint": key, "files": files, "inputs": item.inputs, "options": item.options,
        "result_sha256": result_digest(bundle), "seconds": round(time.perf_counter() - t, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backend_version": _backend_version()})
    return {k: round(v, 3) for k, v in result.get("timings_s", {}).items()}


def _backend_version() -> str:
    from .. import __version__

    return __version__


def _export_blender(subject: str, out_dir: Path, bundle: Path, outputs: dict) -> None:
    """run.py --from-bundle in a child process of this Python (which has the bpy module): the same importer
    as the add-on. Written under temporary names in DIR and renamed into place, so an interrupted export
    leaves no half file; relative image paths stay valid because the folder is the same."""
    from ..paths import REPO_ROOT

    tag = f".{subject}.blender-tmp-{os.getpid()}"
    tmp = {"blend": out_dir / f"{tag}.blend", "glb": out_dir / f"{tag}.glb"}
    cmd = [sys.executable, str(REPO_ROOT / "run.py"), "--from-bundle", str(bundle), "--output", str(tmp["blend"])]
    if "glb" in outputs:
        cmd += ["--glb", str(tmp["glb"])]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, errors="replace")
        try:
            _, err = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            lines = [ln[len("error:"):].strip() for ln in err.splitlines() if ln.startswith("error:")]
            why = lines[-1] if lines else f"run.py exited with code {proc.returncode}"
            raise BlenderStepError(f"Blender scene: {why}", bundle)
        digest = result_digest(bundle)
        state = read_state(out_dir, subject) or {}
        for kind, path in outputs.items():
            os.replace(tmp[kind], path)
            state[kind] = {"path": str(path), "result_sha256": digest}
        if state.get("fingerprint"):
            write_state(out_dir, subject, state)
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
