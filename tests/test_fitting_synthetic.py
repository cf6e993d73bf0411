"""Fitting accuracy on synthetic ground truth, through the same path as real photos (--landmarks-file).

Random ICT identities and expressions, known cameras (f = 1.4 x image size, 60 cm away, 1024 px images,
not told to the fitter), MediaPipe-478 landmarks projected from the true mesh plus Gaussian pixel noise.
Error: median / 90th percentile per-vertex distance over the face region (ICT 0..9408) after
similarity alignment.

Thresholds are about twice the figures measured with the product's fit presets (backend/fit/presets.py), which
`.venv/bin/python -m pytest tests/test_fitting_synthetic.py -s` prints (table: median face error in mm by views
and pixel noise). Measured on the 2-core development machine:
    views  noise 0 / 1 / 2 px         relative-yaw error, 3 views 1 px: 0.71 deg
      1    2.20 / 2.34 / 2.11
      3    1.13 / 1.36 / 1.51
      5    0.62 / 0.77 / 0.66
    iBUG-68, 3 views 1 px (seed 7): 0.88;  MediaPipe-478 through the CLI, 3 views 1 px (seed 11): 1.25
(python -m bench fits the same scenes with FitConfig()'s defaults instead of the presets: 0.34 mm for 3 views
1 px, docs/benchmarks.md.) Re-measure and move the thresholds with them when the presets change.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from backend.fit import landmark_spec, relative_yaw_deg
from backend.pipeline import reconstruct
from bench.synthetic import face_error_mm, make_scene

YAWS = {1: [0.0], 2: [-30.0, 30.0], 3: [-30.0, 0.0, 30.0], 5: [-45.0, -20.0, 0.0, 20.0, 45.0]}
NOISES = [0.0, 1.0, 2.0]


def write_landmarks_file(path, scene, fmt="mediapipe478"):
    doc = {"format": fmt, "images": [{"name": f"view{i}", "width": v["size"][0], "height": v["size"][1],
                                      "points": v["points"].tolist()} for i, v in enumerate(scene["views"])]}
    path.write_text(json.dumps(doc))
    return path


def fit_scene(tmp_path, scene, tag):
    lm = write_landmarks_file(tmp_path / f"{tag}.json", scene)
    result = reconstruct(landmarks_file=lm, output=tmp_path / tag, texture=False, device="cpu")
    doc = json.loads((tmp_path / tag / "result.json").read_text())
    return result, np.array(doc["identity"])


@pytest.fixture(scope="module")
def table(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    spec = landmark_spec("mediapipe478", model)
    rng = np.random.default_rng(2024)
    rows = {}
    for n, yaws in YAWS.items():
        for noise in NOISES:
            errs, yaw_errs = [], []
            for rep in range(2):
                scene = make_scene(rng, model, spec, yaws, noise_px=noise)
                result, ident = fit_scene(tmp, scene, f"v{n}n{noise}r{rep}")
                e = face_error_mm(model, ident, scene["identity"])
                errs.append(e)
                R_fit = [np.array(v["camera"]["R"]) for v in result["views"]]
                R_true = [v["R"] for v in scene["views"]]
                yaw_errs.append(max(abs(relative_yaw_deg(R_fit[0], a) - relative_yaw_deg(R_true[0], b))
                                    for a, b in zip(R_fit, R_true)))
            allerr = np.concatenate(errs)
            rows[(n, noise)] = (np.median([np.median(e) for e in errs]), np.median([np.percentile(e, 90) for e in errs]),
                                max(yaw_errs))
    print("\nviews x noise -> face error after similarity alignment (mm), max relative-yaw error (deg)")
    print(f"{'views':>5} {'noise px':>8} {'median':>7} {'p90':>6} {'yaw err':>8}")
    for (n, noise), (med, p90, ye) in rows.items():
        print(f"{n:>5} {noise:>8.0f} {med:>7.2f} {p90:>6.2f} {ye:>8.2f}")
    return rows


def test_three_views_one_pixel_meets_target(table):
    med, p90, yaw_err = table[(3, 1.0)]
    assert med < 2.7, f"median face error {med:.2f} mm"  # measured 1.36
    assert yaw_err < 1.5, f"relative yaw error {yaw_err:.2f} deg"  # measured 0.71


def test_single_view_is_plausible(table):
    for noise in NOISES:
        assert table[(1, noise)][0] < 4.5  # measured 2.11-2.34


def test_more_views_help(table):
    for noise in NOISES:
        assert table[(3, noise)][0] < table[(1, noise)][0]
        assert table[(5, noise)][0] < table[(1, noise)][0]


def test_ibug68_landmarks_file(model, tmp_path):
    """The 68-point path (FAN, hand annotations) fits too, with fewer constraints."""
    spec = landmark_spec("ibug68", model)
    scene = make_scene(np.random.default_rng(7), model, spec, YAWS[3], noise_px=1.0)
    lm = write_landmarks_file(tmp_path / "lm68.json", scene, fmt="ibug68")
    reconstruct(landmarks_file=lm, output=tmp_path / "b68", texture=False, device="cpu")
    ident = np.array(json.loads((tmp_path / "b68" / "result.json").read_text())["identity"])
    assert np.median(face_error_mm(model, ident, scene["identity"])) < 1.8  # measured 0.88


def test_cli_landmarks_file_subprocess(model, tmp_path):
    from tests.conftest import ROOT

    spec = landmark_spec("mediapipe478", model)
    scene = make_scene(np.random.default_rng(11), model, spec, YAWS[3], noise_px=1.0)
    lm = write_landmarks_file(tmp_path / "lm.json", scene)
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", "--landmarks-file", str(lm), "--output",
                           str(tmp_path / "cli")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert len(doc["views"]) == 3 and doc["schema_version"] == 1
    assert np.median(face_error_mm(model, np.array(doc["identity"]), scene["identity"])) < 2.5  # measured 1.25
