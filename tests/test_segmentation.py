"""Person segmentation (MediaPipe's selfie segmenter) and the per-photo skin-colour model."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.errors import SetupError

ROOT = Path(__file__).resolve().parent.parent


def test_selfie_segmenter_separates_the_person_from_the_background():
    from backend.landmarks.segmentation import PersonSegmenter

    img = cv2.imread(str(ROOT / "tests" / "data" / "multiview-hrn" / "10078.jpg"))[..., ::-1].copy()
    with PersonSegmenter() as seg:
        p = seg.person_probability(img)
        grey = seg.person_probability(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))  # greyscale photos work too
    assert p.shape == img.shape[:2] and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
    h, w = p.shape
    assert p[h // 2 - 50:h // 2 + 50, w // 2 - 50:w // 2 + 50].mean() > 0.95  # the face
    assert p[:60, :60].mean() < 0.05 and p[:60, -60:].mean() < 0.05  # the wall behind, top corners
    assert grey.shape == p.shape


def test_damaged_segmentation_model_is_one_clear_line(tmp_path):
    from backend.landmarks.segmentation import PersonSegmenter

    bad = tmp_path / "selfie_segmentation.tflite"
    bad.write_bytes((ROOT / "weights" / "mediapipe" / "selfie_segmentation.tflite").read_bytes()[:1000])
    with pytest.raises(SetupError) as e:
        PersonSegmenter(bad)
    msg = str(e.value)
    assert "selfie segmentation model could not be loaded" in msg and str(bad) in msg and "\n" not in msg
    with pytest.raises(SetupError, match="is missing"):
        PersonSegmenter(tmp_path / "nothing.tflite")


def test_the_segmentation_model_is_checksummed():
    from backend.health import verify_weights

    assert verify_weights()["mediapipe/selfie_segmentation.tflite"] == "ok"


def test_skin_colour_model_accepts_skin_and_rejects_hair_clothes_and_backgrounds():
    from backend.texture.bake import to_linear
    from backend.texture.segment import fit_skin_colour

    rng = np.random.default_rng(0)
    # skin samples: one tone under shading from 0.5x to 1.3x, +-4 % colour noise
    tone = to_linear(np.array([205, 150, 125], np.uint8))
    shade = rng.uniform(0.5, 1.3, (3000, 1))
    skin = tone * shade * (1 + 0.04 * rng.standard_normal((3000, 3)))
    model = fit_skin_colour(skin.astype(np.float32))
    assert model is not None
    lik = lambda srgb: float(model.likelihood(to_linear(np.array([srgb], np.uint8)))[0])  # noqa: E731
    assert lik((205, 150, 125)) > 0.95 and lik((150, 105, 85)) > 0.9  # the tone, and in shadow
    for other in [(40, 170, 70), (40, 70, 180), (60, 38, 25), (245, 245, 245), (170, 30, 35)]:
        assert lik(other) < 0.1, other  # green wall, blue shirt, dark hair, white studio, red shirt
    assert fit_skin_colour(skin[:50].astype(np.float32)) is None  # too few samples to say
