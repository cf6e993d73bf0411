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
    if not any(v.detection.blendshapes for v in views):
        return None
    out = np.full((len(views), model.n_expression), np.nan)
    for i, v in enumerate(views):
        if v.detection.blendshapes:
            out[i] = list(arkit_to_shape_names(v.detection.blendshapes, model.expression_names).values())
    return out
