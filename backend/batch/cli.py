"""`python -m backend batch SPEC --output DIR`: argument parsing and the one-line summary (no torch here)."""
from __future__ import annotations

import argparse
import sys

# CLI flags that become per-item defaults (a manifest's own values win). default=None: only flags the
# user gave override a manifest's "defaults".
_ITEM_FLAGS = ("landmarks", "device", "texture_size", "face_index", "frame_step", "max_frames", "smoothing")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("batch", help="many subjects or clips -> one result bundle each (resumable)",
                       description="Reconstruct every item of SPEC into DIR/<subject>/; a re-run skips items "
                                   "whose bundle matches their inputs and options and retries failed ones.")
    p.add_argument("spec", help="a folder of subject folders (or of clips), or a .csv / .json manifest")
    p.add_argument("--output", "-o", required=True, help="folder for the bundles and batch_report.json/.csv")
    run = p.add_argument_group("where items run")
    run.add_argument("--workers", type=int, help="local worker processes (default: cores, fewer if memory is "
                                                 "short; one per GPU); with --ray local: its CPUs")
    run.add_argument("--threads-per-worker", type=int, help="CPU threads per worker (default: cores / workers; "
                                                            "Ray: 1 CPU per task)")
    run.add_argument("--memory-per-worker", type=float, metavar="GB",
                     help="memory budget per worker, sizes the pool (default 5 with a texture, 1.5 without)")
    run.add_argument("--ray", metavar="auto|ADDRESS|local",
                     help="run the items as Ray tasks: auto = the cluster this machine belongs to, ADDRESS = "
                          "ray://host:10001 or host:6379, local = a private Ray instance on this machine")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="bar: progress bar on stderr; json: one JSON object per line on stdout")
    p.add_argument("--force", action="store_true", help="redo every item, even those up to date")
    p.add_argument("--blend", action="store_true", help="also write DIR/<subject>.blend (headless Blender, run.py)")
    p.add_argument("--glb", action="store_true", help="also write DIR/<subject>.glb (ARKit morph targets)")
    d = p.add_argument_group("item defaults (as for reconstruct; a manifest's columns override them)")
    d.add_argument("--landmarks", choices=["mediapipe", "fan"])
    d.add_argument("--device", choices=["auto", "cpu", "cuda"])
    d.add_argument("--texture-size", type=int)
    d.add_argument("--no-texture", action="store_true")
    d.add_argument("--face-index", type=int)
    d.add_argument("--frame-step", type=int)
    d.add_argument("--max-frames", type=int)
    d.add_argument("--smoothing", type=float)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args) -> int:
    """Runs the batch; errors that stop it before any work (FaceForgeError) propagate to __main__."""
    from ..errors import InputError
    from .runner import run_batch

    for name, value in (("--workers", args.workers), ("--threads-per-worker", args.threads_per_worker)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1")
    if args.memory_per_worker is not None and not args.memory_per_worker > 0:
        raise InputError("--memory-per-worker must be a positive number of GB")
    defaults = {k: getattr(args, k) for k in _ITEM_FLAGS if getattr(args, k) is not None}
    if args.no_texture:
        defaults["texture"] = False
    out = run_batch(args.spec, args.output, defaults, workers=args.workers, threads=args.threads_per_worker,
                    memory_per_worker_gb=args.memory_per_worker, ray=args.ray, progress=args.progress,
                    force=args.force, blend=args.blend, glb=args.glb)
    s = out["summary"]
    rate = f", {s['items_per_min']:.1f} items/min" if s.get("items_per_min") else ""
    print(f"batch: {s['done']} done, {s['skipped']} up to date, {s['failed']} failed"
          + (f", {s['cancelled']} not run" if s["cancelled"] else "")
          + f" in {s['wall_s']:.1f} s{rate}; report: {out['report']}", file=sys.stderr)
    if out["cancelled"]:
        print(f"error: cancelled; the finished bundles are kept, a re-run does the {s['cancelled']} unfinished "
              "item(s)", file=sys.stderr)
        return 130
    if out["failed"]:
        if args.progress != "bar":  # the bar already printed each failure as it happened
            for subject, error in out["failed"]:
                print(f"failed: {subject}: {error}", file=sys.stderr)
        print(f"error: {len(out['failed'])} of {s['total']} items failed (see {out['report']}); a re-run "
              "retries them", file=sys.stderr)
        return 1
    return 0
