"""Detail normal map from the photos' shading ("shape from shading, lite").

After de-lighting removes the smooth (3DMM-scale) shading, what is left in the
luminance at the scale of a few millimetres is mostly albedo edges plus the shading of
geometry the 3DMM cannot express: wrinkles, folds, pores, creases are darker than their
surroundings because they are partly self-shadowed. We treat the band-passed log
luminance of the skin texture as a relative height (dark = recessed), fade it out at
the edges of what the cameras saw, and differentiate it in UV space into a
tangent-space normal map. This is a heuristic (it also turns moles and brow hairs into
small bumps), deliberately kept gentle: tilts of a few degrees.

Tangent space is Blender's / OpenGL's: R = +U (tangent), G = +V (bitangent, up in UV),
B = the surface normal; a flat texel is (128, 128, 255).
"""
from __future__ import annotations

import cv2
import numpy as np


def detail_normal_map(albedo_linear: np.ndarray, seen: np.ndarray, region: np.ndarray, size: int,
                      strength: float = 1.0) -> tuple[np.ndarray, dict]:
    """albedo_linear (H, W, 3) float; seen (H, W) [0, 1] confidence; region (H, W) bool where
    detail is allowed (the face part). Returns (uint8 (H, W, 3) normal map, stats)."""
    H, W = region.shape
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (128, 128, 255)
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    if not len(rows):
        return img, {"tilt_deg_p50": 0.0, "tilt_deg_p99": 0.0}
    px = size / 2048.0  # texel scale relative to the default size
    pad = int(np.ceil(12 * max(px, 0.5))) + 2  # the blurs' reach: the box keeps their borders outside
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, H)
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, W)
    box = (slice(r0, r1), slice(c0, c1))
    lum = albedo_linear[box] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    logl = np.log(np.maximum(lum, 1e-3)).astype(np.float32)
    s_hi = max(6.0 * px, 1.0)  # removes everything broader than ~1 cm on the face
    s_lo = max(0.7 * px, 0.5)  # removes sensor / JPEG noise
    band = cv2.GaussianBlur(logl, (0, 0), s_lo) - cv2.GaussianBlur(logl, (0, 0), s_hi)
    band = np.clip(band, -0.35, 0.35)
    conf = np.clip(seen[box], 0, 1).astype(np.float32) * region[box].astype(np.float32)
    # soft edges so the map never steps at the border of what was seen
    conf = cv2.GaussianBlur(cv2.erode(conf, np.ones((3, 3), np.uint8), iterations=max(1, int(4 * px))),
                            (0, 0), max(3.0 * px, 1.0))
    height = band * conf  # log-luminance units
    # gradient in texels; +V is up (row index decreases)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    k = strength * 3.0 * (size / 2048.0)  # slope per log-luminance step per texel, size-invariant in UV
    gx *= -k
    gy *= k
    nz = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)  # the normal (-k gx, k gy, 1), normalised
    sel = conf[::4, ::4] > 0.5  # statistics on a quarter of the texels per axis: plenty for percentiles
    tilt = np.degrees(np.arccos(np.clip(nz[::4, ::4][sel], -1, 1)))
    stats = {"tilt_deg_p50": float(np.median(tilt)) if tilt.size else 0.0,
             "tilt_deg_p99": float(np.percentile(tilt, 99)) if tilt.size else 0.0}
    out = img[box]
    for c, comp in enumerate((gx * nz, gy * nz, nz)):  # channel by channel: no (H, W, 3) float temporary
        out[..., c] = np.clip(np.round(comp * 127.5 + 127.5), 0, 255)
    return img, stats
