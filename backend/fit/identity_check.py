"""Is every view the same person? Each view against what the *other* views say about the shape.

pipeline.consistency_warnings compares each view's reprojection error in the joint fit, but a 3DMM with 100
identity modes and per-view expressions can bend to fit a stranger's landmarks almost as well as the subject's,
so it never fires. Here every view is fitted twice, alone:
- with the ordinary identity prior ("alone"), and
- with the identity prior the other views give it: their leave-one-out posterior N(a_-v, P_-v^-1) ("others").
A view of the same person costs little more under the others' posterior; a stranger's face cannot match the
proportions the others pin down, and the error rises. Using the posterior, not a fixed identity, is what keeps a
frontal photo beside two profiles from being flagged: the profiles barely constrain the face's width, so the
frontal view may set it freely, while the profile line they do fix still catches a stranger.

Cost linear in the number of views: the leave-one-out posteriors come from the joint fit's own normal equations
(remove view v's information and take one Newton step: a_-v = a* + P_-v^-1 r_v, P_-v = P - S_v), and the two
single-view fits of every view run as one batch each.
"""
from __future__ import annotations

import numpy as np

# ratio = error(view under the others' posterior) / error(view alone), medians over its landmarks. Measured with
# tools/measure_identity_check.py (MediaPipe on the real photos in tests/data, each set alone and with every other
# person's photo added, and rendered yaw series of one face): with TEMPER 0.3 no view of one person exceeds 1.34
# (136 views, the rendered yaw series included), and 8 of 34 strangers exceed 1.35 - the clear ones (1.39-1.70);
# MediaPipe's points carry too little of a face's identity to catch the rest without false alarms. A view is
# flagged only when it is also the worst one and its extra error is beyond sub-pixel noise.
RATIO_WARN = 1.35
# The joint fit's information treats landmark errors as independent; MediaPipe's are not (a whole photo's points
# lean together), so the others' posterior is tempered by this factor (precision x TEMPER) before a view is held
# to it: untempered, a frontal photo beside two profiles was held to shape the profiles only seemed to fix (rendered
# yaw series of one face: ratios up to 1.81 untempered, 1.32 at 0.3).
TEMPER = 0.3
# ... and the information of more than this many other views counts as this many: the detector's lean repeats over
# photos of one face, so the others' posterior stops tightening (64 synthetic views of one face: one flagged at
# 0.9 % vs 0.6 % of eye distance when the posterior grew with every view)
TEMPER_VIEWS = 3
MIN_EXTRA = 0.0033  # extra error as a fraction of eye distance: sub-pixel differences are no evidence
MAX_VIEWS = 64  # above this, the check runs on the best-spread views only (the joint fit uses them all)


def _iod(views) -> np.ndarray:
    return np.array([max(float(v.detection.interocular), 1.0) for v in views])


def identity_scores(views, model, spec, config=None, joint=None, progress=None, cancel=None, device=None) -> dict:
    """Per view: `alone` and `others` (median landmark error as a fraction of eye distance, fitted alone with the
    ordinary prior and with the other views' posterior) and `ratio` = others / alone.

    joint: the FitResult of all views fitted together (pipeline.fit_views); fitted here when not given.
    device: where the fits run (None: the config's)."""
    from .adjuster import BundleAdjuster
    from .inputs import camera_groups, detector_scores
    from .presets import product_config

    from dataclasses import replace

    V = len(views)
    # the same modes as the joint fit (pipeline.identity_modes): its identity is what the others' posterior holds
    K = joint.identity.shape[-1] if joint is not None else None
    cfg = config or product_config(spec.format, V)
    if K is not None:
        cfg = replace(cfg, n_identity=K)
    if device is not None:
        cfg = replace(cfg, device=device)
    pts = np.stack([v.detection.points for v in views])  # (V, L, 2)
    sizes = np.array([(v.width, v.height) for v in views], np.float64)
    focal = [v.focal_px for v in views]
    scores = detector_scores(model, views)
    iod = _iod(views)
    ba = BundleAdjuster(model, spec, cfg)
    groups = camera_groups(views)
    if joint is None:
        joint = ba.fit_multistart(pts[None], np.ones((1, V, pts.shape[1])), sizes[None], groups=groups[None],
                                  priors=None if scores is None else {"expression": scores[None]}, cancel=cancel)
    if progress is not None:
        progress(0.2)
    info = ba.view_information(pts[None], np.ones((1, V, pts.shape[1])), sizes[None], joint, groups[None],
                               priors=None if scores is None else {"expression": scores[None]})
    K = ba.K
    P = info["precision"][0]  # (K, K) the joint posterior precision (prior included)
    S, r = info["view_precision"][0], info["view_gradient"][0]  # (V, K, K), (V, K)
    P_loo = P[None] - S
    a_loo = joint.identity[0][None, :K] + np.linalg.solve(P_loo, r[..., None])[..., 0]
    prior = ba.cfg.identity_prior * np.eye(K)
    temper = TEMPER * min(1.0, TEMPER_VIEWS / max(V - 1, 1))
    P_loo = prior + temper * (P_loo - prior)  # temper the data's share, keep the prior's

    kw = {}
    if any(f is not None for f in focal):
        kw["focal_init"] = np.array([[f or max(s)] for f, s in zip(focal, sizes)])
        kw["focal_known"] = np.array([[f is not None] for f in focal])
    exp_prior = {} if scores is None else {"expression": scores[:, None]}

    def single(priors):
        res = ba.fit_multistart(pts[:, None], np.ones((V, 1, pts.shape[1])), sizes[:, None], priors=priors,
                                cancel=cancel, **kw)
        return np.array([np.nanmedian(res.reprojection_px[b, 0]) for b in range(V)]) / iod

    alone = single(exp_prior or None)
    if progress is not None:
        progress(0.6)
    others = single({**exp_prior, "identity_mean": a_loo, "identity_precision": P_loo})
    if progress is not None:
        progress(1.0)
    return {"alone": alone, "others": others, "ratio": others / np.maximum(alone, 1e-6)}


def spread_subset(views, rough_angles, n: int) -> list[int]:
    """Up to n view indices spread over head pose (farthest-point sampling in yaw/pitch, from the most frontal)."""
    ang = np.asarray(rough_angles, np.float64)
    first = int(np.argmin(np.abs(ang).sum(1)))
    picks = [first]
    dist = np.linalg.norm(ang - ang[first], axis=1)
    while len(picks) < min(n, len(views)):
        k = int(np.argmax(dist))
        picks.append(k)
        dist = np.minimum(dist, np.linalg.norm(ang - ang[k], axis=1))
    return sorted(picks)


def pipeline_identity_warnings(views, model, spec, joint=None, config=None, progress=None, cancel=None,
                               device=None) -> list[str]:
    """For pipeline.reconstruct, after fit_views. Never fails the run: a check that cannot run is no reason to lose
    the reconstruction, but it says so (a warning) rather than staying silent. Cancellation still cancels."""
    from ..errors import CancelledError

    try:
        return identity_warnings(views, model, spec, config, joint, progress, cancel, device)
    except CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - advisory only
        return [f"the same-person check could not run ({type(e).__name__}: {e}); the reconstruction is unaffected"]


def identity_warnings(views, model, spec, config=None, joint=None, progress=None, cancel=None,
                      device=None) -> list[str]:
    """Warnings naming each view that does not look like the person in the other views (needs >= 3 views:
    with two, either one could be the odd one out)."""
    if len(views) < 3:
        return []
    out = []
    sel = list(range(len(views)))
    if len(views) > MAX_VIEWS:
        from .tracking import rough_poses

        ang = rough_poses(model, spec, np.stack([v.detection.points for v in views]), np.ones(len(views), bool),
                          (views[0].width, views[0].height))
        sel = spread_subset(views, ang[:, :2], MAX_VIEWS)
        out.append(f"{len(views)} photos: the same-person check used {len(sel)} of them, spread over head pose")
        joint = None
    sub = [views[i] for i in sel]
    s = identity_scores(sub, model, spec, config, joint, progress, cancel, device)
    worst = int(np.argmax(s["ratio"]))
    for i, (v, r, a, o) in enumerate(zip(sub, s["ratio"], s["alone"], s["others"])):
        if i == worst and r > RATIO_WARN and o - a > MIN_EXTRA:
            out.append(f"{v.name}: does not match the face in the other photos (landmark error {100 * o:.1f}% "
                       f"of eye distance with their shape vs {100 * a:.1f}% alone); is it the same person?")
    return out

