"""Video tracking on real clips, against MediaPipe's own blendshape classifier on the same decoded frames.

    python -m bench.video_real [--out docs] [--plot docs/video_real_curves.png] [CLIP ...]

Without clips it uses the licensed sample clip in tests/data/same-person/video/. Each clip goes through the
product's video path (backend.video: MediaPipe on every sampled frame, identity frames, pipeline.fit_views,
track_video with the default smoothing) and is compared, frame by frame, with MediaPipe's 52 scores: MAE over all
52 ARKit shapes and over the 6 eye shapes, the share of frames where an antagonist pair (eyeWide with eyeBlink or
eyeSquint, jawLeft with jawRight, mouthLeft with mouthRight, ...) is both above 0.3, jitter (mean absolute second
difference of the 52 weights, per frame) and tracked frames/s (the per-frame solves and smoothing, as
result.json's animation.tracking_fps counts them). MediaPipe's classifier is a reference, not the truth: the
rendered clip of `python -m bench.video` is where the truth is known.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from backend.face_model import ANTAGONISTS, ARKIT_52

from .report import write_section

SECTION = "## Video tracking on real clips"
ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CLIP = ROOT / "tests" / "data" / "same-person" / "video" / "short_hamilton_clip.mp4"
EYE6 = ["eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight"]
PLOTTED = ["eyeBlinkLeft", "jawOpen", "mouthSmileLeft"]
ANTAGONIST_COLUMNS = [(ARKIT_52.index(a), ARKIT_52.index(b)) for a, b in ANTAGONISTS if a in ARKIT_52 and b in ARKIT_52]


def antagonist_frames(weights: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """(N,) True where some antagonist pair is both above threshold (weights (N, 52) in ARKIT_52 order)."""
    w = np.asarray(weights)
    hit = np.zeros(len(w), bool)
    for i, j in ANTAGONIST_COLUMNS:
        hit |= (w[:, i] > threshold) & (w[:, j] > threshold)
    return hit


def track_clip(path, smoothing: float | None = None, device: str = "cpu") -> dict:
    """The product's video path on one clip; per-frame ARKit weights of ours and of MediaPipe's classifier."""
    from backend.pipeline import fit_views
    from backend.video import DEFAULT_SMOOTHING, arkit_matrix, track_video, video_views

    smoothing = DEFAULT_SMOOTHING if smoothing is None else smoothing
    t0 = time.perf_counter()
    vf, views, picks, ref = video_views(Path(path))
    t_detect = time.perf_counter() - t0
    model, spec, res = fit_views(views, device=device)
    t0 = time.perf_counter()
    trk = track_video(model, spec, res, vf, ref, smoothing, device)
    t_track = time.perf_counter() - t0
    ours = trk.expression @ arkit_matrix(model.expression_names)
    mp = np.full_like(ours, np.nan)
    for k, d in enumerate(vf.detections):
        if d is not None and d.blendshapes:
            mp[k] = [d.blendshapes.get(n, np.nan) for n in ARKIT_52]
    return dict(path=Path(path), ours=ours, mp=mp, face=vf.valid, valid=vf.valid & np.isfinite(mp).any(1), fps=vf.fps,
                frames=vf.frames, detect_s=t_detect, track_s=t_track, n_frames=len(vf.frames))


def clip_metrics(run: dict) -> dict:
    """Agreement with MediaPipe over the shapes it scores (all but tongueOut), on frames where both have a face."""
    ours, mp, ok = run["ours"][run["valid"]], run["mp"][run["valid"]], run["valid"]
    scored = np.isfinite(mp).all(0)
    ours, mp = ours[:, scored], mp[:, scored]
    names = [n for n, s in zip(ARKIT_52, scored) if s]
    eye = [names.index(n) for n in EYE6]
    d = np.abs(ours - mp)
    mp52 = np.zeros((len(mp), len(ARKIT_52)))
    mp52[:, scored] = mp
    return dict(frames=int(ok.sum()), of=run["n_frames"], mae52=float(d.mean()), eye6=float(d[:, eye].mean()),
                antagonist_pct=100.0 * float(antagonist_frames(run["ours"][ok]).mean()),
                mp_antagonist_pct=100.0 * float(antagonist_frames(mp52).mean()),
                jitter=float(np.abs(np.diff(ours, 2, axis=0)).mean()),
                mp_jitter=float(np.abs(np.diff(mp, 2, axis=0)).mean()), shapes=int(scored.sum()),
                fps=run["n_frames"] / max(run["track_s"], 1e-9), detect_fps=run["n_frames"] / max(run["detect_s"], 1e-9))


def plot_curves(run: dict, path: Path, names=PLOTTED) -> None:
    """Ours against MediaPipe's classifier over time, one panel per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(run["n_frames"]) / run["fps"]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.2 * len(names)), sharex=True)
    for ax, n in zip(np.atleast_1d(axes), names):
        i = ARKIT_52.index(n)
        ax.plot(t, run["mp"][:, i], color="0.55", lw=1.2, label="MediaPipe classifier")
        ax.plot(t, run["ours"][:, i], color="tab:blue", lw=0.8, ls=":", label="ours, gap filled (no face found)")
        ax.plot(t, np.where(run["face"], run["ours"][:, i], np.nan), color="tab:blue", lw=1.6,
                label="ours (tracked, smoothed)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(n)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel(f"seconds ({run['path'].name})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(clips, device: str = "cpu", plot: Path | None = None) -> tuple[list[str], dict]:
    from .accuracy import machine_info

    t_all = time.perf_counter()
    lines = [SECTION, "", f"Command: `python -m bench.video_real --out docs --plot docs/video_real_curves.png` "
             f"(device {device}). Machine:", ""]
    lines += machine_info()
    lines += ["", "Each clip through the product's video path (MediaPipe on every frame at up to 30 fps, identity "
              "frames, shared-identity fit, per-frame tracking with the default smoothing), compared frame by frame "
              "with MediaPipe's own blendshape classifier on the same decoded frames. Antagonist frames: a pair "
              "(eyeWide/eyeBlink, eyeWide/eyeSquint, jawLeft/jawRight, mouthLeft/mouthRight, ...) both above 0.3. "
              "Jitter: mean absolute second difference of the 52 weights per frame. Tracked frames/s: the per-frame "
              "solves and smoothing (detection not included; its rate is the last column).", "",
              "Targets: all-52 MAE < 0.08, eye MAE < 0.15, antagonist frames < 1 %, >= 60 tracked frames/s.", "",
              "| clip | frames | MAE 52 | MAE eye 6 | antagonist frames % (MediaPipe) | jitter (MediaPipe) | "
              "tracked frames/s | detection frames/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    results = {}
    for clip in clips:
        r = track_clip(clip, device=device)
        m = clip_metrics(r)
        results[Path(clip).name] = m
        lines.append(f"| {Path(clip).name} | {m['frames']}/{m['of']} | {m['mae52']:.3f} | {m['eye6']:.3f} | "
                     f"{m['antagonist_pct']:.1f} ({m['mp_antagonist_pct']:.1f}) | {m['jitter']:.4f} "
                     f"({m['mp_jitter']:.4f}) | {m['fps']:.0f} | {m['detect_fps']:.0f} |")
        print(lines[-1], flush=True)
        if plot is not None and clip == clips[0]:
            plot_curves(r, plot)
            lines += ["", f"![{', '.join(PLOTTED)}: ours against MediaPipe's classifier]({plot.name})", ""]
    lines += ["", f"Wall time {time.perf_counter() - t_all:.1f} s; load average at the end: "
              "%.2f / %.2f / %.2f." % os.getloadavg()]
    return lines, results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.video_real", description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", help=f"video files (default: {SAMPLE_CLIP.relative_to(ROOT)})")
    ap.add_argument("--out", help="folder whose benchmarks.md gets this section (e.g. docs)")
    ap.add_argument("--plot", type=Path, help="PNG of eyeBlinkLeft, jawOpen and mouthSmileLeft over time (first clip)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    clips = [str(c) for c in args.clips] or [str(SAMPLE_CLIP)]
    lines, _ = run(clips, args.device, args.plot)
    print("\n".join(lines))
    if args.out:
        write_section(Path(args.out) / "benchmarks.md", lines)


if __name__ == "__main__":
    main()
