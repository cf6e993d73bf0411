"""What the fitter takes from detected views (anything with .width, .height, .focal_px and .detection)."""
from __future__ import annotations

import numpy as np

from ..face_model import arkit_to_shape_names


def camera_groups(views) -> np.ndarray:
    """(V,) camera group of each view: views from one camera share a focal (same image size, same EXIF focal)."""
    keys = [(v.width, v.height, round(v.focal_px or 0, 1)) for v in views]
    return np.array([sorted(set(keys), key=keys.index).index(k) for k in keys])


def detector_scores(model, views) -> np.ndarray | None:
    """(V, E) the detector's own expression scores on the model's shape names, nan for views without; None when no
    view has any."""
    return detection_scores(model, [v.detection for v in views])


def detection_scores(model, detections) -> np.ndarray | None:
    """detector_scores for detections (None where a frame has no face: a row of nan)."""
    if not any(d is not None and d.blendshapes for d in detections):
        return None
    out = np.full((len(detections), model.n_expression), np.nan)
    for i, d in enumerate(detections):
        if d is not None and d.blendshapes:
            out[i] = list(arkit_to_shape_names(d.blendshapes, model.expression_names).values())
    return out
