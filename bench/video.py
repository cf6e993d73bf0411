"""Video tracking benchmark on synthetic ground truth: `python -m bench.video [--out docs]`.

A random held-out ICT identity performs known expression curves (jaw, blinks, smiles, brows, pucker)
while the head sweeps +-40 deg of yaw with some pitch, roll and drift, filmed by a static camera.
(a) landmark level: the model's MediaPipe-478 landmarks are projected with 0/1/2 px Gaussian noise and
    go through the pipeline's own frame selection, identity fit and tracker (tracking.track).
(b) rendered: the same performance is rendered (bench/render_gt: skin, eyes with iris and gaze, lashes,
    background), written as an mp4 and reconstructed end to end by pipeline.reconstruct, MediaPipe included;
    MediaPipe's own classifier on the same frames is the reference row, and blinks are checked one by one.
Errors are against the truth: expression weights (mean abs, active shapes and all 53), head rotation
(deg, relative to the reference frame so the fitted identity's own tilt does not count), head position
(mm, face centroid in camera space after the global scale that a monocular camera cannot observe), and
jitter (mean abs second difference of weights and of yaw/pitch/roll), with and without smoothing.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.face_model import FACE_VERTICES, FaceModel, load_face_model
from backend.fit import landmark_spec
from .report import write_section
from .synthetic import landmark_points, look_at_camera, project

ACTIVE = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUpLeft",
          "browInnerUpRight", "mouthPucker", "browDownLeft", "browDownRight"]
SMOOTHINGS = (0.0, 1.0, 4.0)


def _curve(rng, times, knot_s=0.7, peak=0.7, offset=0.4):
    """Smooth random activation in [0, peak], zero part of the time (muscles rest)."""
    from scipy.interpolate import CubicSpline

    knots = np.arange(times[0] - knot_s, times[-1] + 2 * knot_s, knot_s)
    s = CubicSpline(knots, rng.standard_normal(len(knots)))(times)
    return np.clip(peak * (s - offset) / 1.6, 0.0, peak)


def _blinks(rng, times):
    """Blinks every 1.5-3.5 s, ~0.25 s long (close fast, open slower); one in four is a one-eyed wink."""
    left, right = np.zeros_like(times), np.zeros_like(times)
    t0 = rng.uniform(0.3, 1.0)
    while t0 < times[-1]:
        dt = times - t0
        bump = np.where(dt < 0, np.exp(-0.5 * (dt / 0.04) ** 2), np.exp(-0.5 * (dt / 0.08) ** 2))
        amp = rng.uniform(0.8, 1.0)
        wink = rng.random()
        left += amp * bump * (wink > 0.125)
        right += amp * bump * (wink < 0.875 or wink <= 0.125)
        t0 += rng.uniform(1.5, 3.5)
    return np.clip(left, 0, 1), np.clip(right, 0, 1)


def make_sequence(model: FaceModel, seed: int = 0, n_frames: int = 150, fps: float = 30.0, size=(960, 720),
                  focal: float = 1000.0) -> dict:
    """Ground-truth performance: identity, per-frame expression (N, 53), camera R (N,3,3), t (N,3)."""
    rng = np.random.default_rng(seed)
    times = np.arange(n_frames) / fps
    ident = rng.standard_normal(model.n_identity)
    expr = np.zeros((n_frames, model.n_expression))
    names = model.expression_names
    col = {n: names.index(n) for n in ACTIVE}
    expr[:, col["jawOpen"]] = _curve(rng, times, peak=0.8)
    smile = _curve(rng, times, peak=0.7)
    expr[:, col["mouthSmileLeft"]] = smile
    expr[:, col["mouthSmileRight"]] = np.clip(smile + 0.1 * _curve(rng, times, peak=1.0, offset=0.0), 0, 1)
    brow = _curve(rng, times, peak=0.8)
    expr[:, col["browInnerUpLeft"]] = expr[:, col["browInnerUpRight"]] = brow
    frown = _curve(rng, times, peak=0.5, offset=0.8)
    expr[:, col["browDownLeft"]] = expr[:, col["browDownRight"]] = frown
    expr[:, col["mouthPucker"]] = _curve(rng, times, peak=0.6, offset=0.8) * (smile < 0.05)
    expr[:, col["eyeBlinkLeft"]], expr[:, col["eyeBlinkRight"]] = _blinks(rng, times)
    span = times[-1] - times[0]
    ph = rng.uniform(0, 2 * np.pi, 5)
    yaw = 40.0 * np.cos(2 * np.pi * times / span + np.pi)  # one full sweep: -40 -> +40 -> -40
    pitch = 10.0 * np.sin(2 * np.pi * times / (0.7 * span) + ph[0])
    roll = 6.0 * np.sin(2 * np.pi * times / (0.9 * span) + ph[1])
    dist = 60.0 + 4.0 * np.sin(2 * np.pi * times / span + ph[2])
    tx = 2.0 * np.sin(2 * np.pi * times / (0.8 * span) + ph[3])
    ty = 1.5 * np.sin(2 * np.pi * times / (1.1 * span) + ph[4])
    R, t = np.zeros((n_frames, 3, 3)), np.zeros((n_frames, 3))
    for k in range(n_frames):
        R[k], t[k] = look_at_camera(yaw[k], pitch[k], roll[k], dist[k], target=(0.0, 0.0, 5.0))
        t[k] += [tx[k], ty[k], 0.0]
    return dict(identity=ident, expression=expr, R=R, t=t, yaw=yaw, fps=fps, size=tuple(size), focal=float(focal),
                active=[col[n] for n in ACTIVE])


def sequence_landmarks(model, spec, seq, noise_px=0.0, seed=0) -> np.ndarray:
    """(N, L, 2) projected MediaPipe-478 landmarks, plus Gaussian pixel noise."""
    rng = np.random.default_rng(seed + 1000)
    w, h = seq["size"]
    out = []
    for k in range(len(seq["R"])):
        verts = model.vertices(seq["identity"], seq["expression"][k])
        out.append(project(landmark_points(verts, spec, seq["expression"][k], seq["R"][k], seq["t"][k]), seq["R"][k],
                           seq["t"][k], seq["focal"], (w - 1) / 2, (h - 1) / 2))
    pts = np.stack(out)
    return pts + rng.normal(0, noise_px, pts.shape) if noise_px > 0 else pts


def track_landmarks(model, spec, seq, points, smoothings=SMOOTHINGS, device="cpu") -> dict:
    """The pipeline's video path from landmarks on: frame selection, shared-identity fit, tracking."""
    from backend.landmarks.base import Detection
    from backend.pipeline import fit_views
    from backend.fit.tracking import fit_frames, frame_confidence, landmark_errors, smooth_track
    from backend.video import VideoFrames, identity_views, select_views

    N = len(points)
    dets = [Detection(points=p, format="mediapipe478", box=(*p.min(0), *p.max(0))) for p in points]
    vf = VideoFrames(path=Path("synthetic"), video_fps=seq["fps"], frame_step=1, size=seq["size"],
                     frames=np.arange(N), detections=dets)
    t0 = time.perf_counter()
    picks, ref = select_views(model, spec, vf)
    views = identity_views(vf, picks, with_images=False)
    _, _, res = fit_views(views, device)
    t_id = time.perf_counter() - t0
    ident, focal = res.identity[0], float(res.focal[0, 0])
    valid = np.ones(N, bool)
    t0 = time.perf_counter()
    expr, R, t = fit_frames(model, spec, ident, focal, points, valid, seq["size"], device=device)
    t_fit = time.perf_counter() - t0
    a, b = 33, 263
    err = landmark_errors(model, spec, ident, focal, seq["size"], expr, R, t, points)
    conf = frame_confidence(err, np.linalg.norm(points[:, a] - points[:, b], axis=-1), valid)
    runs = {}
    for s in smoothings:
        t0 = time.perf_counter()
        e_s, R_s, t_s = smooth_track(expr, R, t, conf, s * (seq["fps"] / 30.0) ** 4, ref)
        runs[s] = dict(expression=e_s, R=R_s, t=t_s, smooth_s=time.perf_counter() - t0)
    return dict(identity=ident, focal=focal, picks=picks, ref=ref, runs=runs, identity_s=t_id, track_s=t_fit,
                tracking_fps=N / t_fit)


def design_comparison(model, spec, seq, points, device="cpu") -> list[tuple[str, dict, float]]:
    """The tracker's structure, measured (true identity and focal, so only the tracking differs):
    frames as views of one job (what tracking.fit_frames does) vs frames as independent jobs, and the
    post-hoc Whittaker smoother vs fitting.py's in-solver temporal term on the expression."""
    from backend.fit import BundleAdjuster, FitConfig
    from backend.cpu import one_torch_thread
    from backend.fit.tracking import personalised_model, smooth_track

    N, L = points.shape[:2]
    size = np.asarray(seq["size"], np.float64)
    out = []
    for name, jobs, ts, post in [("frames = views of one job, Whittaker 1.0 (ours)", False, 0.0, 1.0),
                                 ("frames = independent jobs (B=N, V=1), Whittaker 1.0", True, 0.0, 1.0),
                                 ("frames = views, in-solver temporal term 10 (expression only)", False, 10.0, 0.0)]:
        cfg = FitConfig(n_identity=1, fix_identity=True, fix_focal=True, temporal_smoothing=ts, device=device)
        ba = BundleAdjuster(personalised_model(model, seq["identity"]), spec, cfg)
        t0 = time.perf_counter()
        with one_torch_thread(device):
            if jobs:
                r = ba.fit(points[:, None], np.ones((N, 1, L)), np.tile(size, (N, 1, 1)), np.full((N, 1), seq["focal"]),
                           np.ones((N, 1), bool))
                e, R, t = r.expression[:, 0], r.R[:, 0], r.t[:, 0]
            else:
                r = ba.fit(points[None], np.ones((1, N, L)), np.tile(size, (1, N, 1)), np.full((1, N), seq["focal"]),
                           np.ones((1, N), bool))
                e, R, t = r.expression[0], r.R[0], r.t[0]
        e, R, t = smooth_track(e, R, t, np.ones(N), post, 0)
        dt = time.perf_counter() - t0
        out.append((name, errors(model, seq, seq["identity"], e, R, t, 0), N / dt))
    return out


def _angle_deg(Ra, Rb) -> np.ndarray:
    """Angle between rotations; via the rotation vector, as arccos of the trace cannot resolve float32
    rotations below ~0.03 deg."""
    from scipy.spatial.transform import Rotation

    M = np.swapaxes(np.asarray(Ra, np.float64), -1, -2) @ np.asarray(Rb, np.float64)
    return np.degrees(Rotation.from_matrix(M).magnitude())


def errors(model, seq, identity, expr, R, t, ref: int, frames=None) -> dict:
    """Per-frame errors against the truth (frames: which truth frames the rows correspond to)."""
    from backend.fit.tracking import frame_angles

    k = np.arange(len(expr)) if frames is None else np.asarray(frames)
    tE, tR, tt = seq["expression"][k], seq["R"][k], seq["t"][k]
    d = np.abs(expr - tE)
    a0, a1 = FACE_VERTICES
    c_fit = model.vertices(identity)[a0:a1].mean(0)
    c_true = model.vertices(seq["identity"])[a0:a1].mean(0)
    p_fit = np.einsum("nij,j->ni", R, c_fit) + t
    p_true = np.einsum("nij,j->ni", tR, c_true) + tt
    s = float((p_fit * p_true).sum() / (p_true * p_true).sum())  # size/distance: what one camera cannot tell
    rel_fit = R @ R[ref].T
    rel_true = tR @ tR[ref].T
    ang_fit, ang_true = frame_angles(R), frame_angles(tR)
    return {
        "expr_mae_active": float(d[:, seq["active"]].mean()),
        "expr_mae_all": float(d.mean()),
        "rot_rel_deg": float(_angle_deg(rel_fit, rel_true).mean()),
        "rot_abs_deg": float(_angle_deg(R, tR).mean()),
        "pos_mm": float(np.linalg.norm(p_fit - s * p_true, axis=1).mean() * 10),
        "scale": s,
        "jitter_expr": float(np.abs(np.diff(expr, 2, axis=0)).mean()),
        "jitter_expr_true": float(np.abs(np.diff(tE, 2, axis=0)).mean()),
        "jitter_pose_deg": float(np.abs(np.diff(ang_fit, 2, axis=0)).mean()),
        "jitter_pose_true": float(np.abs(np.diff(ang_true, 2, axis=0)).mean()),
        # the same on the error signal: the jitter that is noise, not motion (blinks have real curvature)
        "jitter_err_expr": float(np.abs(np.diff(expr - tE, 2, axis=0)).mean()),
        "jitter_err_pose_deg": float(np.abs(np.diff(ang_fit - ang_true, 2, axis=0)).mean()),
    }


def write_video(model, seq, path, seed: int = 0, supersample: int = 2) -> None:
    """Render the performance with bench/render_gt (the real-detector benchmark's renderer: skin albedo with
    brows and lips, eyeballs with iris, pupil and catchlights, lashes) in front of one cluttered background
    under one light, and write it as an mp4 (mp4v, the codec every OpenCV wheel can write)."""
    from dataclasses import replace

    import cv2

    from . import render_gt as rg

    w, h = seq["size"]
    rng = np.random.default_rng(seed + 4242)
    subject = replace(rg.make_subject(model, seed + 4242, size=512), identity=seq["identity"])
    light = rg.random_light(rng)
    bg = rg.background(rng, w * supersample, h * supersample)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), seq["fps"], (w, h))
    try:
        for k in range(len(seq["R"])):
            shot = rg.Shot(seq["expression"][k], seq["R"][k], seq["t"][k], seq["focal"], (w, h), light,
                           seed=seed * 100003 + k, extra={"background": bg})
            img = rg.render(model, subject, shot, supersample=supersample, jpeg_quality=0)
            vw.write(np.ascontiguousarray(img[..., ::-1]))
    finally:
        vw.release()


def blink_recovery(truth: np.ndarray, fitted: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per true blink (a local peak of a blink weight above threshold): the fitted peak within +-2 frames over
    the true peak. Smoothing that eats blinks shows here first: a 0.25 s blink is 7 frames at 30 fps."""
    out = []
    for k in range(1, len(truth) - 1):
        if truth[k] > threshold and truth[k] >= truth[k - 1] and truth[k] > truth[k + 1]:
            out.append(fitted[max(0, k - 2): k + 3].max() / truth[k])
    return np.array(out)


def run_rendered(model, seq, smoothings, device="cpu", tmp=None, seed=0) -> dict:
    """End to end: mp4 -> pipeline.reconstruct (MediaPipe, identity, tracking) -> animation.npz vs truth."""
    from backend.pipeline import reconstruct

    out = {}
    names = model.expression_names
    blinks = [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        t0 = time.perf_counter()
        video = Path(d) / "rendered.mp4"
        write_video(model, seq, video, seed)
        out["render_s"] = time.perf_counter() - t0
        mp = mediapipe_scores(model, video)
        dev = np.abs(mp - seq["expression"][: len(mp)])
        out["mediapipe"] = {"expr_mae_active": float(dev[:, seq["active"]].mean()), "expr_mae_all": float(dev.mean()),
                            "jitter_expr": float(np.abs(np.diff(mp, 2, axis=0)).mean()),
                            "blink_recovery": np.concatenate([blink_recovery(seq["expression"][: len(mp), i], mp[:, i])
                                                              for i in blinks])}
        for s in smoothings:
            bundle = Path(d) / f"b{s}"
            reconstruct([str(video)], bundle, texture=False, device=device, smoothing=s)
            doc = json.loads((bundle / "result.json").read_text())
            z = np.load(bundle / "animation.npz")
            anim = doc["animation"]
            e = errors(model, seq, np.array(doc["identity"]), z["expression"].astype(np.float64), z["R"], z["t"],
                       anim["reference_frame"], frames=z["frame"])
            dev = np.abs(z["expression"] - seq["expression"][z["frame"]]).mean(0)
            worst = np.argsort(dev)[::-1][:5]
            e["worst_shapes"] = [(names[i], float(z["expression"][:, i].mean()),
                                  float(seq["expression"][z["frame"], i].mean())) for i in worst]
            e["blink_recovery"] = np.concatenate([blink_recovery(seq["expression"][z["frame"], i],
                                                                 z["expression"][:, i]) for i in blinks])
            e.update(valid=float(z["valid"].mean()), reprojection_px=float(np.nanmedian(z["reprojection_px"])),
                     tracking_fps=anim["tracking_fps"], timings=anim["timings_s"],
                     focal=anim["camera"]["fx"], identity_frames=anim["identity_frames"])
            out[s] = e
    return out


def mediapipe_scores(model, video) -> np.ndarray:
    """MediaPipe's own 52 blendshape scores per frame, on our 53 shapes: the reference a tracker should beat."""
    import cv2

    from backend.face_model import arkit_to_shape_names
    from backend.landmarks.mediapipe_detector import MediaPipeDetector

    cap, rows = cv2.VideoCapture(str(video)), []
    with MediaPipeDetector() as det:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            faces = det.detect_all(np.ascontiguousarray(bgr[..., ::-1]))
            bs = faces[0].blendshapes if faces else {}
            rows.append(list(arkit_to_shape_names(bs, model.expression_names).values()))
    cap.release()
    return np.array(rows)


def _row(cells) -> str:
    return "| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |"


COLUMNS = ["expr MAE active", "expr MAE all", "rot err deg (rel)", "pos err mm", "jitter expr", "jitter pose deg"]
KEYS = ["expr_mae_active", "expr_mae_all", "rot_rel_deg", "pos_mm", "jitter_expr", "jitter_pose_deg"]


def run(seed=0, n_frames=150, rendered_frames=120, noises=(0.0, 1.0, 2.0), smoothings=SMOOTHINGS, device="cpu",
        rendered=True) -> list[str]:
    """The whole benchmark; returns the markdown lines (also printed as they come)."""
    from .accuracy import machine_info
    from backend.fit.tracking import track
    from backend.video import IDENTITY_FRAMES

    t_all = time.perf_counter()
    model = load_face_model()
    spec = landmark_spec("mediapipe478", model)
    lines = ["## Video tracking", "",
             f"Command: `python -m bench.video --out docs` (seed {seed}, device {device}). Machine:", ""]
    lines += machine_info()
    seq = make_sequence(model, seed, n_frames)
    truth = errors(model, seq, seq["identity"], seq["expression"], seq["R"], seq["t"], 0)
    lines += ["", f"Synthetic performance: held-out random identity, {n_frames} frames at 30 fps, "
              f"{len(ACTIVE)} animated shapes ({', '.join(ACTIVE)}; blinks ~0.25 s), yaw sweep +-40 deg, pitch "
              "+-10, roll +-6, 4 cm depth and 2 cm sideways drift. Truth's own second differences (the jitter "
              f"floor): expression {truth['jitter_expr_true']:.4f}, pose {truth['jitter_pose_true']:.4f} deg. "
              "Errors are per-frame means; rotation is relative to the reference frame; position is the face "
              "centroid after the fitted global scale (monocular scale ambiguity). Smoothing = the `--smoothing` "
              "weight (0 = per-frame fits, gaps linearly filled).", "",
              "### (a) landmark level: projected MediaPipe-478 landmarks + Gaussian noise, 960x720 px, f = 1000 px "
              "(eye distance ~150 px); pipeline frame selection + identity fit + tracker", "",
              "| noise px | smoothing | " + " | ".join(COLUMNS) + " | focal err % | tracking frames/s | identity fit s |",
              "|" + "---:|" * (len(COLUMNS) + 5)]
    print("\n".join(lines), flush=True)
    results = {"a": {}, "b": {}}
    for noise in noises:
        pts = sequence_landmarks(model, spec, seq, noise, seed)
        out = track_landmarks(model, spec, seq, pts, smoothings, device)
        for s, r in out["runs"].items():
            e = errors(model, seq, out["identity"], r["expression"], r["R"], r["t"], out["ref"])
            results["a"][(noise, s)] = e
            row = _row([noise, s, *[e[k] for k in KEYS], 100 * (out["focal"] / seq["focal"] - 1),
                        out["tracking_fps"], out["identity_s"]])
            lines.append(row)
            print(row, flush=True)
        # the tracker alone: true identity and focal, so identity-fit errors (mostly the focal) drop out
        t0 = time.perf_counter()
        trk = track(model, spec, seq["identity"], seq["focal"], pts, np.ones(len(pts), bool), seq["size"],
                    smoothing=1.0, device=device)
        dt = time.perf_counter() - t0
        e = errors(model, seq, seq["identity"], trk.expression, trk.R, trk.t, 0)
        results["a"][(noise, "oracle")] = e
        row = _row([noise, "1.0, true identity + focal", *[e[k] for k in KEYS], "", len(pts) / dt, ""])
        lines.append(row)
        print(row, flush=True)
    lines += ["", "Rows 'true identity + focal' isolate the tracker; the gap to the rows above is the identity fit "
              "(mostly its focal: a face's relief barely constrains the field of view, and the head's size and "
              "distance trade against it)."]
    pts = sequence_landmarks(model, spec, seq, 1.0, seed)
    head = ["", "### Tracker design, measured (1 px, true identity and focal, same sequence)", "",
            "| design | " + " | ".join(COLUMNS) + " | jitter of error, expr | frames/s |", "|---|" + "---:|" * (len(COLUMNS) + 2)]
    lines += head
    print("\n".join(head), flush=True)
    for name, e, fps in design_comparison(model, spec, seq, pts, device):
        row = _row([name, *[e[k] for k in KEYS], e["jitter_err_expr"], fps])
        lines.append(row)
        print(row, flush=True)
    if rendered:
        rseq = make_sequence(model, seed, rendered_frames, size=(480, 480), focal=1056.0)
        head = ["", f"### (b) rendered: {rendered_frames} frames of the same kind of performance, 480x480 px, "
                "f = 1056 px (eye distance ~110 px), drawn by bench/render_gt (the real-detector benchmark's "
                "renderer: skin with brows and lips, eyes with iris, pupil and catchlights, lashes; one cluttered "
                "background, one light), mp4v; `pipeline.reconstruct([video])` end to end (MediaPipe on every "
                f"frame, {IDENTITY_FRAMES} identity frames). Blink recovery: per true blink, the fitted peak "
                "(within +-2 frames) over the true peak; median and lowest.", "",
                "| smoothing | " + " | ".join(COLUMNS) + " | blink recovery median / min | focal err % | "
                "faces found | median reproj px | tracking frames/s |", "|" + "---:|" * (len(COLUMNS) + 6)]
        lines += head
        print("\n".join(head), flush=True)
        rb = run_rendered(model, rseq, smoothings[:2] if len(smoothings) > 1 else smoothings, device, seed=seed)
        results["b"] = rb
        for s in [k for k in rb if isinstance(k, float)]:
            e = rb[s]
            br = e["blink_recovery"]
            row = _row([s, *[e[k] for k in KEYS], f"{np.median(br):.2f} / {br.min():.2f} ({len(br)} blinks)",
                        100 * (e["focal"] / rseq["focal"] - 1), e["valid"], e["reprojection_px"], e["tracking_fps"]])
            lines.append(row)
            print(row, flush=True)
        any_s = [k for k in rb if isinstance(k, float)][-1]  # the smoothed run
        mp = rb["mediapipe"]
        br = mp["blink_recovery"]
        row = _row(["MediaPipe's own blendshape scores (reference)", mp["expr_mae_active"], mp["expr_mae_all"], "",
                    "", mp["jitter_expr"], "", f"{np.median(br):.2f} / {br.min():.2f}", "", "", "", ""])
        lines.append(row)
        worst = ", ".join(f"{n} {f:.2f} (true {t:.2f})" for n, f, t in rb[any_s]["worst_shapes"])
        lines += ["", f"Largest per-shape errors of the smoothed run, mean fitted weight (true): {worst}. The "
                  "reference row is MediaPipe's own blendshape classifier on the same frames (its scores are also "
                  "the tracker's prior, so the gap between the rows is what the landmarks add)."]
        print("\n".join(lines[-3:]), flush=True)
        lines += ["", f"Rendering {rendered_frames} frames took {rb['render_s']:.1f} s; stage times of the smoothed "
                  "run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in rb[any_s]["timings"].items()) + "."]
    lines += ["", f"Tracking frames/s counts the per-frame solves only (identity fixed; it varies with how many LM "
              "iterations the data need before the convergence test stops them). GPU: n/a on this machine "
              f"(same code with `--device cuda`). Benchmark wall time {time.perf_counter() - t_all:.1f} s; load "
              "average at the end: %.2f / %.2f / %.2f." % os.getloadavg()]
    print(lines[-1], flush=True)
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=150, help="frames of the landmark-level sequence")
    ap.add_argument("--rendered-frames", type=int, default=120, help="frames of the rendered video (0 = skip)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", help="folder whose benchmarks.md gets the 'Video tracking' section (e.g. docs)")
    args = ap.parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    lines = run(args.seed, args.frames, args.rendered_frames, device=args.device, rendered=args.rendered_frames > 0)
    if args.out:
        write_section(Path(args.out) / "benchmarks.md", lines)


if __name__ == "__main__":
    main()
