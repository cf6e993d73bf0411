"""MediaPipe-478 <-> ICT surface correspondence, derived from the two models' geometry.

Built once by `tools/build_mp_correspondence.py` into weights/mediapipe_to_ict.npz:
1. rigidly align MediaPipe's canonical mesh (468 vertices, read from the .task bundle) to the ICT
   neutral face by similarity ICP (nose tips as the only seed),
2. deform ICT (identity + expression coefficients, priors on both) to pass through the aligned
   canonical vertices, alternating with closest-point search,
3. store each MediaPipe point as (ICT triangle's 3 vertex ids, barycentric weights) on that surface,
   and the distance left over as the residual.
The 10 iris points (468-477) have no canonical vertex; they are excluded from fitting. The inverse
map (each ICT iBUG-68 landmark as a barycentric point of MediaPipe's mesh) lets us compare
MediaPipe with 68-point hand annotations.
"""
from __future__ import annotations

import functools

import numpy as np

from . import paths
from .errors import SetupError


@functools.lru_cache(maxsize=1)
def load_correspondence(path=None) -> dict:
    path = path or paths.MP_TO_ICT
    if not path.is_file():
        raise SetupError("MediaPipe->ICT correspondence is missing; run `python tools/build_mp_correspondence.py`",
                         path)
    try:
        with np.load(path) as d:
            return {k: d[k] for k in d.files}
    except Exception as e:  # zip/pickle errors from a damaged file
        raise SetupError(f"MediaPipe->ICT correspondence file is corrupt ({e.__class__.__name__}: {e})", path) from e


def mediapipe_to_ibug68(points478: np.ndarray) -> np.ndarray:
    """(478,2|3) MediaPipe points -> (68,2|3) iBUG-68 points through the stored inverse map."""
    c = load_correspondence()
    return (points478[c["ibug68_mp_ids"]] * c["ibug68_mp_bary"][..., None]).sum(1)
