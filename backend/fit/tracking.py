"""Per-frame head pose and expression of a video, given the identity and focal fitted on a few frames.

Design (measured in `python -m bench.video`, docs/benchmarks.md "Video tracking"):
- Frames are fitted independently by the same BundleAdjuster the photo pipeline uses (a chunk of
  frames as the views of one job), on a *personalised* model whose neutral already holds the fitted
  identity and whose identity basis is one zero mode: the shared block shrinks from 101 unknowns to 2
  (both fixed), so a frame costs one 59x59 solve per iteration and hundreds of frames run as one
  batched solve on CPU or CUDA.
- Temporal smoothing is a separate, exact step: a confidence-weighted Whittaker smoother (second
  differences) solved with a sparse banded system. It treats every parameter channel alike (the
  weight is dimensionless) and fills frames without a face from their neighbours for free. Doing
  it after the per-frame solves, rather than inside them, keeps the frames independent (batchable)
  and smooths the head pose as well as the expression.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cpu import one_torch_thread
from ..face_model import FaceModel, resolve_antagonists
from .adjuster import BundleAdjuster, FitConfig
from .rotations import head_angles
from .spec import LandmarkSpec
from ..landmarks.base import EYE_CORNERS

REFERENCE_FPS = 30.0  # `smoothing` is defined at this rate and rescaled so it means the same cut-off in Hz
# The eyelids move fastest (a blink closes and opens in 0.2-0.3 s): their channels are smoothed with this share of
# the smoothing. A 0.25 s blink keeps 86 % of its peak under the full smoothing of 1.0 and 94 % under 0.3 of it
# (tests/test_video.py, the Whittaker response to a raised-cosine blink).
LID_SMOOTHING = 0.3
LID_SHAPES = ("eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight")
# Gaps without a face longer than this (a cut, the face turned away or covered) are bridged by a straight line
# rather than by the smoother's curve, which overshoots over long spans (measured on the sample clip: a 1.6 s gap
# filled with a jawOpen of 0.84 and a blink that never happened); shorter gaps (a missed detection, motion blur)
# take the smoother's curve, which follows the motion around them.
MAX_SMOOTH_GAP_S = 0.5
CONFIDENCE_FLOOR = 0.3  # % of eye distance: residuals below this are noise-free for weighting purposes
# per-frame LM iterations: the photo fit's extra ones (FitConfig.iterations) serve the focal's shallow valley, which a
# frame with the focal fixed does not have
FRAME_ITERATIONS = 10
BATCH = 256  # frames per batched solve: bounds memory (about 1 MB of Jacobian per frame)


@dataclass
class Track:
    expression: np.ndarray  # (N, E) in [0, 1]
    R: np.ndarray  # (N, 3, 3)
    t: np.ndarray  # (N, 3) cm
    reprojection_px: np.ndarray  # (N,) median landmark error of the final (smoothed) parameters, nan without face
    raw_expression: np.ndarray  # (N, E) per-frame fits before smoothing
    raw_R: np.ndarray
    raw_t: np.ndarray
    confidence: np.ndarray  # (N,) smoother data weight (0 = no face)


def personalised_model(model: FaceModel, identity) -> FaceModel:
    """The model with `identity` baked into the neutral and a single zero identity mode left."""
    ident = np.asarray(identity, np.float32)
    neutral = model.neutral + np.einsum("k,knd->nd", ident, model.identity[: len(ident)])
    return dataclasses.replace(model, neutral=neutral.astype(np.float32),
                               identity=np.zeros_like(model.identity[:1]), _cache={})


def fit_frames(model: FaceModel, spec: LandmarkSpec, identity, focal: float, points, valid, size,
               init_expression=None, device=None, progress=None, cancel=None, config: FitConfig | None = None,
               scores=None):
    """Independent per-frame fits: returns expression (N,E), R (N,3,3), t (N,3). scores (N,E): the detector's
    own expression scores (nan where none), the same prior a photo's fit uses (presets.product_config).
    device: where the fits run (None: the config's)."""
    from .presets import product_config

    points = np.asarray(points, np.float64)
    valid = np.asarray(valid, bool)
    N, L = points.shape[:2]
    base = config or dataclasses.replace(product_config(spec.format, 1), iterations=FRAME_ITERATIONS)
    cfg = dataclasses.replace(base, n_identity=1, fix_identity=True, fix_focal=True, device=device or base.device)
    ba = BundleAdjuster(personalised_model(model, identity), spec, cfg)
    expr, R, t = np.zeros((N, model.n_expression)), np.tile(np.eye(3), (N, 1, 1)), np.zeros((N, 3))
    idx = np.nonzero(valid)[0]
    for s in range(0, len(idx), BATCH):
        # a chunk of frames is one job of V views rather than V jobs: the frames are independent anyway
        # (nothing global is free); one job shares one noise estimate and one damping decision, where V jobs
        # rerun the damping loop until the unluckiest frame improves. Measured (bench_video, design table):
        # about as accurate and ~15 % faster
        sel = idx[s:s + BATCH]
        V = len(sel)
        init = priors = None
        if init_expression is not None:
            init = {"expression": np.asarray(init_expression)[sel][None]}
        if scores is not None:
            priors = {"expression": np.asarray(scores)[sel][None]}
        # the per-frame blocks are tiny (59 x 59): a second OpenMP thread gains ~10 % on an idle machine and loses
        # 20-30x when another process holds a core (threads spin at every barrier; measured 1.6 s vs 43 s for 90
        # frames on 2 busy cores), so CPU tracking runs on one thread
        with one_torch_thread(cfg.device):
            res = ba.fit(points[sel][None], np.ones((1, V, L)), np.tile(np.asarray(size, np.float64), (1, V, 1)),
                         focal_init=np.full((1, V), float(focal)), focal_known=np.ones((1, V), bool), init=init,
                         cancel=cancel, priors=priors)
        expr[sel], R[sel], t[sel] = res.expression[0], res.R[0], res.t[0]
        if progress is not None:
            progress(min(1.0, (s + V) / max(len(idx), 1)))
    return expr, R, t


def whittaker(y: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """argmin_x sum_k w_k |x_k - y_k|^2 + lam sum_k |x_{k-1} - 2 x_k + x_{k+1}|^2, every column of y at once.

    Frames with w = 0 are filled by the smoothness term alone (a cubic-spline-like interpolation)."""
    from scipy.linalg import solveh_banded

    N = len(y)
    # pentadiagonal lam D2^T D2 + diag(w), in the upper banded form solveh_banded takes
    d2 = np.zeros((3, N))
    core = np.array([1.0, -2.0, 1.0])
    k = np.arange(N - 2)  # second-difference row k adds core core^T to the 3x3 block at (k, k)
    for i in range(3):
        for j in range(i, 3):
            d2[2 - (j - i), k + j] += core[i] * core[j]
    ab = lam * d2
    ab[2] += w
    return solveh_banded(ab, w[:, None] * y)


def smooth_track(expr, R, t, confidence, lam: float, ref: int, fast=None, max_gap: int | None = None):
    """Smooth and gap-fill (expression, rotation, translation) over the frames.

    Rotations are smoothed as rotation vectors of the head's motion relative to frame `ref`, which stay far
    from the 180-degree wrap for any head that still faces the camera. `fast` (E,) marks the expression channels
    smoothed with LID_SMOOTHING of lam; gaps longer than max_gap frames are bridged by straight lines."""
    from scipy.spatial.transform import Rotation

    w = np.asarray(confidence, np.float64)
    ok = np.nonzero(w > 0)[0]
    Q = Rotation.from_matrix(R @ R[ref].T).as_rotvec()
    x = np.concatenate([expr, Q, t], 1)
    out = x.copy()
    lo, hi = ok[0], ok[-1] + 1
    if lam > 0 and hi - lo >= 3:
        out[lo:hi] = whittaker(x[lo:hi], w[lo:hi], lam)
        if fast is not None and np.any(fast):
            cols = np.flatnonzero(fast)
            out[lo:hi, cols] = whittaker(x[lo:hi, cols], w[lo:hi], lam * LID_SMOOTHING)
    else:  # no smoothing: straight-line gap filling
        for c in range(x.shape[1]):
            out[lo:hi, c] = np.interp(np.arange(lo, hi), ok, x[ok, c])
    if max_gap is not None:
        for a, b in zip(ok[:-1], ok[1:]):
            if b - a - 1 > max_gap:
                f = (np.arange(a + 1, b) - a) / (b - a)
                out[a + 1:b] = out[a] + f[:, None] * (out[b] - out[a])
    out[:lo], out[hi:] = out[lo], out[hi - 1]  # hold the first/last seen state over missing ends
    E = expr.shape[1]
    R_out = Rotation.from_rotvec(out[:, E:E + 3]).as_matrix() @ R[ref]
    return np.clip(out[:, :E], 0.0, 1.0), R_out, out[:, E + 3:]


def frame_confidence(err_px, iod_px, valid) -> np.ndarray:
    """Data weight per frame: inverse squared landmark error (relative to the eye distance), 1 for a typical
    frame and never above; frames the fit explains badly (occlusion, blur, extreme pose) lean on neighbours."""
    rel = np.maximum(np.asarray(err_px) / np.maximum(iod_px, 1.0) * 100.0, CONFIDENCE_FLOOR)
    c = np.zeros(len(rel))
    v = np.asarray(valid, bool) & np.isfinite(rel)
    if v.any():
        c[v] = np.clip((np.median(rel[v]) / rel[v]) ** 2, 0.05, 1.0)
    return c


def landmark_errors(model: FaceModel, spec: LandmarkSpec, identity, focal, size, expr, R, t, points) -> np.ndarray:
    """(N,) median reprojection error (px) of usable landmarks for given per-frame parameters, the landmarks
    modelled as the fitter does (spec.points: the face oval at each frame's view yaw, the pupils turned by the
    gaze)."""
    from .spec import landmark_evaluator, view_yaw

    evaluate = landmark_evaluator(spec, personalised_model(model, identity))
    P = evaluate(expr, [view_yaw(r, tt) for r, tt in zip(R, t)])
    Xc = np.einsum("nij,nlj->nli", R, P) + t[:, None]
    cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    uv = np.stack([focal * Xc[..., 0] / Xc[..., 2] + cx, focal * Xc[..., 1] / Xc[..., 2] + cy], -1)
    e = np.linalg.norm(uv - points, axis=-1)[:, spec.valid]
    return np.median(e, axis=1)


def track(model: FaceModel, spec: LandmarkSpec, identity, focal: float, points, valid, size, *, fps: float = 30.0,
          smoothing: float = 1.0, reference: int | None = None, init_expression=None, device=None, progress=None,
          cancel=None, scores=None) -> Track:
    """points (N, L, 2) px for every frame (anything where valid is False); size (w, h) of the frames; scores
    (N, E) the detector's own expression scores per frame (nan where none): a prior, as for photos."""
    points, valid = np.asarray(points, np.float64), np.asarray(valid, bool)
    if not valid.any():
        raise ValueError("no frame has a face")
    expr, R, t = fit_frames(model, spec, identity, focal, points, valid, size, init_expression, device, progress,
                            cancel, scores=scores)
    expr = resolve_antagonists(expr, model.expression_names)
    a, b = EYE_CORNERS[spec.format]
    iod = np.linalg.norm(points[:, a] - points[:, b], axis=-1)
    err = np.full(len(points), np.nan)
    err[valid] = landmark_errors(model, spec, identity, focal, size, expr[valid], R[valid], t[valid], points[valid])
    conf = frame_confidence(err, iod, valid)
    ref = int(reference) if reference is not None and valid[reference] else int(np.nonzero(valid)[0][0])
    lam = smoothing * (fps / REFERENCE_FPS) ** 4
    e_s, R_s, t_s = smooth_track(expr, R, t, conf, lam, ref, fast=np.isin(model.expression_names, LID_SHAPES),
                                 max_gap=int(round(MAX_SMOOTH_GAP_S * fps)))
    e_s = resolve_antagonists(e_s, model.expression_names)  # smoothing can overlap a pair where one hands over
    err_s = np.full(len(points), np.nan)
    err_s[valid] = landmark_errors(model, spec, identity, focal, size, e_s[valid], R_s[valid], t_s[valid],
                                   points[valid])
    return Track(expression=e_s, R=R_s, t=t_s, reprojection_px=err_s, raw_expression=expr, raw_R=R, raw_t=t,
                 confidence=conf)


def frame_angles(R) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees (fitting.head_angles per frame)."""
    return np.array([head_angles(r) for r in R])


def rough_poses(model: FaceModel, spec: LandmarkSpec, points, valid, size) -> np.ndarray:
    """(N, 3) yaw, pitch, roll (deg) from PnP on the mean face with a guessed focal: enough to spread frames."""
    import cv2

    P = (model.neutral[spec.vertex_ids] * spec.bary[..., None]).sum(1).astype(np.float64)
    use = spec.valid & ~spec.contour & ~spec.iris
    f = float(max(size))
    K = np.array([[f, 0, (size[0] - 1) / 2], [0, f, (size[1] - 1) / 2], [0, 0, 1]])
    out = np.full((len(points), 3), np.nan)
    for k in np.nonzero(valid)[0]:
        ok, rvec, _ = cv2.solvePnP(P[use], np.asarray(points[k], np.float64)[use], K, None, flags=cv2.SOLVEPNP_SQPNP)
        if ok:
            out[k] = head_angles(cv2.Rodrigues(rvec)[0])
    return out


def select_identity_frames(angles, valid, n: int = 6, activity=None) -> tuple[list[int], int]:
    """Up to n well-spread frames for the identity fit (in frame order) and the most frontal of them.

    Greedy farthest-point sampling in (yaw, pitch, roll/2) degrees, starting from the most frontal frame.
    A frame's time (scaled to span 10 degrees) joins the distance so a video with little head motion still
    gives frames from across the clip rather than n copies of one moment; `activity` (e.g. the sum of
    MediaPipe's expression scores) lightly favours near-neutral frames, where the expression basis has the
    least to explain."""
    angles = np.asarray(angles, np.float64)
    cand = np.nonzero(np.asarray(valid, bool) & np.isfinite(angles).all(1))[0]
    if len(cand) == 0:
        return [], -1
    N = len(angles)
    feat = np.column_stack([angles[cand, 0], angles[cand, 1], 0.5 * angles[cand, 2],
                            10.0 * cand / max(N - 1, 1)])
    act = np.zeros(len(cand)) if activity is None else 10.0 * np.asarray(activity, np.float64)[cand]
    first = int(np.argmin(np.abs(angles[cand, 0]) + np.abs(angles[cand, 1]) + act))
    picks = [first]
    dist = np.linalg.norm(feat - feat[first], axis=1)
    while len(picks) < min(n, len(cand)):
        k = int(np.argmax(dist - 0.5 * act))
        if dist[k] <= 0:
            break
        picks.append(k)
        dist = np.minimum(dist, np.linalg.norm(feat - feat[k], axis=1))
    return sorted(int(cand[k]) for k in picks), int(cand[first])
