"""Fixed regions of the ICT UV layout that the baker reasons with, on the coarse grid.

They come from the model alone, so they hold for any detector (MediaPipe, FAN, a landmarks
file): MediaPipe's face-mesh landmarks are carried onto the ICT surface through
weights/mediapipe_to_ict.npz (the fitted mesh follows the photo's landmarks, so a UV region
outlined by them is the same region in every photo, up to the fit's residual).

- `trusted`: inside MediaPipe's face oval and below the brows (soft, 0..1). Photo pixels there
  are face: beard, stubble, moles and make-up are the person's skin texture and are kept.
- `sample`: the trusted region without eyes, brows, lips and nostrils, where each photo's skin
  colour model is learned.
- `hair_prior`: where hair can grow (0..1): the scalp, down to the ears at the sides and the
  nape at the back; not the face below the brows, the ears or the throat.
- `pos`: neutral surface point of each coarse texel (cm), for anything else positional.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..face_model import FaceModel
from .atlas import Atlas, get_atlas

# MediaPipe face-mesh topology (mediapipe.tasks vision.FaceLandmarksConnections), as ordered index lists.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_BROW = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
LEFT_BROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
# nostrils and the alar creases around them
NOSE_LOWER = [98, 97, 2, 326, 327, 294, 278, 344, 440, 275, 4, 45, 220, 115, 48, 64]
RIGHT_IRIS = [468, 469, 470, 471, 472]  # centre first, then 4 points on the iris edge
LEFT_IRIS = [473, 474, 475, 476, 477]


@dataclass
class Regions:
    trusted: np.ndarray  # (h, w) float32
    sample: np.ndarray  # (h, w) bool
    hair_prior: np.ndarray  # (h, w) float32
    pos: np.ndarray  # (h, w, 3) float32 (NaN off the islands and their ring)


def _vertex_uv_px(model: FaceModel, rows: int) -> np.ndarray:
    """(N, 2) coarse-grid pixel position of every vertex (its first UV copy; NaN for vertices without one)."""
    tris, tuv = model.triangles(), model.triangle_uvs()
    out = np.full((model.n_vertices, 2), np.nan, np.float64)
    out[tris.ravel()[::-1]] = np.stack([model.uv[:, 0] * rows - 0.5,
                                        (1.0 - model.uv[:, 1]) * rows - 0.5], 1)[tuv.ravel()[::-1]]
    return out


def mediapipe_points_uv(model: FaceModel, rows: int, ids) -> np.ndarray:
    """MediaPipe landmark ids -> their (column, row) on a (rows, 2*rows) UV grid, via the stored correspondence."""
    from ..correspondence import load_correspondence

    c = load_correspondence()
    vuv = _vertex_uv_px(model, rows)
    ids = np.asarray(ids)
    return (vuv[c["tri_vertex_ids"][ids]] * c["bary"][ids][..., None]).sum(1)


@functools.lru_cache(maxsize=4)
def _regions_cached(size: int, model_key: int) -> Regions:
    from .atlas import _MODELS

    return build_regions(_MODELS[model_key], get_atlas(_MODELS[model_key], size))


def get_regions(model: FaceModel, size: int) -> Regions:
    get_atlas(model, size)
    return _regions_cached(int(size), id(model))


def build_regions(model: FaceModel, at: Atlas) -> Regions:
    h, w = at.low_shape
    pos = at.low_grid(at.interpolate_low(model.neutral), fill=np.nan)
    # coarse texels per cm on the face (the layout is near-isometric there)
    face_px = np.sqrt(at.low_face.sum() / 600.0)  # the ICT face part is ~600 cm^2

    def poly(ids):
        m = np.zeros((h, w), np.uint8)
        p = mediapipe_points_uv(model, h, ids)
        cv2.fillPoly(m, [np.round(p * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        return m.astype(bool)

    oval = poly(FACE_OVAL)
    brows = mediapipe_points_uv(model, h, RIGHT_BROW + LEFT_BROW)
    # forehead above the brows is where fringes fall: from ~1.5 cm above the brows the colour decides
    brow_row = float(brows[:, 1].min()) - 1.5 * face_px
    rows_i = np.arange(h, dtype=np.float32)[:, None]
    below = np.clip((rows_i - brow_row) / (0.8 * face_px), 0, 1)
    # the oval runs along the jaw line and the cheeks' silhouette: 1 cm inwards starts the trust
    inner = cv2.erode(oval.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (
        2 * int(face_px) + 1, 2 * int(face_px) + 1)))
    trusted = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 0.4 * face_px) * below * at.low_skin
    trusted = trusted.astype(np.float32)

    feats = np.zeros((h, w), np.uint8)
    for ids in (RIGHT_EYE, LEFT_EYE, RIGHT_BROW, LEFT_BROW, LIPS_OUTER, NOSE_LOWER):
        feats |= poly(ids).astype(np.uint8)
        pts = np.round(mediapipe_points_uv(model, h, ids)).astype(np.int32)
        cv2.polylines(feats, [pts], True, 1, thickness=max(1, int(0.3 * face_px)))
    k = 2 * int(0.6 * face_px) + 1
    feats = cv2.dilate(feats, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    sample = (trusted > 0.9) & ~feats & at.low_face

    # hair can grow above a line through the ear tops at the sides, down to the nape at the back
    # (model cm: eyes at y ~ 3.6, ear tops ~ 4, nape ~ -4, face front z ~ 9..13)
    y, z = pos[..., 1], pos[..., 2]
    line = np.interp(z, [-10.0, -4.0, 2.0, 6.0, 14.0], [-5.0, -3.0, 3.5, 6.5, 6.5])
    hair_prior = np.clip((y - line) / 2.0 + 0.5, 0, 1)
    hair_prior = np.nan_to_num(hair_prior) * (1 - trusted) * at.low_skin
    return Regions(trusted, sample, hair_prior.astype(np.float32), pos.astype(np.float32))
