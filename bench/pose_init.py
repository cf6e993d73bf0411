"""Pose initialisation (backend/fit/init.py): the batched PnP the fit starts from on a GPU against OpenCV's SQPnP
plus iterative refinement, one view at a time (what it uses on the CPU).

    python -m bench.pose_init [--out docs] [--subjects 24]

(a) Accuracy on rendered photos through MediaPipe (bench/gt_scenes.py, the real-detector benchmark's 1- and 3-photo
    subjects): each photo's pose from the mean face and the true focal, rotation error against the truth and
    reprojection RMS; then the product's whole fit started from each, shape and rotation error.
(b) Speed: the initialisation of B jobs of V views (synthetic iBUG-68 views, 1 px noise) on this machine's CPU, and
    on CUDA where present.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from backend.face_model import FACE_VERTICES, load_face_model

from . import gt_scenes
from .accuracy import machine_info, rot_angle
from .real import BENCH_SEED, _views_of
from .report import write_section
from .synthetic import make_scene, similarity_align

SECTION = "## Pose initialisation"


@contextmanager
def initialisation(which: str):
    """The fit started by the batched PnP ('batched', the product's on a GPU) or by OpenCV's, view by view
    ('opencv', the product's on the CPU), whatever the device."""
    from backend.fit import adjuster, init

    saved = init.pnp_init
    adjuster.pnp_init = init.pnp_init = init.pnp_opencv if which == "opencv" else init.pnp_batched
    try:
        yield
    finally:
        adjuster.pnp_init = init.pnp_init = saved


def _problem(adj, views, focal):
    """The adjuster's problem and a mean-face state seen by `focal` (B,V) for views [(name, View)]."""
    from backend.fit.problem import State

    pts = np.stack([v.detection.points for v in views])[None]
    sizes = np.array([[(v.width, v.height) for v in views]], np.float64)
    pb = adj._problem(pts, np.ones(pts.shape[:3]), sizes, None)
    B, V = pb.obs.shape[:2]
    logf = torch.log(torch.as_tensor(focal, dtype=adj.dt)).reshape(1, 1)
    st = State(a=torch.zeros(B, adj.K, dtype=adj.dt), logf=logf,
               b=torch.zeros(B, V, adj.E, dtype=adj.dt), R=None, t=None)
    return pb, st


def section_accuracy(lines, model, n_subjects, results):
    from backend.fit import BundleAdjuster, landmark_spec
    from backend.fit.init import pnp_batched, pnp_opencv
    from backend.fit.presets import product_config
    from backend.pipeline import fit_views

    spec = landmark_spec("mediapipe478", model)
    adj = BundleAdjuster(model, spec, product_config("mediapipe478", 1))
    a, b = FACE_VERTICES
    rows = {k: {"rot": [], "rms": [], "shape": [], "fit_rot": []} for k in ("opencv", "batched")}
    for nv in (1, 3):
        scenes = gt_scenes.scenes(model, range(BENCH_SEED + 1000 * nv, BENCH_SEED + 1000 * nv + n_subjects), nv)
        for s in scenes:
            kv = _views_of(s)
            if not kv:
                continue
            true_n = model.vertices(s.identity).astype(np.float64)
            for k, v in kv:  # one photo at a time: the pose from the mean face at the true focal
                p = s.photos[k]
                pb, st = _problem(adj, [v], [[p.focal]])
                for name, init in (("opencv", pnp_opencv), ("batched", pnp_batched)):
                    R, t = init(adj, pb, st)
                    st1 = st.replace(R=R, t=t)
                    err = adj.reprojection_px(pb, st1)[0, 0].detach().numpy()
                    use = spec.valid & ~spec.contour & ~spec.iris
                    rows[name]["rot"].append(rot_angle(R[0, 0].numpy().astype(np.float64) @ p.R.T))
                    rows[name]["rms"].append(float(np.sqrt(np.mean(err[use] ** 2))))
            for name in ("opencv", "batched"):
                with initialisation(name):
                    _, _, res = fit_views([v for _, v in kv])
                fit_n = model.vertices(res.identity[0]).astype(np.float64)
                pv = np.linalg.norm(similarity_align(fit_n[a:b], true_n[a:b]) - true_n[a:b], axis=1) * 10
                rows[name]["shape"].append(float(np.median(pv)))
                rows[name]["fit_rot"] += [rot_angle(res.R[0, j] @ s.photos[k].R.T) for j, (k, _) in enumerate(kv)]
    lines += ["### (a) accuracy on rendered photos through MediaPipe "
              f"({n_subjects} one-photo and {n_subjects} three-photo subjects, seeds {BENCH_SEED}+)", "",
              "Start: each photo's pose from the mean face at the true focal (rotation error against the truth, "
              "reprojection RMS over the non-contour points). Whole fit: the product's fit_views started from each; "
              "shape = median face-region error per subject after similarity alignment (mean over subjects).", "",
              "| initialisation | start rotation deg (median / 90th) | start RMS px (median) | fit shape mm | "
              "fit rotation deg |", "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        m = dict(rot_med=float(np.median(r["rot"])), rot_p90=float(np.percentile(r["rot"], 90)),
                 rms=float(np.median(r["rms"])), shape=float(np.mean(r["shape"])), fit_rot=float(np.mean(r["fit_rot"])),
                 photos=len(r["rot"]))
        results[f"accuracy_{name}"] = m
        label = ("batched (the product on a GPU)" if name == "batched" else
                 "OpenCV SQPnP + iterative, per view (the product on the CPU)")
        lines.append(f"| {label} | {m['rot_med']:.2f} / {m['rot_p90']:.2f} | {m['rms']:.2f} | {m['shape']:.3f} | "
                     f"{m['fit_rot']:.2f} |")
        print(lines[-1], flush=True)
    lines.append("")


def _time(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def section_speed(lines, model, results):
    from backend.fit import BundleAdjuster, FitConfig, landmark_spec
    from backend.fit.init import pnp_batched, pnp_opencv
    from backend.fit.problem import State

    spec = landmark_spec("ibug68", model)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    lines += ["### (b) speed: initialising B jobs of V views (best of 5)", "",
              "| device | B x V | OpenCV per view ms | batched ms | ratio |", "|---|---|---:|---:|---:|"]
    for dev in devices:
        adj = BundleAdjuster(model, spec, FitConfig(device=dev))
        for B, V in ((1, 1), (1, 3), (1, 200), (64, 3)):
            rng = np.random.default_rng(B * 1000 + V)
            scenes = [make_scene(rng, model, spec, list(rng.uniform(-50, 50, V)), noise_px=1.0, size=512)
                      for _ in range(B)]
            pts = np.array([[v["points"] for v in s["views"]] for s in scenes])
            pb = adj._problem(pts, np.ones(pts.shape[:3]), np.full((B, V, 2), 512.0), None)
            st = State(a=torch.zeros(B, adj.K, dtype=adj.dt, device=adj.dev),
                       logf=torch.full((B, 1), float(np.log(scenes[0]["views"][0]["focal"])), dtype=adj.dt,
                                       device=adj.dev),
                       b=torch.zeros(B, V, adj.E, dtype=adj.dt, device=adj.dev), R=None, t=None)
            t_cv = _time(lambda: pnp_opencv(adj, pb, st), 5)
            t_b = _time(lambda: pnp_batched(adj, pb, st), 5)
            results[f"speed_{dev}_{B}x{V}"] = dict(opencv_ms=t_cv * 1e3, batched_ms=t_b * 1e3)
            lines.append(f"| {dev} | {B} x {V} | {t_cv * 1e3:.1f} | {t_b * 1e3:.1f} | {t_cv / t_b:.2f} |")
            print(lines[-1], flush=True)
    lines.append("")


def run(out=None, n_subjects=24) -> dict:
    model = load_face_model()
    results: dict = {}
    lines = [SECTION, "", "Command: `python -m bench.pose_init --out docs`. Machine:", "", *machine_info(), ""]
    section_accuracy(lines, model, n_subjects, results)
    section_speed(lines, model, results)
    if out:
        write_section(Path(out) / "benchmarks.md", lines)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--subjects", type=int, default=24)
    args = ap.parse_args(argv)
    run(args.out, args.subjects)


if __name__ == "__main__":
    main()
