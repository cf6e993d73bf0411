"""Per-photo skin segmentation: what in this photo is the person's skin.

Three cues, each weak alone:
- person against background: MediaPipe's selfie segmenter (soft, a few pixels loose);
- a skin-colour model learned from this photo's own inner face (the `sample` region of
  regions.py as the fitted mesh sees it): a Gaussian over log-chromaticity (log R/G, log B/G),
  which shading does not change, plus a generous band on log-luminance (shadowed skin stays,
  dark hair and bright backgrounds go). Hair, clothing and backgrounds differ from skin in
  chromaticity or luminance far more often than in neither;
- where the face is (regions.py `trusted`): inside the face oval and below the brows, a
  photo pixel on the fitted mesh is face whatever its colour.

The masks are made at an analysis scale (the head's box at ~512 px) and handed to the baker
as one uint8 image at the photo's size, eroded so that bilinear sampling next to a boundary
never reaches a non-skin pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_EPS = 1.0 / 255.0
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
# chromaticity spread floor (log units): a uniformly coloured face would otherwise give a
# model too tight to accept its own JPEG noise
_MIN_SIGMA = 0.03
# accept up to 2.5 sigma fully, nothing beyond 4 sigma
_CHROMA_FULL, _CHROMA_ZERO = 2.5, 4.0
# luminance band around the face's median, natural log: skin in shadow down to ~20 % of the
# median survives (under the chin, behind the jaw), up to ~3.5x (highlights)
_LUMA_LOW, _LUMA_HIGH, _LUMA_SOFT = -1.6, 1.25, 0.35


def _features(lin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """linear RGB (..., 3) -> chroma (..., 2), log luminance (...)."""
    lg = np.log(np.maximum(lin, 0) + _EPS)
    chroma = np.stack([lg[..., 0] - lg[..., 1], lg[..., 2] - lg[..., 1]], -1)
    luma = np.log(lin @ _LUMA + _EPS)
    return chroma.astype(np.float32), luma.astype(np.float32)


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


@dataclass
class SkinColour:
    mean: np.ndarray  # (2,) log-chroma
    icov: np.ndarray  # (2, 2)
    luma: float  # median log-luminance
    n: int  # samples the model rests on

    def likelihood(self, lin: np.ndarray) -> np.ndarray:
        """linear RGB (..., 3) -> (...) float32 in [0, 1]: how skin-like each colour is."""
        chroma, luma = _features(lin)
        d = chroma - self.mean
        m2 = np.einsum("...i,ij,...j->...", d, self.icov, d)
        # dark pixels have noisy chromaticity: widen the gate as the luminance drops
        noise = np.clip(self.luma - luma, 0, None) * 0.3
        dist = np.sqrt(np.maximum(m2, 0)) / (1.0 + noise)
        pc = _smoothstep((_CHROMA_ZERO - dist) / (_CHROMA_ZERO - _CHROMA_FULL))
        rel = luma - self.luma
        pl = _smoothstep((rel - _LUMA_LOW) / _LUMA_SOFT) * _smoothstep((_LUMA_HIGH - rel) / _LUMA_SOFT)
        return (pc * pl).astype(np.float32)


def fit_skin_colour(lin: np.ndarray, weights: np.ndarray | None = None, min_samples: int = 200) -> SkinColour | None:
    """Robust Gaussian skin model from samples (n, 3) linear RGB; None when too few samples."""
    lin = np.asarray(lin, np.float32).reshape(-1, 3)
    w = np.ones(len(lin), np.float32) if weights is None else np.asarray(weights, np.float32).reshape(-1)
    chroma, luma = _features(lin)
    keep = (w > 0) & np.isfinite(luma)
    if keep.sum() < min_samples:
        return None
    for _ in range(4):  # trimmed re-estimation: brows, shadows, glasses, specular spots drop out
        ww = w * keep
        sw = float(ww.sum())
        mean = (chroma * ww[:, None]).sum(0) / sw
        d = chroma - mean
        cov = (d * ww[:, None]).T @ d / sw + np.eye(2) * _MIN_SIGMA ** 2
        icov = np.linalg.inv(cov)
        m2 = np.einsum("ni,ij,nj->n", d, icov, d)
        med_l = float(np.median(luma[keep]))
        mad_l = 1.4826 * float(np.median(np.abs(luma[keep] - med_l))) + 0.05
        new = (w > 0) & (m2 < 9.0) & (np.abs(luma - med_l) < 3.0 * mad_l)
        if new.sum() < min_samples or (new == keep).all():
            break
        keep = new
    return SkinColour(mean.astype(np.float32), icov.astype(np.float32), med_l, int(keep.sum()))


@dataclass
class PhotoMasks:
    """Per-photo masks at the photo's size, packed for one cv2.remap: channel 0 = skin (person and
    skin colour), channel 1 = person, channel 2 = person but not skin colour (hair, clothing, hats);
    each eroded; uint8 0..255."""
    packed: np.ndarray  # (H, W, 3) uint8
    colour: SkinColour | None


def photo_masks(image_u8: np.ndarray, lin_of_u8, colour: SkinColour | None, person: np.ndarray | None,
                box: tuple[int, int, int, int], face_px: float) -> PhotoMasks:
    """Skin and person masks of one photo.

    image_u8 (H, W, 3); lin_of_u8: the sRGB->linear lookup (uint8 -> float32); person (H, W) float in
    [0, 1] or uint8 in 0..255, or None (then everything counts as person); box = (x0, y0, x1, y1) of the head in the
    photo, where the work is done; face_px: the face's size in photo pixels (sets the erosion).
    """
    H, W = image_u8.shape[:2]
    x0, y0, x1, y1 = box
    crop = image_u8[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    s = min(1.0, 512.0 / max(ch, cw, 1))
    small = cv2.resize(crop, (max(1, round(cw * s)), max(1, round(ch * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else crop
    if person is not None:
        p = person[y0:y1, x0:x1]
        p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
        p = cv2.resize(p, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA) if s < 1 else p
        # the segmenter's edge is soft and loose: from 0.5 up only, full trust from 0.8
        pers = _smoothstep((p - 0.5) / 0.3)
    else:
        pers = np.ones(small.shape[:2], np.float32)
    if colour is not None:
        lik = colour.likelihood(lin_of_u8(small))
        # a doubtful pixel is not skin: better filled than contaminated
        skin = _smoothstep((lik - 0.5) / 0.35) * pers
        other = (1 - lik) * pers
    else:
        skin = pers.copy()
        other = np.zeros_like(pers)
    # erosion: ~1.5 % of the face (a few photo pixels), at least one analysis pixel
    r = max(1, int(round(0.015 * face_px * s)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    stack = cv2.erode(np.stack([skin, pers, other], -1).astype(np.float32), k)
    small_packed = np.clip(stack * 255 + 0.5, 0, 255).astype(np.uint8)
    packed = np.zeros((H, W, 3), np.uint8)
    packed[y0:y1, x0:x1] = cv2.resize(small_packed, (cw, ch), interpolation=cv2.INTER_LINEAR) if s < 1 \
        else small_packed
    return PhotoMasks(packed, colour)
