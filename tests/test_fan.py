"""FAN (face-alignment 2DFAN-4) detector: setup errors and the real loading path.

This machine cannot download the real weights, so the "loads" tests use a cache
pre-seeded by tests/make_fan_cache.py: face_alignment's own FAN network with
random (seeded) weights, saved in the exact file and format the package loads.
That proves the loading path (cache lookup, torch.load, load_state_dict, crop
from our box, heatmap decoding back to image pixels), NOT landmark accuracy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.errors import SetupError  # noqa: E402
from backend.images import load_image  # noqa: E402
from backend.landmarks.fan import FanDetector, weights_path  # noqa: E402
from make_fan_cache import seed_fan_cache  # noqa: E402

PHOTO = REPO / "tests" / "data" / "single-300w" / "image_0010.png"
URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"


def gt_points():
    lines = (PHOTO.with_suffix(".pts")).read_text().split("{")[1].split("}")[0].split()
    return np.array(lines, float).reshape(68, 2) - 1.0  # 300-W files are 1-based


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    seed_fan_cache(home / "hub", seed=0)
    return home


def test_missing_weights_says_which_file_where_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected = tmp_path / "th" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    assert weights_path() == expected
    with pytest.raises(SetupError) as info:
        FanDetector()
    msg = str(info.value)
    assert msg.startswith(f"{expected}: FAN landmark weights are missing: download {URL} and save it as {expected}")
    assert info.value.path == str(expected)
    assert not (tmp_path / "th").exists()  # checked before face_alignment could start a download


def test_missing_weights_in_explicit_cache_dir(tmp_path, monkeypatch):
    from backend.landmarks import make_detector
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))  # a developer's real cache must not interfere
    with pytest.raises(SetupError) as info:
        FanDetector(cache_dir=tmp_path / "hub")
    assert str(tmp_path / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar") in str(info.value)
    assert URL in str(info.value)
    with pytest.raises(SetupError):  # the detector factory reaches the same check
        make_detector("fan")


def test_damaged_weights_file(tmp_path):
    target = weights_path(tmp_path / "hub")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>503 Service Unavailable</html>")  # what a captive portal saves
    with pytest.raises(SetupError) as info:
        FanDetector(cache_dir=tmp_path / "hub")
    assert "FAN landmark weights are damaged" in str(info.value)
    assert f"download it again from {URL}" in str(info.value)
    assert str(target) in str(info.value)


def test_seeded_cache_loads_through_real_path_and_returns_68_points(seeded_home, monkeypatch):
    """Loading-path proof only: random weights give finite points in the crop, not accurate ones."""
    import torch
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(seeded_home))
    fan = FanDetector(device="cpu")
    assert fan.weights == seeded_home / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"

    # the package really loaded our file: its network holds the seeded weights
    torch.manual_seed(0)
    reference = FAN(4).state_dict()
    loaded = fan._fa.face_alignment_net.state_dict()
    for name in ("conv1.weight", "l3.weight", "m3.b1_4.conv3.weight"):
        assert torch.equal(loaded[name], reference[name]), name

    img = load_image(PHOTO).rgb
    gt = gt_points()
    box = (*gt.min(0), *gt.max(0))
    det = fan.detect(img, PHOTO, box=box)
    assert det.format == "ibug68" and det.points.shape == (68, 2) and np.isfinite(det.points).all()
    assert det.box == pytest.approx(box) and det.n_faces == 1
    # FAN's crop is ~2x the box around its centre: every heatmap peak maps back inside it
    (x0, y0, x1, y1), side = box, max(box[2] - box[0], box[3] - box[1])
    assert (det.points[:, 0] > x0 - 0.6 * side).all() and (det.points[:, 0] < x1 + 0.6 * side).all()
    assert (det.points[:, 1] > y0 - 0.7 * side).all() and (det.points[:, 1] < y1 + 0.6 * side).all()
    assert len(np.unique(det.points.round(1), axis=0)) > 10  # 68 separate heatmaps, not one collapsed point

    # moving the box moves the points with it (the crop follows the caller's box)
    shifted = fan.detect(img, PHOTO, box=(box[0] + 40, box[1] + 24, box[2] + 40, box[3] + 24))
    assert np.median(shifted.points - det.points, axis=0) == pytest.approx([40, 24], abs=8)


def test_cache_dir_argument_leaves_torch_hub_following_torch_home(seeded_home, tmp_path, monkeypatch):
    import torch.hub
    fan = FanDetector(cache_dir=seeded_home / "hub")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torch.hub.get_dir() == str(tmp_path / "hub")  # not pinned to whatever it was during loading
    assert fan.weights == seeded_home / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"


@pytest.mark.skipif(not (REPO / "weights" / "mediapipe" / "face_landmarker.task").is_file(),
                    reason="MediaPipe model bundle not present")
def test_without_box_mediapipe_finds_the_face(seeded_home):
    img = load_image(PHOTO).rgb
    with FanDetector(cache_dir=seeded_home / "hub") as fan:
        det = fan.detect(img, PHOTO)
    gt = gt_points()
    centre = (np.array(det.box[:2]) + det.box[2:]) / 2
    gt_centre = (gt.min(0) + gt.max(0)) / 2
    size = (gt.max(0) - gt.min(0)).max()
    assert np.linalg.norm(centre - gt_centre) < 0.25 * size  # MediaPipe's box is on the annotated face
    assert det.points.shape == (68, 2) and det.n_faces >= 1
