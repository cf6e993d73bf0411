"""Second-order spherical-harmonic lighting: estimation from fitted geometry and de-lighting.

Model (Ramamoorthi & Hanrahan): linear radiance = albedo * sum_k L_k Y_k(n), with n the
unit normal in model space (+Y up, +Z out of the face) and L (9, 3) irradiance
coefficients per colour channel, order [Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22].
"""
from __future__ import annotations

import numpy as np

SH_ORDER = ["Y00", "Y1-1", "Y10", "Y11", "Y2-2", "Y2-1", "Y20", "Y21", "Y22"]


def sh_basis(n: np.ndarray) -> np.ndarray:
    """(M, 3) unit normals -> (M, 9) real SH basis values."""
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    return np.stack([
        np.full_like(x, 0.282095),
        0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1),
        1.092548 * x * z, 0.546274 * (x * x - y * y)], 1).astype(np.float32)


def shading(n: np.ndarray, L: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """(M, 3) normals, (9, 3) coefficients -> (M, 3) irradiance."""
    out = np.empty((len(n), L.shape[1]), np.float32)
    for s in range(0, len(n), chunk):
        out[s:s + chunk] = sh_basis(n[s:s + chunk]) @ L.astype(np.float32)
    return out


def estimate_lighting(normals: np.ndarray, colors: np.ndarray, weights: np.ndarray | None = None,
                      iterations: int = 6, ridge: float = 3e-3, seed: int = 0,
                      max_samples: int = 60000) -> np.ndarray:
    """Fit L (9, 3) so colours ~ rho * Y(n) L, with one unknown skin albedo rho per channel.

    The albedo is assumed constant over the samples (skin); brows, lips, stubble and
    specular spots break that, so the fit is iteratively reweighted (Tukey biweight on
    the relative residual) and they drop out. Higher orders get a small ridge penalty
    so a poorly spread set of normals (one frontal view) cannot produce wild lighting.
    The returned L absorbs rho (it is "radiance per unit normal"); normalise it yourself.
    """
    rng = np.random.default_rng(seed)
    M = len(normals)
    if M > max_samples:
        pick = rng.choice(M, max_samples, replace=False)
        normals, colors = normals[pick], colors[pick]
        weights = None if weights is None else weights[pick]
    A = sh_basis(normals).astype(np.float64)
    w = np.ones(len(A)) if weights is None else np.asarray(weights, np.float64)
    lam = np.array([0.0, 1, 1, 1, 4, 4, 4, 4, 4]) * ridge * max(float(w.sum()), 1.0)
    L = np.zeros((9, colors.shape[1]))
    robust = np.ones(len(A))
    for _ in range(iterations):
        ww = w * robust
        Aw = A * ww[:, None]
        G = A.T @ Aw
        for c in range(colors.shape[1]):
            rhs = Aw.T @ colors[:, c]
            # ridge towards "ambient only" keeps the scale set by Y00
            L[:, c] = np.linalg.solve(G + np.diag(lam), rhs)
        pred = A @ L
        rel = np.abs(colors - pred).mean(1) / np.maximum(np.abs(pred).mean(1), 1e-3)
        scale = 4.685 * max(1.4826 * np.median(rel), 0.02)
        robust = np.clip(1 - (rel / scale) ** 2, 0, None) ** 2
    return L.astype(np.float32)
