"""Where the head has hair, in UV space (the albedo's layout): hair_mask.png.

Evidence per photo and texel: the texel is seen, lies on the person (selfie segmenter) and
its colour is not this photo's skin (segment.py), in the part of the head where hair grows
(regions.py `hair_prior`: never the face below the brows, the ears or the throat). The
views' evidence is averaged by confidence, then completed over what no photo saw with the
membrane on the mesh (fill.py, mirrored left/right): a front photo that shows hair at the
top of the forehead and at the temples gives hair over the crown and down the back to where
the sides showed skin. A soft step (smoothstep over the middle of the range, then a ~2 mm
blur) makes the hairline soft.
"""
from __future__ import annotations

import cv2
import numpy as np

from .fill import mesh_fill

# summed evidence weight at which a texel's observation is fully trusted
_FULL = 0.3


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def hair_mask(model, at, reg, views) -> np.ndarray:
    """Coarse-grid hair probability (h, w) float32 in [0, 1] from the observed views (bake._View)."""
    e = np.zeros(at.low_shape, np.float32)
    hsum = np.zeros(at.low_shape, np.float32)
    for o in views:
        e += o.w_seen * o.person_c
        hsum += o.w_seen * o.hair_c
    obs = np.where(e > 1e-6, hsum / np.maximum(e, 1e-6), 0.0).astype(np.float32)
    conf = _smoothstep(e / _FULL) * at.low_skin
    # how hairy the seen scalp is, as the prior for the unseen scalp
    top = (reg.hair_prior > 0.8) & (conf > 0.5)
    level = float(np.average(obs[top], weights=conf[top])) if top.sum() > 20 else 0.5
    vals = at.vertex_sample(obs[..., None])
    wts = at.vertex_sample(conf[..., None])[:, 0]
    prior = at.vertex_sample(reg.hair_prior[..., None]) * level
    # a firmer prior than the skin tone's: between hair seen on the crown and skin seen on the
    # neck, the unseen back of the head follows where hair grows, not a halfway grey
    hv = mesh_fill(model, at.skin_vertices, vals, wts, prior=prior, match_gain=False, eps=0.05)
    full_v = np.zeros((model.n_vertices, 1), np.float32)
    full_v[at.skin_vertices] = hv
    h = at.low_grid(at.interpolate_low(full_v))[..., 0]
    # observed where seen, completed elsewhere; then the soft step and the hair-can-grow prior
    h = conf * obs + (1 - conf) * h
    h = _smoothstep((h - 0.3) / 0.4) * np.clip(reg.hair_prior * 1.5, 0, 1)
    face_px = np.sqrt(at.low_face.sum() / 600.0)  # coarse texels per cm
    h = cv2.GaussianBlur(h.astype(np.float32), (0, 0), max(0.2 * face_px, 0.5))
    return np.clip(h, 0, 1).astype(np.float32) * at.low_skin
