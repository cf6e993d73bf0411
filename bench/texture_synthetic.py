"""Synthetic ground truth for the texture baker: a procedurally textured ICT head
rendered from known cameras (optionally under known SH lighting)."""
from __future__ import annotations

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


def render(model: FaceModel, identity, expression, cam: dict, texture_lin: np.ndarray, L=None,
           supersample: int = 2, background=(0.05, 0.08, 0.1), device="cpu") -> np.ndarray:
    """Render the textured head (uint8 sRGB, cam['size'] square). Skin parts sample the
    texture (u/2, v layout); other visible parts get flat colours."""
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
    img[:] = background
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
    if k > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return to_srgb(img)


def make_views(model: FaceModel, identity, texture_lin, yaws=(0.0, -40.0, 40.0), size=512, L=None,
               seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    views = []
    for yaw in yaws:
        expr = np.zeros(model.n_expression, np.float32)
        expr[rng.choice(model.n_expression, 3, replace=False)] = rng.random(3) * 0.3
        cam = look_at_camera(yaw, 5.0 * rng.standard_normal(), size=size)
        img = render(model, identity, expr, cam, texture_lin, L=L)
        views.append({"image": img, "expression": expr, "R": cam["R"], "t": cam["t"],
                      "fx": cam["fx"], "fy": cam["fy"], "cx": cam["cx"], "cy": cam["cy"]})
    return views


__all__ = ["procedural_texture", "look_at_camera", "render", "make_views", "to_linear", "to_srgb"]
