"""Where MediaPipe really puts its 478 points on an ICT face: the landmark embedding calibrated on rendered ground
truth (bench/gt_scenes.py), written by tools/calibrate_landmarks.py into weights/mediapipe_to_ict.npz.

The geometric map (bench/correspondence_build.py) places each point where MediaPipe's *canonical mesh* has its
vertex. The detector does not put its points there on faces: on rendered faces whose surface is known, its lid
points sit ~1.2 mm inside the model's lid margin (the eye looks less open than the model), its brows ~3 mm
higher, and its face-oval points slide along the silhouette as the head turns. Fitting the geometric map to such
points explains the offsets with expressions (eyeWide near 1 on every photo) and with identity.

Calibration, per landmark, from the renders:
1. material hits: the detected pixel's ray meets the true posed mesh at (triangle, barycentrics) - a point of the
   surface that identity and expression carry along; a point that lands on an eyeball, the mouth interior or the
   background snaps to the nearest face pixel (a lid margin, a lip edge, the silhouette);
2. fixed landmarks: the robust centre (geometric median) of the hits' rest positions, moved onto the surface;
3. face-oval landmarks: the same per bin of the view's yaw (the angle between the head's forward axis and the ray
   to the camera): a table the fitter interpolates by each view's current pose;
4. noise: the spread of each landmark's reprojection error (percent of eye distance) with the calibrated
   embedding and the true parameters; the fitter weighs each landmark by it.
The iris centres (468, 473) are the pupil centres of backend/eyes.py, moved by the gaze.
"""
from __future__ import annotations

import math

import numpy as np

from backend.eyes import posed_vertices
from backend.face_model import FaceModel
from backend.texture import atlas as atlas_mod
from backend.fit.spec import IRIS_CENTRES, yaw_weights
from backend.texture.raster import project, rasterize

from . import render_gt as rg

YAW_BINS = np.arange(-70.0, 70.1, 10.0)  # view-yaw bin centres of the face-oval table, degrees
MIN_HITS = 8  # fewer hits in a bin: the bin borrows its neighbour's entry


def view_angles(R, t, target=(0.0, 0.0, 5.0)):
    """(yaw, pitch) in degrees of the ray from the head (model point `target`) to the camera, in the head's frame:
    0 = the camera straight ahead of the face, yaw > 0 = the camera off to the subject's left."""
    cam = -np.asarray(R, np.float64).T @ np.asarray(t, np.float64)
    d = cam - np.asarray(target)
    return math.degrees(math.atan2(d[0], d[2])), math.degrees(math.atan2(d[1], math.hypot(d[0], d[2])))


def _bary(P2, z, u, v):
    """Perspective-correct barycentrics of pixel (u, v) in a projected triangle P2 (3,2) with depths z (3,)."""
    A = np.array([[P2[0, 0] - P2[2, 0], P2[1, 0] - P2[2, 0]], [P2[0, 1] - P2[2, 1], P2[1, 1] - P2[2, 1]]])
    l01 = np.linalg.solve(A, [u - P2[2, 0], v - P2[2, 1]])
    bs = np.array([l01[0], l01[1], 1 - l01.sum()]) / z
    return bs / bs.sum()


def material_hits(model: FaceModel, identity, photo, max_snap_px: float = 4.0):
    """(tri (L,), bary (L,3), snapped (L,)) of a detected photo: tri -1 where the point met nothing usable."""
    from scipy import ndimage

    V = posed_vertices(model, identity, photo.expression)
    w, h = photo.size
    f = photo.focal
    xy, Xc = project(V, photo.R, photo.t, f, f, (w - 1) / 2, (h - 1) / 2)
    tris = model.triangles()
    drawn = np.nonzero(atlas_mod.tri_part_mask(model, rg.DRAWN))[0]
    ras = rasterize(xy, Xc[:, 2], tris[drawn], h, w)
    face_tri = atlas_mod.tri_part_mask(model, ("face",))
    tid = np.where(ras.tri >= 0, drawn[np.maximum(ras.tri, 0)], -1)
    is_face = (tid >= 0) & face_tri[np.maximum(tid, 0)]
    dist, (iy, ix) = ndimage.distance_transform_edt(~is_face, return_indices=True)
    pts = photo.points
    out_t = np.full(len(pts), -1)
    out_b = np.zeros((len(pts), 3))
    snapped = np.zeros(len(pts), bool)
    for lm, (u, v) in enumerate(pts):
        x, y = int(round(u)), int(round(v))
        if not (0 <= x < w and 0 <= y < h):
            continue
        if is_face[y, x]:
            k = tid[y, x]
        elif dist[y, x] <= max_snap_px:
            k, snapped[lm] = tid[iy[y, x], ix[y, x]], True
        else:
            continue
        try:
            b = _bary(xy[tris[k]].astype(np.float64), Xc[tris[k], 2].astype(np.float64), u, v)
        except np.linalg.LinAlgError:
            continue
        if snapped[lm] or b.min() < -0.5:
            b = np.clip(b, 0, None)
            b /= b.sum()
        out_t[lm], out_b[lm] = k, b
    return out_t, out_b


def _geometric_median(X, iterations=50):
    y = np.median(X, 0)
    for _ in range(iterations):
        d = np.maximum(np.linalg.norm(X - y, axis=1), 1e-6)
        y_new = (X / d[:, None]).sum(0) / (1 / d).sum()
        if np.linalg.norm(y_new - y) < 1e-6:
            break
        y = y_new
    return y


class _Surface:
    """Closest points on the neutral mean face (trimesh), as (triangle's vertex ids, barycentrics)."""

    def __init__(self, model: FaceModel):
        import trimesh

        tris = model.triangles()
        self.face_tris = tris[atlas_mod.tri_part_mask(model, ("face",))]
        self.mesh = trimesh.Trimesh(model.neutral.astype(np.float64), self.face_tris, process=False)

    def embed(self, points):
        import trimesh

        closest, dist, tri = trimesh.proximity.closest_point(self.mesh, np.asarray(points, np.float64))
        bary = trimesh.triangles.points_to_barycentric(self.mesh.vertices[self.face_tris[tri]], closest)
        return self.face_tris[tri], np.clip(bary, 0, 1) / np.clip(bary, 0, 1).sum(1, keepdims=True), dist


def collect(model: FaceModel, scenes, progress=None):
    """Rest positions (P, L, 3) of the material hits of every detected photo (nan where none), and the photos'
    view yaw (P,)."""
    V0 = model.neutral.astype(np.float64)
    tris = model.triangles()
    X, yaw, photos = [], [], []
    total = sum(len(s.detected) for s in scenes)
    for s in scenes:
        for p in s.detected:
            t, b = material_hits(model, s.identity, p)
            x = np.full((len(t), 3), np.nan)
            ok = t >= 0
            x[ok] = (V0[tris[t[ok]]] * b[ok, :, None]).sum(1)
            X.append(x)
            yaw.append(view_angles(p.R, p.t)[0])
            photos.append((s, p))
            if progress is not None:
                progress(len(X), total)
    return np.stack(X), np.array(yaw), photos


def calibrate(model: FaceModel, scenes, base: dict, contour_ids, progress=None) -> dict:
    """The calibrated map (the fields of weights/mediapipe_to_ict.npz) from rendered scenes and the geometric map
    `base` (kept for landmarks the renders never hit, and for the iBUG-68 inverse map)."""
    X, yaw, photos = collect(model, scenes, progress)
    surf = _Surface(model)
    L = 478
    tri_ids, bary = base["tri_vertex_ids"].copy(), base["bary"].copy()
    contour = np.zeros(L, bool)
    contour[list(contour_ids)] = True
    hits = np.isfinite(X[..., 0])
    fixed = [lm for lm in range(468) if not contour[lm] and hits[:, lm].sum() >= MIN_HITS]
    centres = np.array([_geometric_median(X[hits[:, lm], lm]) for lm in fixed])
    t, b, _ = surf.embed(centres)
    tri_ids[fixed], bary[fixed] = t, b
    # face oval: a table over view yaw
    cids = np.flatnonzero(contour)
    nb = len(YAW_BINS)
    c_tri = np.zeros((len(cids), nb, 3), np.int64)
    c_bary = np.zeros((len(cids), nb, 3))
    c_count = np.zeros((len(cids), nb), np.int64)
    for i, lm in enumerate(cids):
        pts = np.full((nb, 3), np.nan)
        for k, yc in enumerate(YAW_BINS):
            sel = hits[:, lm] & (np.abs(yaw - yc) <= 7.5)
            c_count[i, k] = sel.sum()
            if sel.sum() >= MIN_HITS:
                pts[k] = _geometric_median(X[sel, lm])
        good = np.flatnonzero(np.isfinite(pts[:, 0]))
        if len(good) == 0:  # never hit: the geometric map's point in every bin
            pts[:] = (model.neutral[base["tri_vertex_ids"][lm]] * base["bary"][lm][:, None]).sum(0)
        else:
            for k in range(nb):  # empty bins hold the nearest filled bin's point
                if not np.isfinite(pts[k, 0]):
                    pts[k] = pts[good[np.argmin(np.abs(good - k))]]
        t, b, _ = surf.embed(pts)
        c_tri[i], c_bary[i] = t, b
        mid = int(np.argmin(np.abs(YAW_BINS)))
        tri_ids[lm], bary[lm] = t[mid], b[mid]
    out = {k: v for k, v in base.items()}
    valid = np.zeros(L, bool)
    valid[:468] = True
    valid[list(IRIS_CENTRES)] = True  # the pupils, turned by the gaze (backend/fit/spec.py)
    out.update(tri_vertex_ids=tri_ids, bary=bary, valid=valid, contour=contour, contour_ids=cids,
               contour_yaw_bins=YAW_BINS, contour_tri=c_tri, contour_bary=c_bary, contour_count=c_count,
               calibration_photos=np.int64(len(photos)))
    out["sigma"], out["sigma_yaw"] = landmark_noise(*residuals(model, out, photos))
    out["blendshape_sigma"] = blendshape_noise(model, photos)
    return out


def blendshape_noise(model: FaceModel, photos, floor: float = 0.05) -> np.ndarray:
    """(E,) RMS difference between MediaPipe's own blendshape scores and the truth, per model shape (ARKit's
    combined browInnerUp / cheekPuff score stands for both halves); `floor` keeps a shape MediaPipe happens to get
    right on every calibration photo from becoming an unbreakable constraint."""
    from backend.face_model import arkit_to_shape_names

    names = model.expression_names
    err = [np.array(list(arkit_to_shape_names(p.blendshapes, names).values())) - p.expression
           for _, p in photos if p.blendshapes]
    return np.maximum(np.sqrt(np.mean(np.square(err), 0)), floor)


def residuals(model: FaceModel, cmap: dict, photos) -> tuple[np.ndarray, np.ndarray]:
    """((P, 478, 2) reprojection error in percent of eye distance of every landmark with the map and the true
    parameters, (P,) view yaw of each photo)."""
    from backend.eyes import eye_centres, gaze_rotation, pupil_points
    from backend.face_model import gaze_angles

    res = np.full((len(photos), 478, 2), np.nan)
    yaw = np.zeros(len(photos))
    for n, (s, p) in enumerate(photos):
        V = posed_vertices(model, s.identity, p.expression)
        yaw[n] = view_angles(p.R, p.t)[0]
        P = embedded_points(model, cmap, V, yaw[n])
        gz = gaze_angles(dict(zip(model.expression_names, p.expression)))
        pp, cs = pupil_points(model, V), eye_centres(model, V)
        for lm, side in IRIS_CENTRES.items():
            P[lm] = cs[side] + gaze_rotation(*gz[side]) @ (pp[side] - cs[side])
        w, h = p.size
        uv, _ = project(P, p.R, p.t, p.focal, p.focal, (w - 1) / 2, (h - 1) / 2)
        iod = np.linalg.norm(p.points[33] - p.points[263])
        res[n] = (p.points - uv) / iod * 100
    return res, yaw


def landmark_noise(res: np.ndarray, yaw: np.ndarray):
    """Each landmark's error: (478,) overall robust spread (1.4826 MAD of its coordinate residuals about their
    median, percent of eye distance), and (478, nb) its robust error per view-yaw bin, offset included (1.4826
    median |residual|): at large yaw MediaPipe guesses the far side's points, and those guesses are biased."""
    med = np.nanmedian(res, 0)
    overall = 1.4826 * np.nanmedian(np.abs(res - med), (0, 2))
    by_yaw = np.full((res.shape[1], len(YAW_BINS)), np.nan)
    for k, yc in enumerate(YAW_BINS):
        sel = np.abs(yaw - yc) <= 7.5
        if sel.sum() >= MIN_HITS:
            by_yaw[:, k] = 1.4826 * np.nanmedian(np.abs(res[sel]), (0, 2))
    good = np.flatnonzero(np.isfinite(by_yaw[0]))
    for k in range(len(YAW_BINS)):  # empty bins hold the nearest filled bin's figure
        if not np.isfinite(by_yaw[0, k]):
            by_yaw[:, k] = by_yaw[:, good[np.argmin(np.abs(good - k))]]
    return overall, by_yaw


def embedded_points(model: FaceModel, cmap: dict, vertices, view_yaw: float) -> np.ndarray:
    """(478,3) landmark positions of an evaluated mesh under the map, the face oval taken at this view yaw."""
    P = (vertices[cmap["tri_vertex_ids"]] * cmap["bary"][..., None]).sum(1)
    if "contour_ids" in cmap:
        w = yaw_weights(cmap["contour_yaw_bins"], view_yaw)
        Pc = (vertices[cmap["contour_tri"]] * cmap["contour_bary"][..., None]).sum(2)  # (C, nb, 3)
        P[cmap["contour_ids"]] = (Pc * w[None, :, None]).sum(1)
    return P


def tune_blendshape_sigma(model: FaceModel, spec, scenes, config, rounds: int = 3, floor: float = 0.03,
                          progress=None) -> np.ndarray:
    """Per shape, how far to trust MediaPipe's own score against the landmarks: start from its measured spread
    (blendshape_noise) and, wherever the product's fit of a rendered photo ends up further from the truth than
    MediaPipe's score was, tighten that shape's spread (more weight on the score) by the ratio of the errors.
    A few rounds settle it; shapes where the landmarks beat MediaPipe keep their measured spread."""
    from backend.face_model import arkit_to_shape_names
    from backend.fit import BundleAdjuster

    names = model.expression_names
    items = []
    for s in scenes:
        for p in s.detected:
            if p.blendshapes:
                items.append((p, np.array(list(arkit_to_shape_names(p.blendshapes, names).values()))))
    sig = spec.blendshape_sigma.copy()
    for r in range(rounds):
        spec.blendshape_sigma = sig
        ba = BundleAdjuster(model, spec, config)
        eo, em = np.zeros(len(names)), np.zeros(len(names))
        for p, scores in items:
            res = ba.fit_multistart(p.points[None, None], np.ones((1, 1, len(spec.valid))),
                                    np.array([[p.size]], np.float64), init={"expression": scores[None, None]},
                                    priors={"expression": scores[None, None]})
            eo += np.abs(res.expression[0, 0] - p.expression)
            em += np.abs(scores - p.expression)
        ratio = eo / np.maximum(em, 1e-9)
        eff = np.minimum(sig, config.blendshape_sigma_cap)
        sig = np.where(ratio > 1, np.maximum(eff / np.clip(ratio, 1, 2), floor), sig)
        if progress is not None:
            progress(r + 1, rounds, float(eo.sum() / len(items) / len(names)), float(em.sum() / len(items) / len(names)))
    return sig


# Shapes whose under-response is the detector's, not the fit's: MediaPipe's lid points stop short of a closed
# eye (rendered blinks fit at 0.44 of their weight; a real clip's blinks at about half of MediaPipe's own score).
# Other shapes fit low for other reasons too (the priors, confusions between shapes) that a gain would turn
# into false activations, so they keep gain 1.
GAIN_SHAPES = (("eyeBlinkLeft", "eyeBlinkRight"),)


def tune_expression_gain(model: FaceModel, spec, scenes, config, shapes=GAIN_SHAPES, rounds: int = 3,
                         active: float = 0.3, limits=(0.2, 1.6), progress=None) -> np.ndarray:
    """Per shape group (left and right share one), how far MediaPipe moves its points relative to the model's
    surface (the response gain spec.response_basis uses): fit rendered photos of known expression with the
    product's settings, take the slope of fitted on true weight over the photos where the shape is active, and
    scale the gain by it until the slope is 1."""
    from backend.face_model import arkit_to_shape_names
    from backend.fit import BundleAdjuster
    from backend.fit.spec import response_basis

    names = model.expression_names
    items = []
    for s in scenes:
        for p in s.detected:
            scores = None if not p.blendshapes else np.array(list(arkit_to_shape_names(p.blendshapes, names).values()))
            items.append((p, scores))
    truth = np.array([p.expression for p, _ in items])
    groups = [[names.index(n) for n in g] for g in shapes]
    gain = np.ones(len(names))
    for r in range(rounds):
        spec.response_basis = response_basis(model, spec, gain)
        ba = BundleAdjuster(model, spec, config)
        fitted = []
        for p, scores in items:
            pri = None if scores is None else {"expression": scores[None, None]}
            res = ba.fit_multistart(p.points[None, None], np.ones((1, 1, len(spec.valid))),
                                    np.array([[p.size]], np.float64), init=pri, priors=pri)
            fitted.append(res.expression[0, 0])
        fitted = np.array(fitted)
        slopes = []
        for g in groups:
            use = truth[:, g] > active
            slope = float((fitted[:, g] * truth[:, g])[use].sum() / max((truth[:, g] ** 2)[use].sum(), 1e-9))
            gain[g] = np.clip(gain[g] * slope, *limits)
            slopes.append(round(slope, 3))
        if progress is not None:
            progress(r + 1, rounds, dict(zip([g[0] for g in shapes], slopes)), int(use.sum()))
    spec.response_basis = None
    return gain
