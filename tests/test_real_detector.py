"""The fit on real detector output: real photos through MediaPipe, and faces rendered with known truth (bench/
render_gt.py) seen through MediaPipe. docs/benchmarks.md "Real detector" has the full tables (python -m bench.real);
these tests keep the properties that broke before from coming back."""
import json

import numpy as np
import pytest

from backend.face_model import ARKIT_52, shape_names_to_arkit
from bench.real import EYE6, antagonist_pairs, real_sets
from tests.conftest import DATA


@pytest.fixture(scope="module")
def real_photo_views():
    """Every real photo set of one person in tests/data, detected once (20 photos of 7 people; bench.real's set)."""
    from backend.pipeline import detect_views

    sets = real_sets()
    return {person: [detect_views([p])[0][0] for p in photos] for person, photos in sets.items()}


def test_real_photos_no_antagonists_and_eyes_agree_with_mediapipe(model, real_photo_views):
    """Single-photo fits of unconstrained real photos: no antagonist pair both above 0.3 (45 such pairs on these
    photos before), and the eye shapes near MediaPipe's own scores (eyeWide was 0.89 on average before: staring
    'zombie' eyes)."""
    from backend.pipeline import fit_views

    pairs, eye_err, all_err, wide = [], [], [], []
    for person, views in real_photo_views.items():
        for v in views:
            _, _, res = fit_views([v])
            ours = shape_names_to_arkit(dict(zip(model.expression_names, res.expression[0, 0])))
            mp = v.detection.blendshapes
            pairs += antagonist_pairs(ours)
            eye_err += [abs(ours[n] - mp[n]) for n in EYE6]
            all_err += [abs(ours[n] - mp[n]) for n in ARKIT_52 if n in mp]
            wide += [ours["eyeWideLeft"], ours["eyeWideRight"]]
    print(f"\nantagonist pairs {len(pairs)}, eye MAE {np.mean(eye_err):.3f}, all MAE {np.mean(all_err):.3f}, "
          f"mean eyeWide {np.mean(wide):.3f}")
    assert pairs == []
    assert np.mean(eye_err) < 0.15 and np.mean(all_err) < 0.08
    assert np.mean(wide) < 0.3


def test_single_photos_of_one_person_are_closer_than_different_people(model, real_photo_views):
    """Identity consistency from single photos: face-region RMS between fits of the same person over that between
    different people (issue target < 0.6; it was 0.86; bench.real measures 0.56 on these photos)."""
    from backend.pipeline import fit_views
    from bench.real import identity_ratio

    fits = {p: [fit_views([v])[2].identity[0] for v in views] for p, views in real_photo_views.items()}
    same, diff, ratio, _, _ = identity_ratio(model, fits)
    print(f"\nsame {same:.2f} mm, different {diff:.2f} mm, ratio {ratio:.2f}")
    assert ratio < 0.6


def _rendered_views(model, seed, yaws, identity_seed=None, require=True):
    from backend.landmarks.base import Detection
    from backend.landmarks.mediapipe_detector import MediaPipeDetector
    from backend.pipeline import View
    from bench import gt_scenes

    out, truth = [], []
    with MediaPipeDetector() as det:
        for k, yaw in enumerate(yaws):
            sc, _ = gt_scenes.make_scene(model, seed * 100 + k, 1, det, yaw=yaw, identity_seed=identity_seed or seed)
            p = sc.photos[0]
            if p.points is None:
                assert not require, f"MediaPipe found no face in rendered seed {seed} yaw {yaw}"
                continue
            w, h = p.size
            out.append(View(name=f"r{seed}_{yaw:+.0f}", source_path="", width=w, height=h,
                            detection=Detection(points=p.points, format="mediapipe478",
                                                box=(*p.points.min(0), *p.points.max(0)), blendshapes=p.blendshapes)))
            truth.append(p)
    return out, truth


@pytest.mark.parametrize("seed,yaws", [(61, (-60, -50, 0)), (64, (-60, -45, 5))])
def test_identity_check_keeps_a_yaw_series_of_one_face(model, seed, yaws):
    """One rendered person at large yaw differences: the frontal photo was flagged 'is it the same person?' before
    (tools/measure_identity_check.py: ratios 1.67 and 1.81 untempered). Strangers: tests/test_reliability.py
    test_different_people_across_views_is_flagged."""
    from backend.fit import identity_check, landmark_spec

    spec = landmark_spec("mediapipe478", model)
    own, _ = _rendered_views(model, seed, yaws)
    s = identity_check.identity_scores(own, model, spec)
    print(f"\nratios {np.round(s['ratio'], 2)}")
    assert identity_check.identity_warnings(own, model, spec) == []


def test_rendered_faces_eyes_at_rest_and_gaze_from_the_iris(model):
    """bench.real's one-photo row (24 rendered faces of known expression and gaze, seen through MediaPipe): eye
    shapes whose truth is 0 stay near 0 (target: mean < 0.1; eyeWide sat at 0.95 before), and the gaze comes from
    the iris points (eyeLook* weights): its horizontal part well below the error of looking straight ahead. (The
    vertical part is not recovered yet: correlation 0.05 with the truth, docs/benchmarks.md "Real detector".)"""
    from backend.face_model import gaze_angles
    from backend.pipeline import fit_views
    from bench import gt_scenes
    from bench.real import BENCH_SEED, _views_of

    zero_eye, gaze_err, gaze_true = [], [], []
    names = model.expression_names
    for scene in gt_scenes.scenes(model, range(BENCH_SEED + 1000, BENCH_SEED + 1024), 1):
        kv = _views_of(scene)
        if not kv:
            continue
        _, _, res = fit_views([v for _, v in kv])
        truth = scene.photos[kv[0][0]].expression
        ours = shape_names_to_arkit(dict(zip(names, res.expression[0, 0])))
        true = shape_names_to_arkit(dict(zip(names, truth)))
        zero_eye += [ours[n] for n in EYE6 if true[n] < 1e-6]
        g_fit, g_true = gaze_angles(dict(zip(names, res.expression[0, 0]))), gaze_angles(dict(zip(names, truth)))
        gaze_err += [abs(g_fit[s][0] - g_true[s][0]) for s in ("left", "right")]  # yaw
        gaze_true += [abs(g_true[s][0]) for s in ("left", "right")]
    print(f"\neye shapes at 0: mean {np.mean(zero_eye):.3f} (n {len(zero_eye)}); horizontal gaze error "
          f"median {np.median(gaze_err):.1f} deg (looking straight ahead: {np.median(gaze_true):.1f} deg)")
    assert len(gaze_err) >= 40  # MediaPipe finds 23 of the 24
    assert np.mean(zero_eye) < 0.1
    assert np.median(gaze_err) < 0.8 * np.median(gaze_true)


def test_one_photo_reports_its_shape_uncertainty_and_warns(tmp_path):
    """result.json carries the expected shape error; one photo alone is called weakly determined."""
    from backend.pipeline import reconstruct

    out = tmp_path / "b"
    reconstruct([str(DATA / "same-person" / "biden" / "biden1.jpg")], out, texture=False, device="cpu")
    doc = json.loads((out / "result.json").read_text())
    unc = doc["fit"]["shape_uncertainty_mm"]
    assert 0.5 < unc["median"] < unc["p90"] < 20
    assert any("weakly determined" in w and "single photo" in w for w in doc["warnings"]), doc["warnings"]
