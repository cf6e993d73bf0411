"""Seam-free combination of per-view textures: push-pull hole filling and multi-band blending."""
from __future__ import annotations

import cv2
import numpy as np


def _down(img):
    return cv2.pyrDown(img)


def _up(img, shape):
    return cv2.pyrUp(img, dstsize=(shape[1], shape[0]))


def push_pull(color: np.ndarray, weight: np.ndarray, min_size: int = 4) -> np.ndarray:
    """Fill texels with weight 0 by a smooth extension of the weighted colour (pyramid push-pull).

    color (H, W, C) float32, weight (H, W) >= 0. Texels with weight >= 1 keep their colour.
    """
    w = np.clip(weight.astype(np.float32), 0, 1)
    levels_i, levels_w = [color * w[..., None]], [w]
    while min(levels_w[-1].shape) > min_size:
        levels_i.append(_down(levels_i[-1]))
        levels_w.append(_down(levels_w[-1]))
    wc = levels_w[-1][..., None]
    ic = levels_i[-1]
    total_w = max(float(wc.sum()), 1e-12)
    mean = ic.reshape(-1, ic.shape[-1]).sum(0) / total_w  # the coarsest level falls back to the mean
    cur = np.where(wc > 1e-6, ic / np.maximum(wc, 1e-6), mean).astype(np.float32)
    for li, lw in zip(levels_i[-2::-1], levels_w[-2::-1]):
        up = _up(cur, lw.shape)
        a = np.clip(lw, 0, 1)[..., None]
        cur = ((li + (1 - a) * up) / np.maximum(lw[..., None] + (1 - a), 1e-6)).astype(np.float32)
    return cur


def fill_holes(color: np.ndarray, known: np.ndarray, factor: int = 4) -> np.ndarray:
    """Keep `known` texels, fill the rest with a smooth push-pull extension computed at
    1/factor resolution (the fill is low-frequency anyway, and this keeps it ~10x cheaper)."""
    H, W = known.shape
    k = known.astype(np.float32)
    if factor > 1 and min(H, W) >= 8 * factor:
        small = (W // factor, H // factor)
        ck = cv2.resize(color * k[..., None], small, interpolation=cv2.INTER_AREA)
        ks = cv2.resize(k, small, interpolation=cv2.INTER_AREA)
        c_small = np.where(ks[..., None] > 1e-6, ck / np.maximum(ks, 1e-6)[..., None], 0).astype(np.float32)
        fill = cv2.resize(push_pull(c_small, np.clip(ks * 4, 0, 1)), (W, H), interpolation=cv2.INTER_LINEAR)
    else:
        fill = push_pull(color, k)
    return np.where(known[..., None], color, fill).astype(np.float32)


def multiband_blend(colors: list[np.ndarray], weights: list[np.ndarray], levels: int = 6,
                    sharpness: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Burt-Adelson multi-band blending of several images with soft weights.

    Each band is blended with the weights blurred to that band's scale, so low
    frequencies (exposure, shading) cross-fade over a wide zone while fine detail
    switches over a narrow one: no visible seam and no double edges from small
    misregistration. Weights are raised to `sharpness` (close to "best view wins"
    at the finest level). Each view's pyramid is a normalised-convolution pyramid
    (blur(colour * mask) / blur(mask)), so texels a view did not see never leak
    into its bands. Returns (blended (H, W, C), summed weight (H, W)).
    """
    H, W = weights[0].shape
    wsum = np.zeros((H, W), np.float32)
    wmax = np.zeros((H, W), np.float32)
    for w in weights:
        np.maximum(wmax, w, out=wmax)
    inv_wmax = 1.0 / np.maximum(wmax, 1e-12)
    num = den = None
    for c, w in zip(colors, weights):
        w = np.asarray(w, np.float32)
        wsum += w
        # sharpen relative to the best view at each texel, w * (w / wmax)^(p-1): the best
        # view keeps its linear confidence, so small weights cannot underflow to 0/0
        m = (w > 0).astype(np.float32)
        gc = [c * m[..., None]]
        gm = [m]
        for _ in range(levels - 1):
            gc.append(_down(gc[-1]))
            gm.append(_down(gm[-1]))
        ghat = [gci / np.maximum(gmi, 1e-4)[..., None] for gci, gmi in zip(gc, gm)]
        del gc
        lap = [ghat[i] - _up(ghat[i + 1], ghat[i].shape[:2]) for i in range(levels - 1)] + [ghat[-1]]
        del ghat
        gw = _gaussian(w * np.power(w * inv_wmax, sharpness - 1, dtype=np.float32), levels)
        if num is None:
            num = [l * g[..., None] for l, g in zip(lap, gw)]
            den = gw
        else:
            for i in range(levels):
                num[i] += lap[i] * gw[i][..., None]
                den[i] += gw[i]
    out = num[-1] / np.maximum(den[-1], 1e-12)[..., None]
    for i in range(levels - 2, -1, -1):
        out = _up(out, num[i].shape[:2])
        out += num[i] / np.maximum(den[i], 1e-12)[..., None]
    return out.astype(np.float32), wsum


def _gaussian(img, levels):
    g = [img]
    for _ in range(levels - 1):
        g.append(_down(g[-1]))
    return g


def _laplacian(img, levels):
    g = _gaussian(img, levels)
    lap = [g[i] - _up(g[i + 1], g[i].shape[:2]) for i in range(levels - 1)]
    lap.append(g[-1])
    return lap
