"""Small geometry helpers shared by the correspondence builder, the tests and the benchmark."""
from __future__ import annotations

import numpy as np


def similarity_transform(src: np.ndarray, dst: np.ndarray, scale: bool = True):
    """(s, R, t) minimising |s R src + t - dst| over corresponding points (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / a.var(0).sum() if scale else 1.0
    return s, R, md - s * R @ ms
