"""Is every view the same person? A leave-one-out test on the landmark fit.

pipeline.consistency_warnings compares each view's reprojection error in the *joint* fit, but a 3DMM with 100
identity modes and per-view expressions can bend to fit a stranger's landmarks almost as well as the subject's
(measured: the stranger's error was 1.08 % of eye distance against 0.70-0.95 % for the subject's own views), so
it never fires. Here each view is instead fitted with the identity the *other* views agree on (identity fixed,
pose/expression/focal free) and compared with a free fit of that view alone. For the same person the shared
identity costs little; for someone else it cannot explain the face's proportions, and the error rises.

All fits run as one batch per stage (B = V jobs), so the check costs about three extra single fits.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

# ratio = error(view with the others' identity) / error(view fitted alone). Measured on the test photos (MediaPipe
# landmarks, FitConfig(iterations=25), bounded expression steps): the subject's own mvfnet views 1.23-1.43 (extra
# error <= 0.27 % of eye distance; up to 1.53 / 0.34 % beside a stranger); a stranger added to them: 5932.jpg 1.61
# (+0.47 %), image_0010.png 1.67 (+0.46 %), astronaut.png 2.02 (+0.58 %). The margin is thin (three strangers
# measured), so a view is flagged only when it is also the worst one. Re-measure: tools/measure_identity_check.py.
RATIO_WARN = 1.5
MIN_EXTRA = 0.0033  # extra error as a fraction of eye distance: sub-pixel differences are no evidence


def _iod(views) -> np.ndarray:
    return np.array([max(float(v.detection.interocular), 1.0) for v in views])


def identity_scores(views, model, spec, config=None) -> dict:
    """Per view: `alone` (median error of a free single-view fit), `others` (median error with the identity fitted
    to the other views only), both as fractions of eye distance, and `ratio` = others / alone."""
    from .adjuster import BundleAdjuster, FitConfig

    V = len(views)
    # the thresholds above were measured with 25 iterations; keep them meaningful when the default changes
    cfg = replace(config or FitConfig(iterations=25))
    pts = np.stack([v.detection.points for v in views])  # (V, L, 2)
    sizes = np.array([(v.width, v.height) for v in views], np.float64)
    focal = [v.focal_px for v in views]
    iod = _iod(views)
    ba = BundleAdjuster(model, spec, cfg)

    def single(ba, init_identity=None):
        kw = {}
        if any(f is not None for f in focal):
            kw["focal_init"] = np.array([[f or max(s)] for f, s in zip(focal, sizes)])
            kw["focal_known"] = np.array([[f is not None] for f in focal])
        init = None if init_identity is None else {"identity": init_identity}
        res = ba.fit(pts[:, None], np.ones((V, 1, pts.shape[1])), sizes[:, None], init=init, **kw)
        return np.array([np.nanmedian(res.reprojection_px[b, 0]) for b in range(V)]) / iod

    alone = single(ba)
    # leave-one-out joint fits: job b sees every view except b (zero weight = padding, as the fitter allows)
    vis = np.ones((V, V, pts.shape[1]))
    vis[np.arange(V), np.arange(V)] = 0.0
    keys = [(v.width, v.height, round(v.focal_px or 0, 1)) for v in views]
    groups = np.array([[sorted(set(keys), key=keys.index).index(k) for k in keys]] * V)
    loo = ba.fit(np.broadcast_to(pts, (V, *pts.shape)).copy(), vis, np.broadcast_to(sizes, (V, V, 2)).copy(),
                 groups=groups)
    others = single(BundleAdjuster(model, spec, replace(cfg, fix_identity=True)), loo.identity)
    return {"alone": alone, "others": others, "ratio": others / np.maximum(alone, 1e-6)}


def pipeline_identity_warnings(views, model, spec) -> list[str]:
    """For pipeline.reconstruct, after fit_views: `warnings += pipeline_identity_warnings(views, model, spec)`.
    Never fails the run: a check that cannot run is no reason to lose the reconstruction."""
    try:
        return identity_warnings(views, model, spec)
    except Exception:  # noqa: BLE001 - advisory only
        return []


def identity_warnings(views, model, spec, config=None) -> list[str]:
    """Warnings naming each view that does not look like the person in the other views (needs >= 3 views:
    with two, either one could be the odd one out, and one view's identity is too loosely determined)."""
    if len(views) < 3:
        return []
    s = identity_scores(views, model, spec, config)
    out = []
    worst = int(np.argmax(s["ratio"]))
    for i, (v, r, a, o) in enumerate(zip(views, s["ratio"], s["alone"], s["others"])):
        if i == worst and r > RATIO_WARN and o - a > MIN_EXTRA:
            out.append(f"{v.name}: does not match the face in the other photos (landmark error {100 * o:.1f}% "
                       f"of eye distance with their shape vs {100 * a:.1f}% alone); is it the same person?")
    return out
