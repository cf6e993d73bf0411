"""What the pipeline cannot do without failing the run is said in result.json's `warnings`, never skipped in
silence: a texture code that cannot be imported, a texture image OpenCV refuses to encode, a same-person check
that raises. Each through the real pipeline.reconstruct from a landmarks file (MediaPipe's points on the front
sample photo: the fit is real and quick); the fault itself is injected where it cannot be produced for real."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DATA

FRONT = DATA / "multiview-mvfnet" / "front.jpg"


@pytest.fixture(scope="module")
def front_points(mp_detector) -> np.ndarray:
    return mp_detector.detect(np.asarray(Image.open(FRONT).convert("RGB"))).points


def _landmarks_file(path, points, n_views=1, with_photo=True):
    entry = {"image": str(FRONT)} if with_photo else {"width": 224, "height": 224}
    path.write_text(json.dumps({"format": "mediapipe478", "images": [
        {"name": f"view{i}", "points": points.tolist(), **entry} for i in range(n_views)]}))
    return path


def _written(out) -> dict:
    return json.loads((out / "result.json").read_text())


def test_texture_code_that_cannot_be_imported_is_a_warning(tmp_path, monkeypatch, front_points):
    from backend.pipeline import reconstruct

    monkeypatch.setitem(sys.modules, "backend.texture", None)  # `from .texture import ...` raises ImportError
    out = tmp_path / "bundle"
    reconstruct(landmarks_file=_landmarks_file(tmp_path / "lm.json", front_points), output=out, texture=True,
                texture_size=64, device="cpu")
    doc = _written(out)
    said = [w for w in doc["warnings"] if w.startswith("no texture baked: the texture code cannot be loaded")]
    assert len(said) == 1 and "ModuleNotFoundError" in said[0] and "build.py setup" in said[0], doc["warnings"]
    assert doc["texture"] == {} and "albedo" not in doc["files"] and not (out / "albedo.png").exists()


def test_png_that_cannot_be_encoded_is_a_warning(tmp_path, monkeypatch, front_points):
    """cv2.imencode reports failure by its return value (False), which used to be ignored: the bundle then named
    an empty albedo.png. The view's photo is an upright JPEG (copied, not encoded), so only the textures meet
    the failing encoder."""
    import cv2

    from backend.pipeline import reconstruct

    monkeypatch.setattr(cv2, "imencode", lambda ext, img, params=None: (False, None))
    out = tmp_path / "bundle"
    reconstruct(landmarks_file=_landmarks_file(tmp_path / "lm.json", front_points), output=out, texture=True,
                texture_size=64, device="cpu")
    doc = _written(out)
    said = sorted(w for w in doc["warnings"] if "not written: PNG encoding failed" in w)
    names = ["albedo", "eye_albedo", "eye_shell_albedo", "hair_mask", "normal"]
    assert [w.split(".png")[0] for w in said] == names, doc["warnings"]
    assert set(doc["files"]) == {"mesh", "blendshapes"}
    assert not any((out / f"{n}.png").exists() for n in names)
    assert doc["texture"]["size"] == 64  # the bake itself ran


def test_same_person_check_that_raises_is_a_warning(tmp_path, monkeypatch, front_points):
    """Three views: the check runs (backend/fit/identity_check.py). When it raises, the reconstruction is kept
    and result.json says the check did not run."""
    from backend.fit import identity_check
    from backend.pipeline import reconstruct

    def broken(*args, **kwargs):
        raise RuntimeError("solver diverged")

    monkeypatch.setattr(identity_check, "identity_scores", broken)
    out = tmp_path / "bundle"
    reconstruct(landmarks_file=_landmarks_file(tmp_path / "lm.json", front_points, n_views=3, with_photo=False),
                output=out, texture=False, device="cpu")
    assert "the same-person check could not run (RuntimeError: solver diverged); the reconstruction is " \
           "unaffected" in _written(out)["warnings"]
