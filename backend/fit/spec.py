"""Where each detector landmark lives on the ICT surface, and how much to trust it.

MediaPipe-478 uses the calibrated map in weights/mediapipe_to_ict.npz (bench/landmark_calibration.py says how it
is measured): a fixed surface point for most landmarks, a table over the view's yaw for the face oval (its points
slide along the silhouette as the head turns), a noise figure per landmark, and the two iris centres as the pupil
centres of the rigid eyeballs, which the gaze turns (backend/eyes.py). iBUG-68 uses ICT's own landmark vertices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..face_model import FaceModel

IRIS_CENTRES = {468: "right", 473: "left"}  # MediaPipe's iris centres: 468 sits in the eye of outer corner 33


@dataclass
class LandmarkSpec:
    format: str
    vertex_ids: np.ndarray  # (L, 3)
    bary: np.ndarray  # (L, 3)
    valid: np.ndarray  # (L,) usable for fitting
    contour: np.ndarray  # (L,) silhouette-dependent landmark
    sigma: np.ndarray | None = None  # (L,) detector noise, % of eye distance (None: all alike)
    # face-oval table: contour landmark ids (C,), view-yaw bin centres (nb,) deg, and per landmark and bin the
    # surface point (C, nb, 3) vertex ids + barycentrics; None: the contour uses the fixed embedding above
    contour_ids: np.ndarray | None = None
    contour_yaw_bins: np.ndarray | None = None
    contour_tri: np.ndarray | None = None
    contour_bary: np.ndarray | None = None
    # (L, E, 3) motion of a landmark per unit expression weight that the mesh's blendshapes do not carry: the
    # iris centres turned by eyeLook* (eyeballs are rigid; ICT's eyeLook shapes move only the lids)
    gaze_basis: np.ndarray | None = None
    # (E,) spread of the detector's own expression scores around the truth, on the model's shape names
    # (bench/landmark_calibration.py); None: the detector gives none, or they are not calibrated
    blendshape_sigma: np.ndarray | None = None
    # (L, nb) each landmark's error at each view yaw of contour_yaw_bins (% of eye distance): at large yaw the
    # detector guesses the far side's points; None: the error does not depend on the view
    sigma_yaw: np.ndarray | None = None
    # (L, E, 3) how much further (or less far) the detector moves each fixed landmark than the model's surface does
    # for each shape (calibrated response gain - 1, times the landmark's expression basis): MediaPipe's lid points
    # close only about 60 % of the way in a blink, so without it a closed eye fits as half shut. None: no calibration
    response_basis: np.ndarray | None = None

    @property
    def iris(self) -> np.ndarray:
        m = np.zeros(len(self.valid), bool)
        if self.gaze_basis is not None:
            m[np.abs(self.gaze_basis).sum((1, 2)) > 0] = True
        return m

    def weights(self) -> np.ndarray:
        """(L,) relative landmark weights: inverse noise variance, 1 for a typical fixed landmark, clipped to
        [0.1, 4] so no single point can dominate the fit."""
        if self.sigma is None:
            return np.ones(len(self.valid))
        return np.clip((self.reference_sigma / np.maximum(self.sigma, 1e-6)) ** 2, 0.1, 4.0)

    @property
    def reference_sigma(self) -> float:
        """The noise of a typical fixed landmark (weight 1)."""
        return float(np.median(self.sigma[self.valid & ~self.contour & ~self.iris])) if self.sigma is not None else 1.0

    @property
    def expression_offsets(self) -> np.ndarray | None:
        """(L, E, 3) what each shape adds to the landmarks beyond moving the surface they sit on: the iris centres
        turning with the eyeballs (gaze_basis) and the detector's calibrated response (response_basis)."""
        parts = [b for b in (self.gaze_basis, self.response_basis) if b is not None]
        return None if not parts else parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def points(self, vertices: np.ndarray, expression=None, view_yaw: float = 0.0) -> np.ndarray:
        """(L,3) landmark positions on an evaluated mesh (model space), as the fitter models them: the face oval
        taken at this view yaw (degrees, view_angles), the iris centres turned by the expression's eyeLook*."""
        V = np.asarray(vertices, np.float64)
        P = (V[self.vertex_ids] * self.bary[..., None]).sum(1)
        if self.contour_ids is not None:
            w = yaw_weights(self.contour_yaw_bins, view_yaw)
            Pc = (V[self.contour_tri] * self.contour_bary[..., None]).sum(2)  # (C, nb, 3)
            P[self.contour_ids] = (Pc * w[None, :, None]).sum(1)
        if self.expression_offsets is not None and expression is not None:
            P = P + np.einsum("e,led->ld", np.asarray(expression, np.float64), self.expression_offsets)
        return P


def surface_rows(model: FaceModel, vertex_ids, bary):
    """Points on the model's surface given by triangle vertex ids and barycentric weights (..., 3): their neutral
    positions (..., 3) and expression basis (..., E, 3)."""
    return ((model.neutral[vertex_ids] * bary[..., None]).sum(-2),
            np.einsum("e...jd,...j->...ed", model.expression[:, vertex_ids], bary))


def landmark_evaluator(spec: LandmarkSpec, model: FaceModel):
    """A function (expression (N,E), view yaw (N,)) -> (N,L,3): spec.points for many frames of one face (the model's
    identity as given, e.g. a personalised model), from landmark-level bases built once."""
    E = model.n_expression
    mean, basis = surface_rows(model, spec.vertex_ids, spec.bary)  # (L,3), (L,E,3)
    if spec.expression_offsets is not None:
        basis = basis + spec.expression_offsets
    table = None
    if spec.contour_ids is not None:
        table = surface_rows(model, spec.contour_tri, spec.contour_bary)  # (C,nb,3), (C,nb,E,3)

    def evaluate(expression, yaws):
        expression = np.asarray(expression, np.float64).reshape(-1, E)
        P = mean[None] + np.einsum("ne,led->nld", expression, basis)
        if table is not None:
            w = np.stack([yaw_weights(spec.contour_yaw_bins, y) for y in np.atleast_1d(yaws)])  # (N, nb)
            Pc = np.einsum("nk,ckd->ncd", w, table[0]) + np.einsum("nk,ne,cked->ncd", w, expression, table[1])
            P[:, spec.contour_ids] = Pc
        return P

    return evaluate


def view_yaw(R, t, target=(0.0, 0.0, 5.0)) -> float:
    """Yaw (degrees) of the ray from the head (model point `target`) to the camera, in the head's frame: 0 = the
    camera straight ahead of the face, > 0 = off to the subject's left. This, not the head's yaw in the image,
    decides where the face's silhouette runs (a head at the edge of a wide lens is seen from the side)."""
    cam = -np.asarray(R, np.float64).T @ np.asarray(t, np.float64)
    d = cam - np.asarray(target)
    return math.degrees(math.atan2(d[0], d[2]))


def yaw_weights(bins, yaw: float) -> np.ndarray:
    """Linear interpolation weights over the yaw bins (clamped at the ends)."""
    y = float(np.clip(yaw, bins[0], bins[-1]))
    k = int(np.clip(np.searchsorted(bins, y) - 1, 0, len(bins) - 2))
    a = (y - bins[k]) / (bins[k + 1] - bins[k])
    w = np.zeros(len(bins))
    w[k], w[k + 1] = 1 - a, a
    return w


def gaze_basis(model: FaceModel, vertex_ids: np.ndarray, bary: np.ndarray, iris: dict) -> np.ndarray:
    """(L, E, 3): how each iris centre moves per unit eyeLook* weight - the chord of the eyeball's rotation by
    EYE_LOOK_RANGE_DEG about its centre. Linear in the weight: at half the range the chord's midpoint is 0.4 mm
    from the arc (1.5 cm radius, 15 deg), far below what a detector resolves."""
    from ..eyes import eye_centres, gaze_rotation
    from ..face_model import EYE_LOOK_RANGE_DEG

    names = model.expression_names
    h, up, down = EYE_LOOK_RANGE_DEG["horizontal"], EYE_LOOK_RANGE_DEG["up"], EYE_LOOK_RANGE_DEG["down"]
    turns = {"Left": {"eyeLookOutLeft": (h, 0), "eyeLookInLeft": (-h, 0), "eyeLookUpLeft": (0, up),
                      "eyeLookDownLeft": (0, -down)},
             "Right": {"eyeLookOutRight": (-h, 0), "eyeLookInRight": (h, 0), "eyeLookUpRight": (0, up),
                       "eyeLookDownRight": (0, -down)}}
    centres = eye_centres(model, model.neutral)
    out = np.zeros((len(vertex_ids), len(names), 3))
    for lm, side in iris.items():
        p = (model.neutral[vertex_ids[lm]] * bary[lm][:, None]).sum(0)
        c = centres[side]
        for name, (yaw, pitch) in turns[side.capitalize()].items():
            out[lm, names.index(name)] = gaze_rotation(yaw, pitch) @ (p - c) - (p - c)
    return out


def response_basis(model: FaceModel, spec: LandmarkSpec, gain: np.ndarray) -> np.ndarray:
    """(L, E, 3): (gain_e - 1) x each fixed landmark's expression basis on its embedding. The face oval's points are
    left out (the silhouette table models them) and so are the iris centres (gaze_basis turns them)."""
    _, basis = surface_rows(model, spec.vertex_ids, spec.bary)  # (L, E, 3)
    out = basis * (np.asarray(gain, np.float64) - 1.0)[None, :, None]
    out[spec.contour | spec.iris] = 0.0
    return out


def landmark_spec(fmt: str, model: FaceModel) -> LandmarkSpec:
    if fmt == "mediapipe478":
        from ..correspondence import load_correspondence
        from ..eyes import pupil_embedding

        c = load_correspondence()
        vid, bary = c["tri_vertex_ids"].copy(), c["bary"].copy()
        spec = LandmarkSpec(fmt, vid, bary, c["valid"].astype(bool), c["contour"].astype(bool))
        if "sigma" not in c:  # the geometric map: no calibration, no iris
            return spec
        for lm, side in IRIS_CENTRES.items():
            vid[lm], bary[lm] = pupil_embedding(model)[side]
        spec.sigma = c["sigma"].astype(np.float64)
        spec.contour_ids = c["contour_ids"]
        spec.contour_yaw_bins = c["contour_yaw_bins"].astype(np.float64)
        spec.contour_tri, spec.contour_bary = c["contour_tri"], c["contour_bary"].astype(np.float64)
        spec.gaze_basis = gaze_basis(model, vid, bary, IRIS_CENTRES)
        if "blendshape_sigma" in c:
            spec.blendshape_sigma = c["blendshape_sigma"].astype(np.float64)
        if "sigma_yaw" in c:
            spec.sigma_yaw = c["sigma_yaw"].astype(np.float64)
        if "expression_gain" in c:
            spec.response_basis = response_basis(model, spec, c["expression_gain"].astype(np.float64))
        return spec
    if fmt == "ibug68":
        ids = np.repeat(model.landmarks_ibug68[:, None], 3, 1)
        bary = np.tile([1.0, 0.0, 0.0], (68, 1))
        contour = np.zeros(68, bool)
        contour[:17] = True
        return LandmarkSpec(fmt, ids, bary, np.ones(68, bool), contour)
    raise ValueError(f"unknown landmark format {fmt!r}")
