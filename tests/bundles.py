"""Complete result.json contents for tests that call backend.bundle.write_bundle themselves: the writer checks
every result.json against backend/result.schema.json, so test bundles have every field, of the right shape
(values made up: one view of the front sample photo, no texture)."""
from __future__ import annotations

from backend.contract import ARKIT_52


def timings(**seconds) -> dict:
    return {"detect": 0.0, "fit": 0.0, "texture": 0.0, "export": 0.0, "total": 0.0, **seconds}


def view(model, name: str = "front", image: str | None = None, **fields) -> dict:
    """A view of the right shape; `image` e.g. "images/front.jpg" (the caller puts the file there), None: a view
    from a landmarks file without a photo."""
    expression = {n: 0.0 for n in model.expression_names}
    return {
        "name": name, "image": image, "source_path": "", "width": 224, "height": 224,
        "landmark_format": "ibug68", "landmarks_2d": [[112.0, 112.0]] * 68, "n_faces": 1,
        "camera": {"fx": 300.0, "fy": 300.0, "cx": 111.5, "cy": 111.5, "R": [[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]],
                   "t": [0.0, 0.0, 60.0], "yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0, "focal_source": "given"},
        "expression": expression, "arkit": {n: 0.0 for n in ARKIT_52},
        "gaze": {"left": {"yaw_deg": 0.0, "pitch_deg": 0.0}, "right": {"yaw_deg": 0.0, "pitch_deg": 0.0}},
        "reprojection_error_px": {"median": 1.0, "mean": 1.0, "p90": 1.0, "max": 1.0}, "interocular_px": 60.0,
        "warnings": [], **fields}


def fit() -> dict:
    return {"iterations": 1, "cost": 0.0, "device": "cpu", "landmark_format": "ibug68", "n_landmarks": 68,
            "focal_px": [300.0], "shape_uncertainty_mm": {}}


def result(subject: str, model, views: list | None = None, **fields) -> dict:
    """The `result` argument of write_bundle (the fields it does not fill in itself)."""
    return {"subject": subject, "files": {}, "views": views or [view(model)], "fit": fit(), "texture": {},
            "warnings": [], "timings_s": timings(), **fields}
