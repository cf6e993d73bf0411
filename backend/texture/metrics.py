"""Photometric error measures: PSNR and SSIM inside a mask."""
from __future__ import annotations

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0) -> float:
    """PSNR in dB over the masked pixels (all channels); a, b same shape, uint8 or float on `peak`."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        d = d[mask]
    mse = float(np.mean(d * d)) if d.size else float("nan")
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def ssim_map(a: np.ndarray, b: np.ndarray, peak: float = 255.0, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. 2004 SSIM with an 11x11 Gaussian window; per pixel, averaged over channels."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), sigma)  # noqa: E731
    out = np.zeros(a.shape[:2], np.float32)
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        out += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out / a.shape[2]


def masked_ssim(photo: np.ndarray, render: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the mask; outside it the render is replaced by the photo so the
    window statistics at the mask border compare like with like."""
    comp = np.where(mask[..., None], render, photo)
    m = ssim_map(photo, comp)
    return float(m[mask].mean()) if mask.any() else float("nan")
