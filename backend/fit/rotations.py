"""Rotations: the exponential map used by the solver's pose updates, and the head angles reported to users."""
from __future__ import annotations

import math

import numpy as np
import torch


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from rotation vectors (..., 3) (Rodrigues)."""
    theta = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)[..., None]
    k = w / theta[..., 0]
    K = torch.zeros(*w.shape[:-1], 3, 3, dtype=w.dtype, device=w.device)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - K.transpose(-1, -2)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices (..., 3, 3) of vectors (..., 3)."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1), torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def head_angles(R: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of the head as the camera sees it.

    We express the head's rotation in a camera frame with y up and z towards the viewer, so a frontal
    face is the identity. Yaw > 0: the subject's nose points to the right of the picture (the camera sees
    more of the subject's left cheek).
    """
    Rh = np.diag([1.0, -1.0, -1.0]) @ np.asarray(R, np.float64)
    yaw = math.degrees(math.atan2(Rh[0, 2], Rh[2, 2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -Rh[1, 2]))))
    roll = math.degrees(math.atan2(Rh[1, 0], Rh[1, 1]))
    return yaw, pitch, roll


def relative_yaw_deg(R0, R1) -> float:
    """Yaw of view 1 relative to view 0 about the head's own vertical axis (model +Y).

    Taken from the relative rotation R0^T R1 in the head frame, so camera roll and pitch do not leak
    into it the way they do when subtracting per-view Euler angles."""
    M = np.asarray(R0, np.float64).T @ np.asarray(R1, np.float64)
    return math.degrees(math.atan2(M[0, 2], M[2, 2]))
