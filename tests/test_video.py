"""Video input and expression tracking: synthetic ground truth (landmark level), a real-photo clip end to
end through the CLI, and bad video files."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench.video import errors, make_sequence, sequence_landmarks, track_landmarks
from backend.fit import landmark_spec
from backend.fit.tracking import select_identity_frames, smooth_track, track, whittaker
from backend.video import IDENTITY_FRAMES, default_frame_step
from tests.conftest import DATA, ROOT


def write_clip(path, n=24, size=(320, 240), fps=30.0, blank=()):
    """A short mp4 panning, zooming and rolling over a real photo (MediaPipe surely finds that face);
    frames listed in `blank` are black."""
    src = cv2.imread(str(DATA / "multiview-mvfnet" / "front.jpg"))
    h, w = src.shape[:2]
    W, H = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    for k in range(n):
        a = k / max(n - 1, 1)
        M = cv2.getRotationMatrix2D((w / 2, h / 2), 8 * np.sin(2 * np.pi * a),
                                    (0.95 + 0.1 * np.sin(2 * np.pi * a)) * min(W / w, H / h))
        M[0, 2] += (W - w) / 2 + 10 * np.sin(2 * np.pi * a)
        M[1, 2] += (H - h) / 2
        frame = cv2.warpAffine(src, M, (W, H), borderMode=cv2.BORDER_REFLECT)
        vw.write(np.zeros_like(frame) if k in blank else frame)
    vw.release()
    return path


@pytest.fixture(scope="module")
def spec(model):
    return landmark_spec("mediapipe478", model)


@pytest.fixture(scope="module")
def landmark_run(model, spec):
    """60 frames, 1 px noise: the pipeline's frame selection, identity fit and tracker, unsmoothed and smoothed."""
    import torch

    seq = make_sequence(model, seed=3, n_frames=60)
    pts = sequence_landmarks(model, spec, seq, noise_px=1.0, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the identity fit: see test_cli_video_end_to_end
    try:
        out = track_landmarks(model, spec, seq, pts, smoothings=(0.0, 1.0))
    finally:
        torch.set_num_threads(threads)
    errs = {s: errors(model, seq, out["identity"], r["expression"], r["R"], r["t"], out["ref"])
            for s, r in out["runs"].items()}
    return seq, out, errs


def test_tracking_recovers_expression_and_pose(landmark_run):
    """Bounds with the fitted identity and focal: the focal's error (scale) is the larger part of pose error.
    Active-shape MAE measured 0.056 (fresh clone): the blinks weigh most, as the calibrated lid response (blink gain
    0.4: MediaPipe's lids close only part of the way) turns these synthetic lid points' 1 px noise into 2.5 times
    the blink noise; it was 0.03 before the calibration."""
    seq, out, errs = landmark_run
    e = errs[1.0]
    assert len(out["picks"]) == IDENTITY_FRAMES and out["ref"] in out["picks"]
    assert e["expr_mae_active"] < 0.1, e
    assert e["expr_mae_all"] < 0.05, e
    assert e["rot_rel_deg"] < 1.5, e
    assert e["pos_mm"] < 5.0, e
    assert abs(e["scale"] - 1) < 0.25, e
    # the identity frames span the head's sweep, not one moment of it
    yaws = seq["yaw"][out["picks"]]
    assert yaws.max() - yaws.min() > 50


def test_tracker_alone_with_true_identity_and_focal(model, spec, landmark_run):
    seq = landmark_run[0]
    pts = sequence_landmarks(model, spec, seq, noise_px=1.0, seed=3)
    trk = track(model, spec, seq["identity"], seq["focal"], pts, np.ones(len(pts), bool), seq["size"])
    e = errors(model, seq, seq["identity"], trk.expression, trk.R, trk.t, 0)
    assert e["expr_mae_active"] < 0.035 and e["expr_mae_all"] < 0.035, e
    assert e["rot_abs_deg"] < 0.6 and e["pos_mm"] < 1.0 and abs(e["scale"] - 1) < 0.01, e
    assert np.nanmedian(trk.reprojection_px) < 1.5


def test_smoothing_reduces_jitter_without_losing_accuracy(landmark_run):
    _, _, errs = landmark_run
    raw, smooth = errs[0.0], errs[1.0]
    assert smooth["jitter_expr"] < 0.5 * raw["jitter_expr"], (raw, smooth)
    assert smooth["jitter_pose_deg"] < raw["jitter_pose_deg"], (raw, smooth)
    # jitter of the error (fit - truth): noise only, the head's real motion does not count
    assert smooth["jitter_err_expr"] < 0.3 * raw["jitter_err_expr"], (raw, smooth)
    assert smooth["jitter_err_pose_deg"] < 0.5 * raw["jitter_err_pose_deg"], (raw, smooth)
    assert smooth["expr_mae_active"] < raw["expr_mae_active"] * 1.1
    assert smooth["rot_rel_deg"] < raw["rot_rel_deg"] * 1.1


def test_frames_without_face_are_interpolated(model, spec):
    seq = make_sequence(model, seed=5, n_frames=90)  # a +-40 deg sweep in 3 s
    pts = sequence_landmarks(model, spec, seq, noise_px=0.5, seed=5)
    valid = np.ones(90, bool)
    valid[17:21] = False
    valid[:2] = False
    pts[~valid] = 0.0  # what the detector leaves there
    for smoothing in (0.0, 1.0):
        trk = track(model, spec, seq["identity"], seq["focal"], pts, valid, seq["size"], smoothing=smoothing)
        assert np.isnan(trk.reprojection_px[~valid]).all() and np.isfinite(trk.reprojection_px[valid]).all()
        e = errors(model, seq, seq["identity"], trk.expression[17:21], trk.R[17:21], trk.t[17:21], 0,
                   frames=np.arange(17, 21))
        assert e["rot_abs_deg"] < 2.0 and e["pos_mm"] < 5.0, (smoothing, e)
        assert np.allclose(trk.R @ np.swapaxes(trk.R, 1, 2), np.eye(3), atol=1e-6)
        assert (trk.expression >= 0).all() and (trk.expression <= 1).all()


def test_whittaker_is_the_banded_least_squares_solution():
    rng = np.random.default_rng(0)
    N = 12
    y, w = rng.random((N, 3)), rng.random(N)
    w[4] = 0
    D = np.diff(np.eye(N), 2, axis=0)
    dense = np.linalg.solve(np.diag(w) + 3.0 * D.T @ D, w[:, None] * y)
    assert np.allclose(whittaker(y, w, 3.0), dense)


def test_gap_filling_without_smoothing_is_linear_and_holds_the_ends():
    N = 6
    expr = np.zeros((N, 2))
    expr[:, 0] = [0, 0.2, 0.9, 0.6, 0.9, 0]
    R = np.tile(np.eye(3), (N, 1, 1))
    t = np.tile([0.0, 0.0, 60.0], (N, 1))
    conf = np.array([0, 1, 0, 1, 1, 0.0])
    e, R2, t2 = smooth_track(expr, R, t, conf, 0.0, ref=1)
    assert np.allclose(e[:, 0], [0.2, 0.2, 0.4, 0.6, 0.9, 0.9])
    assert np.allclose(R2, R) and np.allclose(t2, t)


def test_identity_frame_selection_spreads_and_starts_frontal():
    yaw = 40 * np.sin(np.linspace(0, 2 * np.pi, 100))
    angles = np.column_stack([yaw, np.zeros(100), np.zeros(100)])
    valid = np.ones(100, bool)
    valid[20:30] = False  # the +40 extreme is missing: its neighbours must stand in
    picks, ref = select_identity_frames(angles, valid, 5)
    assert len(picks) == 5 and picks == sorted(picks) and not any(20 <= p < 30 for p in picks)
    assert abs(yaw[ref]) < 3
    assert yaw[picks].min() < -38 and yaw[picks].max() > 35


def test_default_frame_step_keeps_at_most_30_fps():
    assert [default_frame_step(f) for f in (24, 25, 29.97, 30, 50, 59.94, 60, 120, 240)] == [1, 1, 1, 1, 2, 2, 2, 4,
                                                                                          8]


def test_cli_video_end_to_end(model, tmp_path):
    """A real-photo clip through the CLI: bundle, animation section and npz as docs/result-bundle.md says;
    frames 4 and 6 are black (sampled at step 2: tracked frames 2 and 3 have no face)."""
    import os

    clip = write_clip(tmp_path / "clip.mp4", n=24, blank=(4, 6))
    out = tmp_path / "bundle"
    # one OpenMP thread: on a busy shared CI machine two threads spin-wait and the fit takes minutes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", str(clip), "-o", str(out), "--no-texture",
                           "--frame-step", "2", "--smoothing", "0.5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "no face in 2 of 12 frames" in proc.stderr
    doc = json.loads((out / "result.json").read_text())
    a = doc["animation"]
    N = 12
    assert a["n_frames"] == N and a["frame_step"] == 2 and a["video_fps"] == pytest.approx(30.0)
    assert a["fps"] == pytest.approx(15.0) and (a["width"], a["height"]) == (320, 240)
    assert a["file"] == "animation.npz" and a["smoothing"] == 0.5 and a["source_path"] == str(clip)
    assert set(a["camera"]) == {"fx", "fy", "cx", "cy"} and a["camera"]["cx"] == pytest.approx(159.5)
    assert set(a["timings_s"]) == {"decode", "detect", "identity", "track"}
    assert a["tracking_fps"] == pytest.approx(N / a["timings_s"]["track"])  # tracked frames per second of tracking
    assert a["reference_frame"] in a["identity_frames"] and not {2, 3} & set(a["identity_frames"])
    assert len(doc["views"]) == len(a["identity_frames"]) >= 3
    for v, i in zip(doc["views"], a["identity_frames"]):
        assert v["image"].endswith(".png") and (out / v["image"]).is_file()
        assert v["width"] == 320 and v["camera"]["fx"] == pytest.approx(a["camera"]["fx"])
        assert v["name"] == f"frame_{2 * i:06d}"
    assert doc["subject"] == "clip" and any("no face in 2 of 12" in w for w in doc["warnings"])
    z = np.load(out / "animation.npz")
    assert z["frame"].tolist() == list(range(0, 24, 2))
    assert np.allclose(z["time_s"], z["frame"] / 30.0)
    assert z["valid"].dtype == bool and z["valid"].tolist() == [k not in (2, 3) for k in range(N)]
    assert z["expression"].shape == (N, 53) and z["expression"].dtype == np.float32
    assert z["arkit"].shape == (N, 52) and len(z["arkit_names"]) == 52 and "jawOpen" in z["arkit_names"].tolist()
    assert z["R"].shape == (N, 3, 3) and z["t"].shape == (N, 3) and z["reprojection_px"].shape == (N,)
    assert np.isfinite(z["R"]).all() and np.isfinite(z["t"]).all() and np.isfinite(z["expression"]).all()
    assert np.allclose(z["R"] @ np.swapaxes(z["R"], 1, 2), np.eye(3), atol=1e-6)
    assert np.isnan(z["reprojection_px"][[2, 3]]).all() and np.nanmedian(z["reprojection_px"]) < 3.0
    names = [str(s) for s in np.load(out / "blendshapes.npz")["names"]]
    jaw = z["expression"][:, names.index("jawOpen")]
    assert np.allclose(jaw, z["arkit"][:, z["arkit_names"].tolist().index("jawOpen")])
    # a still photo slid and zoomed by ~10 %: the head's distance follows, no wild jumps
    assert np.ptp(z["t"][:, 2]) < 0.3 * np.median(z["t"][:, 2])

    # The join of the two halves: this real bundle imported by run.py (bpy module) as a user runs it;
    # the Live Link CSV it writes holds the tracked weights at the video's frames.
    from face_reconstruct_addon import livelink_csv

    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "--from-bundle", str(out), "--output",
                        str(tmp_path / "clip.blend"), "--export-csv", str(tmp_path / "clip.csv")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    head = (tmp_path / "clip.blend").read_bytes()[:7]
    assert head == b"BLENDER" or head[:4] == b"\x28\xb5\x2f\xfd"  # a .blend, zstd-compressed by Blender 5.x
    take = livelink_csv.read(tmp_path / "clip.csv")
    assert len(take) == 23  # video frames 0..22, keyed every 2nd, one CSV row per frame
    ok = z["valid"]
    np.testing.assert_allclose(np.array(take.values["JawOpen"])[::2][ok], jaw[ok], atol=1e-4)


def _cli(args, capsys):
    from backend.__main__ import main

    code = main(["reconstruct", *args, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_bad_videos_give_one_line_errors_naming_the_file(tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"this is not a video\n" * 100)
    good = write_clip(tmp_path / "ok.mp4", n=6)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    dark = tmp_path / "dark.avi"
    vw = cv2.VideoWriter(str(dark), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for _ in range(3):
        vw.write(np.zeros((64, 64, 3), np.uint8))
    vw.release()
    cases = [(empty, "file is empty"), (junk, "cannot open the video"), (cut, "video"),
             (tmp_path / "missing.mp4", "no such file"), (dark, "no face found in any of the 3 sampled frames")]
    for path, words in cases:
        code, err = _cli([str(path), "-o", str(tmp_path / "out")], capsys)
        assert code == 2 and len(err) == 1, (path, err)
        assert err[0].startswith("error: ") and str(path) in err[0] and words in err[0], err
    code, err = _cli([str(good), str(DATA / "multiview-mvfnet" / "front.jpg"), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err) == 1 and str(good) in err[0] and "not both" in err[0], err
    code, err = _cli([str(good), "-o", str(tmp_path / "out"), "--frame-step", "0"], capsys)
    assert code == 2 and len(err) == 1 and "--frame-step" in err[0], err
    assert not (tmp_path / "out").exists()


def test_bad_video_subprocess_one_line(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", str(junk), "-o", str(tmp_path / "o"),
                           "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(junk) in lines[0], proc.stderr


def test_face_choice_starts_by_size_then_follows_the_track():
    """Frame 1: the largest face (or --face-index); later frames: the face overlapping the previous one most,
    so a larger second person entering the shot does not take over the track."""
    from backend.errors import InputError
    from backend.landmarks.base import Detection
    from backend.video import _pick_face

    def face(x0, y0, x1, y1):
        pts = np.random.default_rng(0).uniform([x0, y0], [x1, y1], (478, 2))
        return Detection(points=pts, format="mediapipe478", box=(x0, y0, x1, y1))

    small, big = face(10, 10, 60, 60), face(100, 10, 220, 130)
    assert _pick_face([small, big], None, None) is big
    assert _pick_face([small, big], None, 1) is small
    with pytest.raises(InputError, match=r"--face-index 5 asked for, but 2 faces were found \(0 = largest \.\.\. 1\)"):
        _pick_face([small, big], None, 5, "clip.mp4")  # past the last: an error, not someone else's face
    tracked = _pick_face([big, small], small.box, None)  # the larger face walked in: keep following ours
    assert tracked is small


def test_a_quarter_second_blink_keeps_80_percent_after_default_smoothing(model):
    """Issue target: a 0.25 s blink reaches >= 0.8 of its true weight after smoothing (the lid channels are
    smoothed with LID_SMOOTHING of the weight; a raised-cosine blink at 30 fps, 7 frames)."""
    from backend.fit.tracking import LID_SHAPES, REFERENCE_FPS
    from backend.video import DEFAULT_SMOOTHING

    N, E = 60, model.n_expression
    k = np.arange(N)
    blink = np.where(np.abs(k - 30) < 0.125 * REFERENCE_FPS,
                     0.5 * (1 + np.cos(np.pi * (k - 30) / (0.125 * REFERENCE_FPS))), 0.0)
    expr = np.zeros((N, E))
    names = model.expression_names
    for n in ("eyeBlinkLeft", "jawOpen"):
        expr[:, names.index(n)] = blink
    R, t = np.tile(np.eye(3), (N, 1, 1)), np.zeros((N, 3))
    out, _, _ = smooth_track(expr, R, t, np.ones(N), DEFAULT_SMOOTHING, 0, fast=np.isin(names, LID_SHAPES))
    lid, jaw = out[:, names.index("eyeBlinkLeft")].max(), out[:, names.index("jawOpen")].max()
    assert lid >= 0.8 and lid > jaw  # the lids keep more of it than a slow channel would


def test_long_gaps_are_bridged_by_straight_lines_short_ones_by_the_smoother():
    N = 40
    x = np.sin(np.arange(N) / 3.0)[:, None] * 0.4 + 0.5
    conf = np.ones(N)
    conf[5:20] = 0.0  # 15 frames: long
    conf[28:30] = 0.0  # 2 frames: short
    R, t = np.tile(np.eye(3), (N, 1, 1)), np.zeros((N, 3))
    out, _, _ = smooth_track(x, R, t, conf, 1.0, 0, max_gap=10)
    line = out[4, 0] + (np.arange(5, 20) - 4) / 16 * (out[20, 0] - out[4, 0])
    np.testing.assert_allclose(out[5:20, 0], line, atol=1e-9)
    assert out[5:20, 0].min() >= min(out[4, 0], out[20, 0]) - 1e-9  # no overshoot
    smooth_only, _, _ = smooth_track(x, R, t, conf, 1.0, 0)
    np.testing.assert_allclose(out[28:30], smooth_only[28:30])


def test_antagonist_pairs_keep_their_net():
    from backend.face_model import ANTAGONISTS, resolve_antagonists

    names = sorted({n for pair in ANTAGONISTS for n in pair}) + ["jawOpen"]
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (200, len(names)))
    out = resolve_antagonists(w, names)
    for a, b in ANTAGONISTS:
        i, j = names.index(a), names.index(b)
        assert np.all(np.minimum(out[:, i], out[:, j]) == 0)
    i, j = names.index("jawLeft"), names.index("jawRight")
    np.testing.assert_allclose(out[:, i] - out[:, j], w[:, i] - w[:, j])
    np.testing.assert_array_equal(out[:, -1], w[:, -1])


def test_sample_clip_agrees_with_mediapipe_without_antagonist_frames():
    """The licensed real clip through the product's video path (issue targets: antagonist frames < 1 %, all-52
    MAE < 0.08 and eye MAE < 0.15 against MediaPipe's classifier on the same frames; docs/benchmarks.md)."""
    from bench.video_real import SAMPLE_CLIP, clip_metrics, track_clip

    m = clip_metrics(track_clip(SAMPLE_CLIP))
    print(m)
    assert m["frames"] >= 120
    assert m["antagonist_pct"] < 1.0
    assert m["mae52"] < 0.08 and m["eye6"] < 0.15
    assert m["jitter"] < m["mp_jitter"]
