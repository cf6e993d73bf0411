"""Where each detector landmark lives on the ICT surface."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face_model import FaceModel


@dataclass
class LandmarkSpec:
    format: str
    vertex_ids: np.ndarray  # (L, 3)
    bary: np.ndarray  # (L, 3)
    valid: np.ndarray  # (L,) usable for fitting
    contour: np.ndarray  # (L,) silhouette-dependent landmark


def landmark_spec(fmt: str, model: FaceModel) -> LandmarkSpec:
    if fmt == "mediapipe478":
        from ..correspondence import load_correspondence

        c = load_correspondence()
        return LandmarkSpec(fmt, c["tri_vertex_ids"], c["bary"], c["valid"].astype(bool), c["contour"].astype(bool))
    if fmt == "ibug68":
        ids = np.repeat(model.landmarks_ibug68[:, None], 3, 1)
        bary = np.tile([1.0, 0.0, 0.0], (68, 1))
        contour = np.zeros(68, bool)
        contour[:17] = True
        return LandmarkSpec(fmt, ids, bary, np.ones(68, bool), contour)
    raise ValueError(f"unknown landmark format {fmt!r}")
