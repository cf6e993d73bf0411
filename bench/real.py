"""Real-detector benchmark: the fit as users get it, on MediaPipe's own output.

    python -m bench.real [--out docs] [--subjects 24] [--quick]

(a) Rendered ground truth through the real detector (bench/gt_scenes.py: realistic skin, eyes with iris and gaze,
    lashes, lighting, cluttered backgrounds; 24-85 mm lenses at 0.5-2 m), 1, 3 and 5 photos per subject. Metrics:
    face-region shape error (similarity-aligned; NoW-style scan-to-mesh), rotation, focal, expression MAE over the 52
    ARKit shapes and the 6 eye shapes, and the mean weight of eye shapes whose truth is 0. MediaPipe's own
    blendshape classifier on the same photos is the reference row.
(b) Real photos (tests/data): 5 people with 2-4 unconstrained photos each (same-person/), plus the hrn and mvfnet
    sets. Agreement with MediaPipe's blendshape scores (MAE over 52 and over the 6 eye shapes), antagonist pairs
    both above 0.3, and identity consistency: face-region RMS between fits of the same person against fits of
    different people, from single photos and from 2-photo subsets.

Everything goes through pipeline.fit_views, the product's own fitting call.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import time
from pathlib import Path

import numpy as np

from backend.face_model import ANTAGONISTS, ARKIT_52, FACE_VERTICES, load_face_model, shape_names_to_arkit

from . import gt_scenes
from .accuracy import machine_info, rot_angle, scan_to_mesh_mm
from .report import write_section
from .synthetic import similarity_align

SECTION = "## Real detector"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EYE6 = ["eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight"]
BENCH_SEED = 50000  # rendered subjects 50000+; the landmark calibration uses 10000-30000
ARKIT_ANTAGONISTS = [(a, b) for a, b in ANTAGONISTS]  # ICT and ARKit share these names


def arkit_vector(weights: dict) -> np.ndarray:
    return np.array([float(weights.get(n, 0.0)) for n in ARKIT_52])


def antagonist_pairs(ark: dict, threshold: float = 0.3) -> list:
    return [(a, b) for a, b in ARKIT_ANTAGONISTS if ark.get(a, 0) > threshold and ark.get(b, 0) > threshold]


# ---------------------------------------------------------------------------------------------- (a) rendered
def _views_of(scene):
    from backend.landmarks.base import Detection
    from backend.pipeline import View

    out = []
    for k, p in enumerate(scene.photos):
        if p.points is None:
            continue
        w, h = p.size
        det = Detection(points=p.points, format="mediapipe478", box=(*p.points.min(0), *p.points.max(0)),
                        blendshapes=p.blendshapes)
        out.append((k, View(name=f"v{k}", source_path="", width=w, height=h, detection=det)))
    return out


def evaluate_scene(model, scene, fit, rng) -> dict | None:
    """Metrics of one rendered scene: fit(views) -> (spec, FitResult) is the product's fit."""
    kv = _views_of(scene)
    if not kv:
        return None
    idx = [k for k, _ in kv]
    spec, res = fit([v for _, v in kv])
    a, b = FACE_VERTICES
    fit_n = model.vertices(res.identity[0]).astype(np.float64)
    true_n = model.vertices(scene.identity).astype(np.float64)
    pv = np.linalg.norm(similarity_align(fit_n[a:b], true_n[a:b]) - true_n[a:b], axis=1) * 10
    now = scan_to_mesh_mm(model, fit_n, true_n, False, 1500, rng)
    names = model.expression_names
    rot, foc, ours, mp, truth = [], [], [], [], []
    for j, k in enumerate(idx):
        p = scene.photos[k]
        rot.append(rot_angle(res.R[0, j] @ p.R.T))
        foc.append(res.focal[0, j] / p.focal - 1)
        ours.append(arkit_vector(shape_names_to_arkit(dict(zip(names, res.expression[0, j])))))
        truth.append(arkit_vector(shape_names_to_arkit(dict(zip(names, p.expression)))))
        mp.append(arkit_vector(p.blendshapes or {}))
    ours, mp, truth = np.array(ours), np.array(mp), np.array(truth)
    eye = [ARKIT_52.index(n) for n in EYE6]
    zero_eye = truth[:, eye] < 1e-6
    from backend.pipeline import shape_confidence

    expected = shape_confidence(model, res).get("median", float("nan"))
    return dict(pv_median=float(np.median(pv)), now_median=float(np.median(now)), expected_mm=expected,
                rot_deg=float(np.mean(rot)),
                focal_pct=float(np.median(np.abs(foc)) * 100), expr_mae=float(np.abs(ours - truth).mean()),
                eye_mae=float(np.abs(ours - truth)[:, eye].mean()),
                eye_zero_mean=float(ours[:, eye][zero_eye].mean()) if zero_eye.any() else float("nan"),
                mp_expr_mae=float(np.abs(mp - truth).mean()), mp_eye_mae=float(np.abs(mp - truth)[:, eye].mean()),
                mp_eye_zero_mean=float(mp[:, eye][zero_eye].mean()) if zero_eye.any() else float("nan"),
                antagonists=sum(len(antagonist_pairs(dict(zip(ARKIT_52, o)))) for o in ours),
                detected=len(idx), photos=len(scene.photos))


def product_fit(views):
    from backend.pipeline import fit_views

    _, spec, res = fit_views(views)
    return spec, res


def baseline_fit(views):
    """The fit as it was before the real-detector work (commit 29d838f): the geometric MediaPipe->ICT map, no
    antagonist penalty, MediaPipe's scores only as the starting point, the focal prior on the best probe."""
    from backend import paths
    from backend.correspondence import load_correspondence
    from backend.fit import BundleAdjuster, FitConfig, LandmarkSpec
    from backend.fit.inputs import camera_groups, detector_scores

    model = load_face_model()
    c = load_correspondence(paths.MP_TO_ICT_GEOMETRIC)
    spec = LandmarkSpec("mediapipe478", c["tri_vertex_ids"], c["bary"], c["valid"].astype(bool),
                        c["contour"].astype(bool))
    cfg = FitConfig(antagonist_weight=0.0, blendshape_prior=0.0, focal_prior_equiv_mm=None, identity_prior=1.0,
                    focal_prior=4.0)
    pts = np.stack([v.detection.points for v in views])[None]
    sizes = np.array([[(v.width, v.height) for v in views]], np.float64)
    scores = detector_scores(model, views)
    init = None if scores is None else {"expression": np.nan_to_num(scores)[None]}
    res = BundleAdjuster(model, spec, cfg).fit_multistart(pts, np.ones(pts.shape[:3]), sizes,
                                                          groups=camera_groups(views)[None], init=init)
    return spec, res


LIMITS = ("What limits the shape, rotation and focal rows (measured while calibrating, on these renders): with the "
          "true pose, focal and expression given, a one-photo fit still lands 3.3 mm from the true shape; ideal "
          "landmarks with MediaPipe-sized independent noise give 1.4-1.5 mm; MediaPipe's own head-pose matrix is "
          "2-4 deg off; and only about 5 % of MediaPipe's point displacement between two faces is explained "
          "linearly by the identity difference - its points lean towards its own template in a way that repeats "
          "across photos of one face, so more photos do not average it out (3.1-3.4 mm at 1, 3 and 5 photos). The "
          "'expected' column adds that measured floor (backend/pipeline.py SHAPE_ERROR_FLOOR_MM). The vertical "
          "gaze is not recovered yet (correlation 0.05 with the truth; the horizontal: 0.76).")


def section_rendered(lines, model, n_subjects, view_counts, results, fit=product_fit):
    lines += [f"### (a) rendered ground truth through MediaPipe: {n_subjects} subjects per row (seeds {BENCH_SEED}+), "
              "24-85 mm lenses at 0.5-2 m, faces 60-260 px between the eye corners, yaw spread up to +-70 deg, a fresh "
              "expression (none in 30 %), gaze, light and background per photo", "",
              "Shape: face region after similarity alignment (median per-vertex, mm) and NoW-style scan-to-mesh after a "
              "7-landmark rigid alignment; 'expected' = the shape_uncertainty_mm median result.json reports. "
              "Expression: MAE over the 52 ARKit shapes, and over the 6 eye shapes "
              "(blink/squint/wide L/R); 'eye at 0' = mean fitted weight of the eye shapes whose truth is 0. Medians "
              "over subjects (MAE: means). 'MediaPipe' rows: MediaPipe's own blendshape classifier on the same photos.",
              "", "| photos | shape mm | expected mm | NoW mm | rotation deg | focal % | expr MAE | eye MAE | eye at 0 | "
              "antagonist pairs > 0.3 | detected |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for nv in view_counts:
        t0 = time.perf_counter()
        scenes = gt_scenes.scenes(model, range(BENCH_SEED + 1000 * nv, BENCH_SEED + 1000 * nv + n_subjects), nv)
        rows = [r for r in (evaluate_scene(model, s, fit, rng) for s in scenes) if r is not None]
        m = {k: float(np.nanmedian([r[k] for r in rows])) for k in ("pv_median", "now_median", "rot_deg", "focal_pct",
                                                                      "expected_mm")}
        m.update({k: float(np.nanmean([r[k] for r in rows])) for k in
                  ("expr_mae", "eye_mae", "eye_zero_mean", "mp_expr_mae", "mp_eye_mae", "mp_eye_zero_mean")})
        m["antagonists"] = int(sum(r["antagonists"] for r in rows))
        m["detected"] = f"{sum(r['detected'] for r in rows)}/{sum(r['photos'] for r in rows)}"
        m["seconds"] = time.perf_counter() - t0
        results[f"rendered_{nv}"] = m
        lines.append(f"| {nv} | {m['pv_median']:.3f} | {m['expected_mm']:.2f} | {m['now_median']:.3f} | "
                     f"{m['rot_deg']:.2f} | {m['focal_pct']:.1f} | "
                     f"{m['expr_mae']:.3f} | {m['eye_mae']:.3f} | {m['eye_zero_mean']:.3f} | {m['antagonists']} | "
                     f"{m['detected']} |")
        lines.append(f"| {nv}, MediaPipe | | | | | | {m['mp_expr_mae']:.3f} | {m['mp_eye_mae']:.3f} | "
                     f"{m['mp_eye_zero_mean']:.3f} | | |")
        print(lines[-2], flush=True)
    lines += [LIMITS, ""]


# ---------------------------------------------------------------------------------------------- (b) real photos
def real_sets() -> dict:
    """{person: [photo paths]} of the real photos in tests/data."""
    out = {}
    for d in sorted((DATA / "same-person").iterdir()):
        if d.is_dir() and d.name != "video":
            out[d.name] = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    out["hrn"] = sorted((DATA / "multiview-hrn").glob("*.jpg"))
    out["mvfnet"] = sorted((DATA / "multiview-mvfnet").glob("*.jpg"))
    return out


def _rms_mm(model, a, b) -> float:
    lo, hi = FACE_VERTICES
    x = model.vertices(a)[lo:hi].astype(np.float64)
    y = model.vertices(b)[lo:hi].astype(np.float64)
    return float(np.sqrt((np.linalg.norm(similarity_align(x, y) - y, axis=1) ** 2).mean()) * 10)


def identity_ratio(model, fits: dict) -> tuple[float, float, float, int, int]:
    """fits {person: [identity, ...]}: (median same-person RMS, median different-person RMS, ratio, n same, n diff)."""
    same = [_rms_mm(model, a, b) for ids in fits.values() for a, b in itertools.combinations(ids, 2)]
    diff = [_rms_mm(model, a, b) for p, q in itertools.combinations(fits, 2) for a in fits[p] for b in fits[q]]
    s, d = float(np.median(same)), float(np.median(diff))
    return s, d, s / d, len(same), len(diff)


def section_real(lines, model, results, fit=product_fit):
    from backend.pipeline import detect_views

    sets = real_sets()
    views = {}
    for person, paths in sets.items():
        views[person] = [detect_views([p])[0][0] for p in paths]
    per_photo, single = [], {}
    names = model.expression_names
    eye = [ARKIT_52.index(n) for n in EYE6]
    for person, vs in views.items():
        single[person] = []
        for v in vs:
            spec, res = fit([v])
            ours = shape_names_to_arkit(dict(zip(names, res.expression[0, 0])))
            mp = v.detection.blendshapes or {}
            o, m = arkit_vector(ours), arkit_vector(mp)
            per_photo.append(dict(person=person, name=v.name, mae=float(np.abs(o - m).mean()),
                                  eye=float(np.abs(o - m)[eye].mean()), antagonists=antagonist_pairs(ours),
                                  mp_antagonists=antagonist_pairs(mp), focal=float(res.focal[0, 0]),
                                  ours=ours, mp=mp))
            single[person].append(res.identity[0])
    pairs = {}
    for person, vs in views.items():
        pairs[person] = []
        subsets = list(itertools.combinations(range(len(vs)), 2))
        for sub in subsets:
            spec, res = fit([vs[i] for i in sub])
            pairs[person].append(res.identity[0])
    s1 = identity_ratio(model, {p: ids for p, ids in single.items() if len(ids) >= 2})
    s2 = identity_ratio(model, pairs)
    n_ant = sum(len(r["antagonists"]) for r in per_photo)
    mae = float(np.mean([r["mae"] for r in per_photo]))
    eye_mae = float(np.mean([r["eye"] for r in per_photo]))
    results["real"] = dict(mae=mae, eye_mae=eye_mae, antagonists=n_ant, single_ratio=s1[2], pair_ratio=s2[2],
                           photos=len(per_photo), per_photo=[{k: v for k, v in r.items() if k not in ("ours", "mp")}
                                                             for r in per_photo])
    lines += [f"### (b) real photos: {len(per_photo)} photos of {len(views)} people (tests/data/same-person, "
              "multiview-hrn, multiview-mvfnet)", "",
              "Expression agreement with MediaPipe's own blendshape classifier on each photo fitted alone (MAE over the "
              "52 ARKit shapes and the 6 eye shapes; means over photos), antagonist pairs both above 0.3 "
              f"({', '.join(f'{a}/{b}' for a, b in ARKIT_ANTAGONISTS[:8])}, and the gaze pairs), and identity "
              "consistency: face-region RMS (mm, after similarity alignment) between two fits of the same person "
              "against fits of different people (medians; ratio = same / different).", "",
              "| metric | value | target |", "|---|---:|---:|",
              f"| expression MAE vs MediaPipe, all 52 | {mae:.3f} | < 0.08 |",
              f"| expression MAE vs MediaPipe, eye 6 | {eye_mae:.3f} | < 0.15 |",
              f"| antagonist pairs > 0.3 (all photos) | {n_ant} | 0 |",
              f"| antagonist pairs > 0.3 in MediaPipe's own scores | {sum(len(r['mp_antagonists']) for r in per_photo)} | |",
              f"| identity, single photos: same {s1[0]:.2f} mm ({s1[3]} pairs) / different {s1[1]:.2f} mm ({s1[4]}) | "
              f"{s1[2]:.2f} | < 0.6 |",
              f"| identity, 2-photo fits: same {s2[0]:.2f} mm ({s2[3]} pairs) / different {s2[1]:.2f} mm ({s2[4]}) | "
              f"{s2[2]:.2f} | < 0.4 |",
              "", "Per photo (fitted alone): eye shapes ours / MediaPipe (blink, squint, wide; left eye), focal:", "",
              "| photo | MAE 52 | MAE eye | blink L | squint L | wide L | focal px | antagonists |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in per_photo:
        o, m = r["ours"], r["mp"]
        cell = lambda n: f"{o.get(n, 0):.2f} / {m.get(n, 0):.2f}"  # noqa: E731
        lines.append(f"| {r['person']}/{r['name']} | {r['mae']:.3f} | {r['eye']:.3f} | {cell('eyeBlinkLeft')} | "
                     f"{cell('eyeSquintLeft')} | {cell('eyeWideLeft')} | {r['focal']:.0f} | "
                     f"{', '.join(f'{a}+{b}' for a, b in r['antagonists']) or '-'} |")
    lines.append("")


def run(out=None, n_subjects=24, view_counts=(1, 3, 5), rendered=True, real=True, baseline=False) -> dict:
    t0 = time.perf_counter()
    model = load_face_model()
    results = {}
    fit = baseline_fit if baseline else product_fit
    title = SECTION + (" (baseline: the fit before calibration)" if baseline else "")
    lines = [title, "", f"Command: `python -m bench.real --out docs --subjects {n_subjects}"
             f"{' --baseline' if baseline else ''}` (CPU). Machine:", ""]
    lines += machine_info() + [""]
    lines += ["Targets (rendered, real detector): shape median < 1.0 mm with 3 photos, < 2.0 mm with 1; rotation "
              "< 1.5 deg; focal < 10 % with 3 photos; mean weight < 0.1 on eye shapes whose truth is 0; expression MAE "
              "no worse than MediaPipe's own classifier. (Real photos): eye-shape MAE against MediaPipe < 0.15, all-52 "
              "MAE < 0.08; no antagonist pair above 0.3; identity ratio < 0.6 from single photos, < 0.4 from 2-photo "
              "fits.", ""]
    if rendered:
        section_rendered(lines, model, n_subjects, view_counts, results, fit)
    if real:
        section_real(lines, model, results, fit)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"Benchmark wall time {time.perf_counter() - t0:.0f} s (rendered scenes are cached in .cache/gt/ after "
                 f"the first run), peak memory {rss:.0f} MiB; load average at the end: %.2f / %.2f / %.2f."
                 % os.getloadavg())
    results["markdown"] = "\n".join(lines)
    if out:
        write_section(Path(out) / "benchmarks.md", lines)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.real", description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder whose benchmarks.md gets the 'Real detector' section (e.g. docs)")
    ap.add_argument("--subjects", type=int, default=24, help="rendered subjects per row")
    ap.add_argument("--no-rendered", action="store_true")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--baseline", action="store_true", help="the fit before calibration, for comparison")
    args = ap.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    r = run(args.out, args.subjects, rendered=not args.no_rendered, real=not args.no_real, baseline=args.baseline)
    print(r["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
