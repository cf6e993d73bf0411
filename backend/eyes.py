"""The eyes of the ICT model: rigid eyeballs turned by the gaze.

ICT's eyeball parts hold two surfaces each: a transparent outer shell (cornea bulge and sclera) and an inner
ball whose front is the iris plane (its depth steps from 1.44 cm to 1.17 cm from the centre at 0.6 cm from the
axis: the iris edge). The expression shapes never move the eyeballs (eyeLook* only carry the lids), so a gaze is
a rotation of each eyeball about its centre, which we derive from the eyeLook* weights (face_model.gaze_angles).
The fitter sees the pupil centre through MediaPipe's iris points; the texture baker paints the iris where the
posed eyeball puts it; the Blender rig turns the eye bones by the same angles.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .face_model import PARTS, FaceModel, gaze_angles

SIDES = ("left", "right")
IRIS_RADIUS_CM = 0.6  # where ICT's iris plane ends


@dataclass(frozen=True)
class EyeGeometry:
    """Rest pose (mean identity): per side the inner ball and outer shell vertex ids, the eyeball centre and
    optical axis; for every eyeball vertex its distance from its eye's axis (rho, cm) and angle about it (phi)."""

    inner: dict
    outer: dict
    centre: dict
    axis: dict
    rho: np.ndarray  # (N,) 0 outside the eyeballs
    phi: np.ndarray


def _components(tris, a, b):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    t = tris[(tris[:, 0] >= a) & (tris[:, 0] < b)] - a
    n = b - a
    g = sp.coo_matrix((np.ones(t.size), (t.ravel(), np.roll(t, 1, 1).ravel())), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    return [np.nonzero(lab == k)[0] + a for k in range(lab.max() + 1)]


@functools.lru_cache(maxsize=4)
def _eye_geometry(model_id: int) -> EyeGeometry:
    model = _MODELS[model_id]
    tris = model.triangles()
    V = model.neutral.astype(np.float64)
    inner, outer, centre, axis = {}, {}, {}, {}
    rho = np.zeros(model.n_vertices)
    phi = np.zeros(model.n_vertices)
    for side in SIDES:
        a, b = PARTS[f"eyeball_{side}"]
        comps = _components(tris, a, b)
        shell = max(comps, key=lambda ids: V[ids, 2].max())  # the cornea bulges furthest forward
        ball = np.concatenate([c for c in comps if c is not shell])
        P = V[shell]
        s = np.linalg.lstsq(np.c_[2 * P, np.ones(len(P))], (P ** 2).sum(1), rcond=None)[0]  # sphere fit
        c = s[:3]
        apex = P[np.argmax(P[:, 2])]
        ax = (apex - c) / np.linalg.norm(apex - c)
        rel = V[a:b] - c
        perp = rel - np.outer(rel @ ax, ax)
        e1 = np.cross([0.0, 1.0, 0.0], ax)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(ax, e1)
        rho[a:b] = np.linalg.norm(perp, axis=1)
        phi[a:b] = np.arctan2(perp @ e2, perp @ e1)
        inner[side], outer[side], centre[side], axis[side] = ball, shell, c, ax
    return EyeGeometry(inner, outer, centre, axis, rho, phi)


_MODELS: dict = {}


def eye_geometry(model: FaceModel) -> EyeGeometry:
    _MODELS[id(model)] = model
    return _eye_geometry(id(model))


def gaze_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Eye rotation in model axes: yaw > 0 turns the eye towards the subject's left (+X), pitch > 0 looks up (+Y)."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return Ry @ Rx


def eye_centres(model: FaceModel, vertices: np.ndarray) -> dict:
    """Eyeball centres {side: (3,)} of an evaluated mesh: the rest centre carried by its shell's mean motion
    (identity modes move and scale the eyeballs slightly)."""
    eg = eye_geometry(model)
    return {s: eg.centre[s] + (vertices[eg.outer[s]] - model.neutral[eg.outer[s]]).mean(0) for s in SIDES}


def pose_eyes(model: FaceModel, vertices: np.ndarray, gaze: dict) -> np.ndarray:
    """Copy of an evaluated mesh (N,3) with each eyeball turned by gaze {side: (yaw, pitch) deg}."""
    V = np.array(vertices, np.float64)
    for side, c in eye_centres(model, V).items():
        a, b = PARTS[f"eyeball_{side}"]
        V[a:b] = (V[a:b] - c) @ gaze_rotation(*gaze[side]).T + c
    return V


def posed_vertices(model: FaceModel, identity, expression) -> np.ndarray:
    """Model vertices with the eyeballs turned by the gaze the eyeLook* weights of `expression` say."""
    V = model.vertices(identity, expression)
    return pose_eyes(model, V, gaze_angles(dict(zip(model.expression_names, np.asarray(expression, float)))))


def pupil_points(model: FaceModel, vertices: np.ndarray | None = None) -> dict:
    """Pupil centres {side: (3,)} of an evaluated mesh (pupil_embedding applied to it)."""
    V = model.neutral if vertices is None else vertices
    return {s: (V[ids] * b[:, None]).sum(0) for s, (ids, b) in pupil_embedding(model).items()}


@functools.lru_cache(maxsize=4)
def _pupil_embedding(model_id: int) -> dict:
    model = _MODELS[model_id]
    eg = eye_geometry(model)
    V = model.neutral.astype(np.float64)
    out = {}
    for side in SIDES:
        # The iris plane has a hole where the pupil is, 0.7 mm off the shell's axis; its rim is a ring of vertices
        # at one depth. The pupil centre is the ring's centre: three ring vertices 120 deg apart hold it.
        ids = eg.inner[side]
        z = (V[ids] - eg.centre[side]) @ eg.axis[side]
        near = ids[(eg.rho[ids] < 0.2) & (z > 1.0)]
        zn = (V[near] - eg.centre[side]) @ eg.axis[side]
        rim_z = zn[np.argmin(eg.rho[near])]
        ring = near[np.abs(zn - rim_z) < 0.003]
        c = V[ring].mean(0)
        e1 = np.cross(eg.axis[side], [0.0, 1.0, 0.0])
        e2 = np.cross(eg.axis[side], e1)
        ang = np.arctan2((V[ring] - c) @ e2, (V[ring] - c) @ e1)
        three = np.array([ring[np.argmin(np.abs(np.angle(np.exp(1j * (ang - a)))))] for a in (0.0, 2.094, 4.189)])
        P = V[three]
        l01 = np.linalg.lstsq((P[:2] - P[2]).T, c - P[2], rcond=None)[0]
        out[side] = (three, np.array([l01[0], l01[1], 1 - l01.sum()]))
    return out


def pupil_embedding(model: FaceModel) -> dict:
    """{side: (vertex ids (3,), barycentrics (3,))}: the pupil centre, where the optical axis crosses the iris plane
    (about 1.44 cm in front of the eyeball's centre), as a combination of three vertices of the pupil's rim."""
    _MODELS[id(model)] = model
    return _pupil_embedding(id(model))
