"""Synthetic ground truth for the texture baker: a textured ICT head rendered from known
cameras (optionally under known SH lighting), optionally in a scene with things that are not
skin: a coloured background, hair over the scalp and a shirt over the neck and shoulders.

Two textures: procedural_texture (random colours at several scales plus a checker: tests
resampling and blending, not skin detection) and skin_texture (a skin tone with mottling,
redder lips and darker brows: what the baker's skin segmentation expects of a face).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.face_model import FaceModel
from backend.texture import atlas as atlas_mod
from backend.texture.bake import to_linear, to_srgb
from backend.texture.raster import project, rasterize, sample_points, vertex_normals
from backend.texture.sh import shading


def procedural_texture(size: int, seed: int = 0) -> np.ndarray:
    """Linear-light RGB (size, 2*size, 3): smooth colour noise at several scales plus a
    soft checker, so both low and high frequencies are tested."""
    rng = np.random.default_rng(seed)
    H, W = size, 2 * size
    tex = np.zeros((H, W, 3), np.float32)
    for cells, amp in ((4, 0.25), (16, 0.12), (64, 0.06)):
        small = rng.random((cells, 2 * cells, 3)).astype(np.float32)
        tex += amp * cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    period = size / 24.0
    checker = np.sin(np.pi * xx / period) * np.sin(np.pi * yy / period)
    tex += 0.12 * np.tanh(3 * checker)[..., None] * np.array([1.0, 0.8, 0.6], np.float32)
    tex = 0.15 + tex
    return np.clip(tex, 0.02, 1.0)


def skin_texture(model: FaceModel, size: int, seed: int = 0, tone_srgb=(205, 150, 125)) -> np.ndarray:
    """Linear-light RGB (size, 2*size, 3) skin: one tone, +-12 % luminance mottling at a few
    scales, a fine checker (resolution), redder lips, darker brows."""
    from backend.texture.regions import LIPS_OUTER, LEFT_BROW, RIGHT_BROW, mediapipe_points_uv

    rng = np.random.default_rng(seed)
    H, W = size, 2 * size
    base = to_linear(np.array(tone_srgb, np.uint8)).astype(np.float32)
    mott = np.zeros((H, W), np.float32)
    for cells, amp in ((8, 0.06), (32, 0.04), (128, 0.03)):
        mott += amp * cv2.resize(rng.standard_normal((cells, 2 * cells)).astype(np.float32), (W, H),
                                 interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    period = size / 48.0
    mott += 0.04 * np.tanh(3 * np.sin(np.pi * xx / period) * np.sin(np.pi * yy / period))
    tex = base[None, None] * (1 + mott)[..., None]
    feat = np.zeros((H, W), np.float32)
    lips = np.zeros((H, W), np.uint8)
    cv2.fillPoly(lips, [np.round(mediapipe_points_uv(model, H, LIPS_OUTER) * 16).astype(np.int32)], 1, shift=4)
    tex[lips > 0] *= np.array([1.15, 0.7, 0.75], np.float32)
    for brow in (LEFT_BROW, RIGHT_BROW):
        p = np.round(mediapipe_points_uv(model, H, brow)).astype(np.int32)
        cv2.polylines(feat, [p], False, 1.0, thickness=max(2, size // 100))
    feat = cv2.GaussianBlur(feat, (0, 0), max(1.0, size / 400))
    tex *= (1 - 0.6 * np.clip(feat, 0, 1))[..., None]
    return np.clip(tex, 0.01, 1.0).astype(np.float32)


def look_at_camera(yaw_deg: float, pitch_deg: float = 0.0, distance: float = 60.0, size: int = 512,
                   focal_factor: float = 2.2, target=(0.0, 1.0, 3.0)) -> dict:
    """OpenCV camera on a sphere around `target` (model cm), looking at it, head upright."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    # frontal camera: x right, image y down, looking down -Z of the model
    R = np.diag([1.0, -1.0, -1.0]) @ Rx @ Ry
    t = -R @ np.asarray(target, float) + np.array([0, 0, distance])
    f = focal_factor * size
    return {"R": R, "t": t, "fx": f, "fy": f, "cx": (size - 1) / 2, "cy": (size - 1) / 2, "size": size}


@dataclass
class Scene:
    """Things around the face. Colours are sRGB; None leaves a part out."""
    background: tuple | None = (40, 170, 70)  # saturated green
    shirt: tuple | None = (40, 70, 180)  # blue: collar over the neck, torso below it
    hair: tuple | None = (60, 38, 25)  # dark brown, over the scalp
    hairline: dict = field(default_factory=lambda: {"front_y": 9.0, "side_y": 4.0, "back_y": -4.0})
    collar_y: float = -13.0  # model cm: the shirt covers the neck below this height


def hair_region(model: FaceModel, size: int, scene: Scene) -> np.ndarray:
    """(size, 2*size) bool UV mask of the scalp the scene's hair covers (model-space hairline)."""
    at = atlas_mod.get_atlas(model, size)
    _, pos = at.full(model.neutral)
    y, z = pos[..., 1], pos[..., 2]
    h = scene.hairline
    line = np.interp(z, [-10.0, 0.0, 6.0, 14.0], [h["back_y"], h["side_y"], h["front_y"], h["front_y"]])
    return (y > line) & at.skin


def collar_region(model: FaceModel, size: int, scene: Scene) -> np.ndarray:
    at = atlas_mod.get_atlas(model, size)
    _, pos = at.full(model.neutral)
    return (pos[..., 1] < scene.collar_y) & at.skin


def scene_texture(model: FaceModel, skin_lin: np.ndarray, scene: Scene | None, seed: int = 0):
    """Skin texture with the scene's hair and shirt painted over it (what the cameras see on the
    mesh), and the UV label map: 0 skin, 1 hair, 2 shirt."""
    size = skin_lin.shape[0]
    tex = skin_lin.copy()
    label = np.zeros(skin_lin.shape[:2], np.uint8)
    if scene is None:
        return tex, label
    rng = np.random.default_rng(seed + 100)
    if scene.hair is not None:
        m = hair_region(model, size, scene)
        streaks = cv2.resize(rng.standard_normal((size // 8, 2 * size)).astype(np.float32), (2 * size, size),
                             interpolation=cv2.INTER_LINEAR)
        hc = to_linear(np.array(scene.hair, np.uint8)) * (1 + 0.35 * np.tanh(streaks))[..., None]
        tex[m] = hc[m]
        label[m] = 1
    if scene.shirt is not None:
        m = collar_region(model, size, scene)
        tex[m] = to_linear(np.array(scene.shirt, np.uint8))
        label[m] = 2
    return tex, label


def render(model: FaceModel, identity, expression, cam: dict, texture_lin: np.ndarray, L=None,
           supersample: int = 2, background=(0.05, 0.08, 0.1), device="cpu", scene: Scene | None = None,
           label_uv: np.ndarray | None = None, return_labels: bool = False):
    """Render the textured head (uint8 sRGB, cam['size'] square). Skin parts sample the
    texture (u/2, v layout); other visible parts get flat colours. With a scene: its
    background colour, and a torso in the shirt colour below the neck. return_labels: also a
    float image, the fraction of each pixel that is not skin (background, torso, hair, shirt)."""
    size = cam["size"]
    ss = size * supersample
    k = supersample
    V = model.vertices(identity, expression)
    xy, Xc = project(V, cam["R"], cam["t"], cam["fx"] * k, cam["fy"] * k,
                     (cam["cx"] + 0.5) * k - 0.5, (cam["cy"] + 0.5) * k - 0.5)
    tris = model.triangles()
    occ = np.nonzero(atlas_mod.tri_part_mask(model, atlas_mod.OCCLUDER_PARTS))[0]
    ras = rasterize(xy, Xc[:, 2], tris[occ], ss, ss, device=device)
    img = np.empty((ss, ss, 3), np.float32)
    bg = background if scene is None or scene.background is None else to_linear(np.array(scene.background, np.uint8))
    img[:] = bg
    nonskin = np.ones((ss, ss), np.float32)
    if scene is not None and scene.background is not None:
        # a gradient and soft blobs, so the background is not one colour
        yy, xx = np.mgrid[0:ss, 0:ss].astype(np.float32) / ss
        img *= (0.7 + 0.5 * xx + 0.2 * np.sin(7 * yy))[..., None]
    if scene is not None and scene.shirt is not None:
        _torso(img, model, V, xy, Xc, ss, to_linear(np.array(scene.shirt, np.uint8)), scene)
    hit = ras.tri >= 0
    ys, xs = np.nonzero(hit)
    t = occ[ras.tri[ys, xs]]
    b = ras.bary[ys, xs]
    skin_mask = atlas_mod.tri_part_mask(model, atlas_mod.SKIN_PARTS)
    is_skin = skin_mask[t]
    uv = (model.uv[model.triangle_uvs()[t]] * b[..., None]).sum(1)
    S = texture_lin.shape[0]
    mx = (uv[:, 0] * S - 0.5).astype(np.float32)
    my = ((1 - uv[:, 1]) * S - 0.5).astype(np.float32)
    col = sample_points(texture_lin, mx, my)
    col[~is_skin] = np.array([0.6, 0.55, 0.5], np.float32)
    if L is not None:
        nv = vertex_normals(V, tris[skin_mask])
        n = (nv[tris[t]] * b[..., None]).sum(1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        col = col * np.maximum(shading(n, np.asarray(L, np.float32)), 0)
    img[ys, xs] = col
    if return_labels:
        lab = np.zeros(len(ys), np.float32)
        if label_uv is not None:
            lab = (sample_points(label_uv.astype(np.float32), mx, my, cv2.INTER_NEAREST) > 0).astype(np.float32)
        lab[~is_skin] = 1.0  # eyes, teeth: not skin either
        nonskin[ys, xs] = lab
    if k > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        nonskin = cv2.resize(nonskin, (size, size), interpolation=cv2.INTER_AREA)
    if return_labels:
        return to_srgb(img), nonskin
    return to_srgb(img)


def _torso(img, model, V, xy, Xc, ss, colour, scene):
    """A shirt below the neck: the neck's lowest projected points, widened into shoulders."""
    from backend.face_model import PARTS

    a, b = PARTS["head_neck"]
    neck = np.arange(a, b)
    low = neck[V[neck, 1] < scene.collar_y + 1.0]
    if len(low) < 3 or (Xc[low, 2] <= 0).any():
        return
    p = xy[low]
    x0, x1 = p[:, 0].min(), p[:, 0].max()
    y0 = p[:, 1].mean()
    w = x1 - x0
    poly = np.array([[x0, y0], [x1, y0], [x1 + 1.2 * w, y0 + 0.6 * w], [x1 + 1.5 * w, ss + w],
                     [x0 - 1.5 * w, ss + w], [x0 - 1.2 * w, y0 + 0.6 * w]])
    m = np.zeros((ss, ss), np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    img[m > 0] = colour * 0.8


def make_views(model: FaceModel, identity, texture_lin, yaws=(0.0, -40.0, 40.0), size=512, L=None,
               seed: int = 0, scene: Scene | None = None, label_uv=None) -> list[dict]:
    rng = np.random.default_rng(seed)
    views = []
    for yaw in yaws:
        expr = np.zeros(model.n_expression, np.float32)
        expr[rng.choice(model.n_expression, 3, replace=False)] = rng.random(3) * 0.3
        cam = look_at_camera(yaw, 5.0 * rng.standard_normal(), size=size)
        img, lab = render(model, identity, expr, cam, texture_lin, L=L, scene=scene, label_uv=label_uv,
                          return_labels=True)
        views.append({"image": img, "expression": expr, "R": cam["R"], "t": cam["t"], "nonskin": lab,
                      "fx": cam["fx"], "fy": cam["fy"], "cx": cam["cx"], "cy": cam["cy"]})
    return views


__all__ = ["procedural_texture", "skin_texture", "look_at_camera", "render", "make_views", "Scene", "scene_texture",
           "hair_region", "collar_region", "to_linear", "to_srgb"]
