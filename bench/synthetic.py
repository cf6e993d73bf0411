"""Synthetic ground truth: random ICT faces seen by known cameras, with landmarks projected exactly.

Used by the tests and the benchmark to measure the fitter through the same code path as real photos.
"""
from __future__ import annotations

import math

import numpy as np

from backend.face_model import ANTAGONISTS, FACE_VERTICES, FaceModel
from backend.fit import LandmarkSpec
from backend.fit.spec import view_yaw
from .geometry import similarity_transform


def look_at_camera(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0, distance_cm: float = 60.0,
                   target=(0.0, 0.0, 5.0)):
    """OpenCV (R, t) of a camera orbiting the head: yaw > 0 shows the subject's left cheek... i.e. the
    face appears turned towards the image's right (matches fitting.head_angles)."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    head = Rz @ Rx @ Ry  # head rotation seen in a y-up, z-to-viewer camera frame
    flip = np.diag([1.0, -1.0, -1.0])
    R = flip @ head
    t = -R @ np.asarray(target) + np.array([0, 0, distance_cm])
    return R, t


def random_face(rng: np.random.Generator, model: FaceModel, n_active_expr: int = 6, max_weight: float = 0.7,
                identity_scale: float = 1.0):
    ident = rng.standard_normal(model.n_identity) * identity_scale
    expr = np.zeros(model.n_expression)
    idx = rng.choice(model.n_expression, n_active_expr, replace=False)
    expr[idx] = rng.uniform(0.05, max_weight, n_active_expr)
    names = model.expression_names
    for a, b in ANTAGONISTS:  # a face cannot do both (the fitter keeps them apart): drop the second
        if expr[names.index(a)] > 0 and expr[names.index(b)] > 0:
            expr[names.index(b)] = 0.0
    return ident, expr


def project(points: np.ndarray, R, t, f, cx, cy) -> np.ndarray:
    Xc = points @ np.asarray(R).T + np.asarray(t)
    return np.stack([f * Xc[:, 0] / Xc[:, 2] + cx, f * Xc[:, 1] / Xc[:, 2] + cy], 1)


def landmark_points(vertices: np.ndarray, spec: LandmarkSpec, expression=None, R=None, t=None) -> np.ndarray:
    """Model-space landmarks as the fitter models them (spec.points): the face oval at the camera's view yaw, the
    iris centres turned by the expression's gaze."""
    return spec.points(vertices, expression, 0.0 if R is None else view_yaw(R, t))


def make_scene(rng, model, spec, yaws, pitches=None, noise_px=0.0, size=1024, focal=None, distance_cm=60.0,
               shared_expression=False, off_axis_cm=(0.0, 0.0)):
    """One subject, several views. Returns dict with truth and per-view landmarks (pixel-centre coords).
    off_axis_cm: the head moved sideways and down in the camera frame (a face away from the image centre)."""
    ident, _ = random_face(rng, model)
    focal = focal if focal is not None else 1.4 * size
    views = []
    base_expr = random_face(rng, model)[1]
    for i, yaw in enumerate(yaws):
        pitch = 0.0 if pitches is None else pitches[i]
        expr = base_expr if shared_expression else random_face(rng, model)[1]
        R, t = look_at_camera(yaw, pitch, rng.uniform(-5, 5), distance_cm)
        t = t + np.array([*off_axis_cm, 0.0])
        verts = model.vertices(ident, expr)
        pts = project(landmark_points(verts, spec, expr, R, t), R, t, focal, (size - 1) / 2, (size - 1) / 2)
        pts = pts + rng.normal(0, noise_px, pts.shape) if noise_px > 0 else pts
        views.append(dict(R=R, t=t, expression=expr, yaw=yaw, pitch=pitch, points=pts, size=(size, size),
                          focal=focal))
    return dict(identity=ident, views=views)


def similarity_align(src: np.ndarray, dst: np.ndarray, scale: bool = True):
    """Aligned copy of src minimising |s R src + t - dst| (Umeyama)."""
    s, R, t = similarity_transform(src, dst, scale)
    return s * np.asarray(src, np.float64) @ R.T + t


def face_error_mm(model: FaceModel, ident_fit, ident_true, expr_fit=None, expr_true=None) -> np.ndarray:
    """Per-vertex error (mm) over the face region after similarity alignment."""
    a, b = FACE_VERTICES
    fit = model.vertices(ident_fit, expr_fit)[a:b].astype(np.float64)
    true = model.vertices(ident_true, expr_true)[a:b].astype(np.float64)
    return np.linalg.norm(similarity_align(fit, true) - true, axis=1) * 10.0
