"""Rendered ground truth for the real-detector benchmark: ICT heads with known identity, expression, gaze and
camera, drawn realistically enough for MediaPipe to treat them like photos.

What MediaPipe needs to see, and how each is made so that it cannot echo our own fitter:
- Skin: a per-subject tone with multi-scale blotches and pores, in the model's UV layout.
- Facial features are painted from the geometry, never from photos baked through our fit (a bake would carry the
  current landmark embedding's errors back into the picture, and a calibration on it would learn them again):
  lips fill ICT's own iBUG-68 outer-lip polygon, brows are hair strokes along ICT's iBUG brow vertices, the
  eyelid margins are the mesh's own lids over the eyeball, and the lashes are ICT's lash geometry.
- Eyes: ICT's eyeball has a transparent outer shell (cornea and sclera) over an inner ball with the iris plane;
  we draw the inner ball with a procedural iris (radial fibres, limbal ring), pupil and sclera, rotated by the
  gaze about the eyeball's centre.
- Lighting: second-order spherical harmonics (ambient plus a coloured directional part) on smooth normals.
- Background: multi-scale colour noise with soft edges and straight lines (a room, not a plain wall), a little
  sensor noise, and JPEG compression.
Cameras follow real ones: 24-85 mm (35 mm equivalent, diagonal), 0.5-2 m, the face off centre.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.eyes import IRIS_RADIUS_CM, eye_centres, eye_geometry, gaze_rotation, pose_eyes
from backend.face_model import PARTS, FaceModel, gaze_angles
from backend.texture import atlas as atlas_mod
from backend.texture.bake import to_linear, to_srgb
from backend.texture.raster import project, rasterize, sample_points, vertex_normals
from backend.texture.sh import shading

# Drawn parts. The eyeballs' outer shells are transparent (cornea), the occlusion and blend shells are shading
# helpers of ICT's own renderer: all left out.
DRAWN = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "gums_tongue", "teeth",
         "eyeball_left", "eyeball_right", "lacrimal_left", "lacrimal_right")
LASHES = ("eyelashes_left", "eyelashes_right")
# ICT's lashes are solid cards: drawn opaque they read as a thick painted line, and the lower ones lie flat on the
# cheek like a shadow
LASH_OPACITY = {"upper": 0.5, "lower": 0.12}
FLAT = {  # linear RGB of parts without a texture
    "mouth_socket": (0.10, 0.025, 0.02), "eye_socket_left": (0.25, 0.08, 0.07), "eye_socket_right": (0.25, 0.08, 0.07),
    "gums_tongue": (0.45, 0.12, 0.11), "teeth": (0.62, 0.58, 0.48), "lacrimal_left": (0.55, 0.25, 0.22),
    "lacrimal_right": (0.55, 0.25, 0.22),
}
LASH_COLOUR = (0.012, 0.01, 0.008)
SKIN_TONES = np.array([  # linear RGB albedo, fair to dark
    (0.62, 0.40, 0.32), (0.55, 0.35, 0.26), (0.47, 0.29, 0.21), (0.36, 0.21, 0.14), (0.25, 0.14, 0.09),
    (0.14, 0.08, 0.05)], np.float32)
IRIS_COLOURS = np.array([(0.10, 0.04, 0.015), (0.05, 0.025, 0.01), (0.12, 0.16, 0.20), (0.08, 0.11, 0.06),
                         (0.16, 0.12, 0.06)], np.float32)
BROW_COLOURS = np.array([(0.02, 0.014, 0.01), (0.05, 0.03, 0.015), (0.11, 0.07, 0.035), (0.2, 0.14, 0.08)], np.float32)
PUPIL_RADIUS_CM = (0.15, 0.3)


# ---------------------------------------------------------------------------------------------- appearance
@dataclass
class Subject:
    identity: np.ndarray  # (K,)
    albedo: np.ndarray  # (S, 2S, 3) linear RGB in the model's UV layout
    iris: np.ndarray  # (3,) linear RGB
    pupil_cm: float
    seed: int


def _noise(rng, shape, cells, amp):
    small = rng.standard_normal((cells, max(1, cells * shape[1] // shape[0]), *shape[2:])).astype(np.float32)
    return amp * cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).reshape(shape)


@dataclass
class _Texels:
    """The skin texels of the model's UV layout (u in [0, 2]): flat index, part (0 face, 1 scalp/neck)."""

    texel: np.ndarray
    part: np.ndarray


@functools.lru_cache(maxsize=2)
def _skin_texels_cached(model_key: int, size: int):
    model = _MODELS[model_key]
    skin_tris = np.nonzero(atlas_mod.tri_part_mask(model, ("face", "head_neck")))[0]
    tuv = model.triangle_uvs()[skin_tris]
    xy = np.stack([model.uv[:, 0] * size - 0.5, (1.0 - model.uv[:, 1]) * size - 0.5], 1)
    pts = np.round(xy[tuv] * 16).astype(np.int32)  # 4 fractional bits for fillPoly's `shift`
    ids = np.full((size, 2 * size), -1, np.int32)
    for i in range(len(skin_tris)):
        cv2.fillPoly(ids, [pts[i]], int(i), lineType=cv2.LINE_8, shift=4)
    rows, cols = np.nonzero(ids >= 0)
    local = ids[rows, cols]
    tri = skin_tris[local]
    # texel centres' barycentrics: the edge functions are affine in (x, y)
    q = model.uv[tuv[local]].astype(np.float64) * [size, -size] + [-0.5, size - 0.5]  # (M, 3, 2)
    a, b, c = q[:, 0], q[:, 1], q[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    area = np.where(np.abs(area) < 1e-12, 1e-12, area)
    px, py = cols.astype(np.float64), rows.astype(np.float64)
    w0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) / area
    w1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) / area
    bary = np.clip(np.stack([w0, w1, 1 - w0 - w1], 1), 0, None)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-9)
    pos = (model.neutral[model.triangles()[tri]] * bary[..., None]).sum(1)
    face = atlas_mod.tri_part_mask(model, ("face",))[tri]
    return _Texels(rows.astype(np.int64) * (2 * size) + cols, np.where(face, 0, 1)), pos


def _texel_rest_positions(model: FaceModel, size: int):
    """Skin texels of the UV layout and the neutral mean-face position of each (the renderer's own map, so the
    pictures do not change with the texture baker's internals)."""
    _MODELS[id(model)] = model
    return _skin_texels_cached(id(model), size)


def _polyline_distance(p, line):
    """Distance (M,) from points p (M,3) to a 3-D polyline (n,3)."""
    d = np.full(len(p), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        d = np.minimum(d, np.linalg.norm(p - (a + t[:, None] * ab), axis=1))
    return d


def make_albedo(model: FaceModel, rng: np.random.Generator, size: int = 1024) -> np.ndarray:
    """Procedural skin albedo (linear RGB, model UV layout) with lips and brows placed by ICT's own geometry."""
    H, W = size, 2 * size
    # brightness varies freely, hue only a little (independent channel gains turn skin green or grey)
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * np.float32(rng.uniform(0.8, 1.2))
    tone = tone * np.array([1.0, rng.uniform(0.95, 1.04), rng.uniform(0.9, 1.08)], np.float32)
    tex = np.ones((H, W, 3), np.float32) * tone
    blotch = 1 + _noise(rng, (H, W, 1), 6, 0.06) + _noise(rng, (H, W, 3), 24, 0.03) + _noise(rng, (H, W, 1), 200, 0.04)
    tex *= np.clip(blotch, 0.6, 1.4)
    at, pos = _texel_rest_positions(model, size)
    flat = tex.reshape(-1, 3)
    face = at.part == 0
    lm = model.neutral[model.landmarks_ibug68].astype(np.float64)
    # lips: texels of the face part inside the outer-lip polygon (seen from the front) and in front of the teeth
    vals = flat[at.texel]
    lips = lm[48:60]
    near = np.flatnonzero(face & (np.abs(pos[:, :2] - lips[:, :2].mean(0)) < np.ptp(lips[:, :2], 0) / 2 + 0.4).all(1))
    inside = _inside_polygon(pos[near, :2], lips[:, :2])
    lip_w = np.clip((inside + 0.05) / 0.12, 0, 1) * (pos[near, 2] > lips[:, 2].min() - 0.6)
    lip_col = tone * np.array([1.05, 0.55, 0.58], np.float32) * rng.uniform(0.8, 1.05)
    vals[near] = vals[near] * (1 - lip_w[:, None]) + lip_col * lip_w[:, None]
    # brows: hair strokes in a band under ICT's brow landmark line
    brow_col = BROW_COLOURS[rng.integers(len(BROW_COLOURS))]
    thick = rng.uniform(0.35, 0.6)
    for ids in (range(17, 22), range(22, 27)):
        line = lm[list(ids)] + np.array([0, -0.25, 0.1])
        near = np.flatnonzero(face & ((pos > line.min(0) - thick) & (pos < line.max(0) + thick)).all(1))
        d = _polyline_distance(pos[near], line)
        hair = np.clip(0.85 + _noise(rng, (H, W, 1), 220, 0.35).reshape(-1)[at.texel[near]], 0, 1)
        w = (d < thick) * np.clip((thick - d) / 0.15, 0, 1) * hair * rng.uniform(0.75, 0.97)
        vals[near] = vals[near] * (1 - w[:, None]) + brow_col * w[:, None]
    flat[at.texel] = vals
    return np.clip(tex, 0.01, 1.0)


def _inside_polygon(p2, poly):
    """Signed distance (cm, > 0 inside) of 2-D points to a closed polygon, vectorised."""
    d = np.full(len(p2), np.inf)
    inside = np.zeros(len(p2), bool)
    n = len(poly)
    for i in range(n):
        a, b = poly[i].astype(np.float64), poly[(i + 1) % n].astype(np.float64)
        ab = b - a
        t = np.clip(((p2 - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        d = np.minimum(d, np.linalg.norm(p2 - (a + t[:, None] * ab), axis=1))
        cond = ((a[1] > p2[:, 1]) != (b[1] > p2[:, 1]))
        xint = a[0] + (p2[:, 1] - a[1]) * ab[0] / np.where(np.abs(ab[1]) < 1e-12, 1e-12, ab[1])
        inside ^= cond & (p2[:, 0] < xint)
    return np.where(inside, d, -d)


def make_subject(model: FaceModel, seed: int, identity_scale: float = 1.0, size: int = 1024) -> Subject:
    rng = np.random.default_rng(seed)
    ident = rng.standard_normal(model.n_identity) * identity_scale
    return Subject(identity=ident, albedo=make_albedo(model, rng, size),
                   iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.7, 1.3),
                   pupil_cm=float(rng.uniform(*PUPIL_RADIUS_CM)), seed=seed)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A cluttered linear-RGB background: soft colour fields, texture and a few straight edges."""
    img = np.ones((h, w, 3), np.float32) * rng.uniform(0.05, 0.6, 3).astype(np.float32)
    img += _noise(rng, (h, w, 3), 3, 0.15) + _noise(rng, (h, w, 3), 12, 0.05) + _noise(rng, (h, w, 1), 90, 0.02)
    for _ in range(rng.integers(3, 9)):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.7) * w, y0 + rng.uniform(0.1, 0.7) * h
        col = tuple(float(c) for c in rng.uniform(0.02, 0.8, 3))
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), col, -1 if rng.random() < 0.6 else int(rng.integers(2, 8)))
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.2), 0.005, 1.0)


def random_light(rng: np.random.Generator) -> np.ndarray:
    """(9, 3) SH irradiance: ambient plus a directional part from a random direction in front of the face."""
    L = np.zeros((9, 3), np.float32)
    warm = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    amb = rng.uniform(0.9, 1.5)
    d = rng.normal(size=3)
    d[2] = abs(d[2]) + 0.6
    d /= np.linalg.norm(d)
    k = rng.uniform(0.2, 0.9)
    L[0] = amb * warm
    L[1], L[2], L[3] = k * d[1] * warm, k * d[2] * warm, k * d[0] * warm  # Y1-1 ~ y, Y10 ~ z, Y11 ~ x
    L[6] = rng.uniform(-0.1, 0.1) * warm
    return L


# ---------------------------------------------------------------------------------------------- cameras and shots
@dataclass
class Shot:
    expression: np.ndarray  # (E,); its eyeLook* weights turn the eyeballs (backend.eyes)
    R: np.ndarray  # model -> camera (OpenCV)
    t: np.ndarray
    focal: float  # px
    size: tuple  # (w, h)
    light: np.ndarray  # (9, 3)
    seed: int
    head_deg: tuple = (0.0, 0.0, 0.0)  # yaw, pitch, roll as drawn
    extra: dict = field(default_factory=dict)


def camera_for(rng, size, equiv_mm: float, distance_m: float, yaw, pitch, roll, target=(0.0, 0.0, 5.0)):
    """(R, t, f_px) of a camera with this 35 mm equivalent focal (diagonal convention) seeing the head at this
    distance and pose, its face centre at a random spot of the central part of the frame."""
    w, h = size
    f = equiv_mm * math.hypot(w, h) / 43.27
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    R = np.diag([1.0, -1.0, -1.0]) @ Rz @ Rx @ Ry
    d = distance_m * 100.0
    u = (w - 1) / 2 + rng.uniform(-0.22, 0.22) * w
    v = (h - 1) / 2 + rng.uniform(-0.15, 0.15) * h
    X = np.array([(u - (w - 1) / 2) * d / f, (v - (h - 1) / 2) * d / f, d])
    t = X - R @ np.asarray(target, np.float64)
    return R, t, f


def eye_distance_px(model, R, t, f, size) -> float:
    lm = model.neutral[model.landmarks_ibug68[[36, 45]]]
    uv, _ = project(lm, R, t, f, f, (size[0] - 1) / 2, (size[1] - 1) / 2)
    return float(np.linalg.norm(uv[0] - uv[1]))


# ---------------------------------------------------------------------------------------------- drawing
def render(model: FaceModel, subject: Subject, shot: Shot, supersample: int = 2, jpeg_quality: int = 92,
           device="cpu") -> np.ndarray:
    """uint8 sRGB image (h, w, 3) of the subject in the shot."""
    w, h = shot.size
    k = supersample
    rng = np.random.default_rng(shot.seed + 7919)
    gaze = gaze_angles(dict(zip(model.expression_names, shot.expression)))
    V = pose_eyes(model, model.vertices(subject.identity, shot.expression), gaze)
    centres = eye_centres(model, V)
    f = shot.focal
    xy, Xc = project(V, shot.R, shot.t, f * k, f * k, ((w - 1) / 2 + 0.5) * k - 0.5, ((h - 1) / 2 + 0.5) * k - 0.5)
    tris = model.triangles()
    drawn = np.nonzero(atlas_mod.tri_part_mask(model, DRAWN) & ~_shell_mask(model))[0]
    ras = rasterize(xy, Xc[:, 2], tris[drawn], h * k, w * k, device=device)
    bg = background(np.random.default_rng(shot.seed + 104729), w * k, h * k) if "background" not in shot.extra \
        else shot.extra["background"]
    img = bg.copy()
    ys, xs = np.nonzero(ras.tri >= 0)
    t_id = drawn[ras.tri[ys, xs]]
    bary = ras.bary[ys, xs]
    col = np.zeros((len(t_id), 3), np.float32)
    part = _tri_part(model)[t_id]
    names = list(PARTS)
    # skin: the albedo in the model's (u/2, v) layout
    skin = np.isin(part, [names.index("face"), names.index("head_neck")])
    uv = (model.uv[model.triangle_uvs()[t_id[skin]]] * bary[skin][..., None]).sum(1)
    S = subject.albedo.shape[0]
    col[skin] = sample_points(subject.albedo, (uv[:, 0] * S - 0.5).astype(np.float32),
                              ((1 - uv[:, 1]) * S - 0.5).astype(np.float32))
    for pname, c in FLAT.items():
        col[part == names.index(pname)] = c
    # eyeballs: iris, pupil, sclera by distance from the rest-pose optical axis
    eg = eye_geometry(model)
    eye = np.isin(part, [names.index("eyeball_left"), names.index("eyeball_right")])
    tv = tris[t_id[eye]]
    rho = (eg.rho[tv] * bary[eye]).sum(1)
    ang = eg.phi[tv[:, 0]]
    fibres = 1 + 0.25 * np.sin(ang * 37 + 3 * np.sin(ang * 5)) * np.clip((rho - subject.pupil_cm) / 0.2, 0, 1)
    iris = subject.iris[None] * fibres[:, None] * (1 - 0.6 * np.clip((rho - 0.5) / 0.1, 0, 1))[:, None]
    sclera = np.array([0.62, 0.56, 0.52], np.float32)
    shell = np.zeros(model.n_vertices, bool)
    shell[np.concatenate([eg.outer["left"], eg.outer["right"]])] = True
    on_iris = (rho < IRIS_RADIUS_CM) & ~shell[tv[:, 0]]
    c_eye = np.where(on_iris[:, None], iris, sclera)
    c_eye = np.where((on_iris & (rho < subject.pupil_cm))[:, None], np.float32(0.006), c_eye)
    col[eye] = c_eye
    # diffuse shading on smooth normals (lashes and eyes get half the directional part: they are small and wet)
    nv = vertex_normals(V, tris[drawn])
    n = (nv[tris[t_id]] * bary[..., None]).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    irr = np.maximum(shading(n, shot.light), 0.05)
    img[ys, xs] = col * irr
    lashes = np.nonzero(atlas_mod.tri_part_mask(model, LASHES))[0]
    lr = rasterize(xy, Xc[:, 2], tris[lashes], h * k, w * k, device=device)
    over = (lr.tri >= 0) & (lr.depth < ras.depth)
    lash_v = tris[lashes[lr.tri[over]], 0]
    below = model.neutral[lash_v, 1] < np.where(model.neutral[lash_v, 0] > 0, eg.centre["left"][1], eg.centre["right"][1])
    alpha = np.where(below, LASH_OPACITY["lower"], LASH_OPACITY["upper"]).astype(np.float32)[:, None]
    img[over] = img[over] * (1 - alpha) + np.float32(LASH_COLOUR) * alpha
    # a catchlight on the cornea sells the eye: a small bright spot where the shell faces the light
    eye_px = np.zeros(img.shape[:2], np.float32)
    eye_px[ys[eye], xs[eye]] = 1.0
    img = _catchlights(model, centres, gaze, shot, img, k, eye_px)
    if k > 1:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    img = np.clip(img + rng.normal(0, 0.004, img.shape).astype(np.float32), 0, 1)
    out = to_srgb(img)
    if jpeg_quality:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


def _catchlights(model, centres, gaze, shot, img, k, eye_px):
    """The light's reflection on each cornea: where the shell's normal halves the light and view directions
    (a convex mirror), drawn only when that point is on the cornea (within 35 deg of the optical axis)."""
    eg = eye_geometry(model)
    d = np.array([shot.light[3].mean(), shot.light[1].mean(), shot.light[2].mean()], np.float64)
    if np.linalg.norm(d) < 1e-6:
        return img
    d /= np.linalg.norm(d)
    cam = -np.asarray(shot.R).T @ np.asarray(shot.t)
    w, h = shot.size
    spot = np.zeros(img.shape[:2], np.float32)
    for side in ("left", "right"):
        c = centres[side]
        Rg = gaze_rotation(*gaze[side])
        v = (cam - c) / np.linalg.norm(cam - c)
        n = (v + d) / np.linalg.norm(v + d)
        if n @ (Rg @ eg.axis[side]) < math.cos(math.radians(35)):
            continue
        uv, Xp = project((c + 1.55 * n)[None], shot.R, shot.t, shot.focal * k, shot.focal * k,
                         ((w - 1) / 2 + 0.5) * k - 0.5, ((h - 1) / 2 + 0.5) * k - 0.5)
        x, y = uv[0]
        rad = max(1, int(round(0.06 * shot.focal * k / max(float(Xp[0, 2]), 1e-3))))
        if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            cv2.circle(spot, (int(round(x)), int(round(y))), rad, 1.0, -1, lineType=cv2.LINE_AA)
    a = (spot * eye_px)[..., None]  # only where the eyeball itself is seen, never over a lid
    return img * (1 - a) + np.float32(0.9) * a


_MODELS: dict = {}


@functools.lru_cache(maxsize=2)
def _tri_part_cached(model_key):
    model = _MODELS[model_key]
    return model.part_of_vertex()[model.triangles()[:, 0]]


def _tri_part(model):
    _MODELS[id(model)] = model
    return _tri_part_cached(id(model))


@functools.lru_cache(maxsize=2)
def _shell_mask_cached(model_key):
    """Triangles of the eyeballs' outer shells over the cornea (see-through: the iris plane shows through)."""
    model = _MODELS[model_key]
    eg = eye_geometry(model)
    tris = model.triangles()
    cornea = np.zeros(model.n_vertices, bool)
    for side in ("left", "right"):
        ids = eg.outer[side]
        front = (model.neutral[ids] - eg.centre[side]) @ eg.axis[side] > 0
        cornea[ids[front & (eg.rho[ids] < IRIS_RADIUS_CM + 0.08)]] = True
    return cornea[tris].any(1)


def _shell_mask(model):
    _MODELS[id(model)] = model
    return _shell_mask_cached(id(model))
