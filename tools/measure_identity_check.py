"""Figures behind backend/fit/identity_check.py's thresholds.

    .venv/bin/python tools/measure_identity_check.py

For every real photo set of one person in tests/data with at least 3 photos (same-person/, multiview-hrn,
multiview-mvfnet) it prints each view's ratio (landmark error under the other views' posterior / alone) for the
set on its own, and with each stranger added (one photo of every other person, and the 300-W samples); then the
same for rendered yaw series of one subject (yaws -60, -50, 0 and others: the case that was falsely flagged) with
and without a rendered stranger. The threshold must sit above every own-view ratio and below the strangers'.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import pipeline  # noqa: E402
from backend.fit import identity_check  # noqa: E402

DATA = ROOT / "tests" / "data"


def real_sets() -> dict:
    sets = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))
            for d in sorted((DATA / "same-person").iterdir()) if d.is_dir() and d.name != "video"}
    sets["hrn"] = sorted((DATA / "multiview-hrn").glob("*.jpg"))
    sets["mvfnet"] = sorted((DATA / "multiview-mvfnet").glob("*.jpg"))
    return sets


def scores(views):
    model, spec, res = pipeline.fit_views(views)
    return identity_check.identity_scores(views, model, spec, joint=res)


def rendered_views(seed, yaws, identity_seed=None):
    """Detected views of one rendered subject at these yaws (bench/gt_scenes cameras, real MediaPipe)."""
    from backend.face_model import load_face_model
    from backend.landmarks.base import Detection
    from backend.landmarks.mediapipe_detector import MediaPipeDetector
    from bench import gt_scenes

    model = load_face_model()
    out = []
    with MediaPipeDetector() as det:
        for k, yaw in enumerate(yaws):
            sc, _ = gt_scenes.make_scene(model, seed * 100 + k, 1, det, yaw=yaw, identity_seed=identity_seed or seed)
            p = sc.photos[0]
            if p.points is None:
                continue
            w, h = p.size
            out.append(pipeline.View(name=f"r{seed}_{yaw:+.0f}", source_path="", width=w, height=h,
                                     detection=Detection(points=p.points, format="mediapipe478",
                                                         box=(*p.points.min(0), *p.points.max(0)),
                                                         blendshapes=p.blendshapes)))
    return out


def report(label, s, flagged_name=None):
    line = f"{label:34s} ratio {np.round(s['ratio'], 2)}"
    if flagged_name is not None:
        line += f"  stranger {s['ratio'][-1]:.2f}, own max {s['ratio'][:-1].max():.2f}"
    print(line, flush=True)
    return s["ratio"]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--temper", type=float, default=identity_check.TEMPER,
                    help="try another tempering of the others' posterior (identity_check.TEMPER)")
    identity_check.TEMPER = ap.parse_args().temper
    print(f"TEMPER {identity_check.TEMPER}", end=", ")
    print(f"RATIO_WARN {identity_check.RATIO_WARN}, MIN_EXTRA {100 * identity_check.MIN_EXTRA:.2f} % of eye distance")
    sets = real_sets()
    detected = {k: [pipeline.detect_views([p])[0][0] for p in v] for k, v in sets.items()}
    own_all, strangers = [], []
    for person, views in detected.items():
        if len(views) < 3:
            continue
        own_all += list(report(f"{person} ({len(views)} photos)", scores(views)))
        for other, ov in detected.items():
            if other != person:
                r = report(f"  + {other}/{ov[0].name}", scores(views + [ov[0]]), True)
                own_all += list(r[:-1])
                strangers.append(r[-1])
    for seed, yaws in ((61, (-60, -50, 0)), (62, (-55, 0, 50)), (63, (-30, 0, 30)), (64, (-60, -45, 5))):
        own = rendered_views(seed, yaws)
        if len(own) >= 3:
            own_all += list(report(f"rendered {seed} yaws {yaws}", scores(own)))
            st = rendered_views(seed + 50, (10,), identity_seed=seed + 500)
            if st:
                r = report("  + rendered stranger", scores(own + st), True)
                own_all += list(r[:-1])
                strangers.append(r[-1])
    print(f"own views: max ratio {max(own_all):.2f} (n {len(own_all)}); strangers: min {min(strangers):.2f}, "
          f"median {np.median(strangers):.2f} (n {len(strangers)}); caught at RATIO_WARN "
          f"{np.mean(np.array(strangers) > identity_check.RATIO_WARN):.0%}")


if __name__ == "__main__":
    main()
