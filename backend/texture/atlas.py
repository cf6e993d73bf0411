"""The texel -> surface map of the ICT UV layout (texel grid, triangle, barycentrics).

Layout: the skin lives in two UV tiles, the face in u in [0, 1] and the scalp, neck,
mouth socket and eye sockets in u in [1, 2] (UDIM 1001 and 1002). Our texture images
therefore cover u in [0, 2], v in [0, 1]: `size` rows by `2 * size` columns, row 0 = v = 1
(top, as Blender reads a PNG), column j has its centre at u = (j + 0.5) / size.
A renderer that wants the image as-is maps (u, v) -> (u / 2, v); split_tiles() gives the
two square UDIM tiles instead.

The map is rasterized with OpenCV's fillPoly, one call per triangle painting its id:
the UV islands do not overlap, so no depth test is needed and this is ~30x faster than
the general torch rasterizer at 2048 (0.2 s for 22k triangles); barycentrics are then
computed exactly per texel centre in numpy.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..face_model import PARTS, FaceModel, load_face_model

SKIN_PARTS = ("face", "head_neck")
# Parts with their own material in Blender but a UV island in our texture (tile 1002):
# they get a flat plausible colour, never photo texels.
FLAT_PARTS = ("mouth_socket", "eye_socket_left", "eye_socket_right")
# Solid parts that can hide skin from a camera (lashes and the thin eye shells are see-through).
OCCLUDER_PARTS = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
                  "gums_tongue", "teeth", "eyeball_left", "eyeball_right")


def tri_part_mask(model: FaceModel, parts) -> np.ndarray:
    tris = model.triangles()
    first = tris[:, 0]
    m = np.zeros(len(tris), bool)
    for p in parts:
        a, b = PARTS[p]
        m |= (first >= a) & (first < b)
    return m


@dataclass
class Atlas:
    size: int
    height: int
    width: int
    texel: np.ndarray  # (M,) flat index into the (height, width) grid of skin texels
    tri: np.ndarray  # (M,) index into model.triangles()
    tri_vertices: np.ndarray  # (3, M) intp vertex ids of each texel's triangle corners
    bary: np.ndarray  # (3, M) float32 (corner-major: contiguous rows make the gathers fast)
    part: np.ndarray  # (M,) 0 = face, 1 = head_neck
    skin: np.ndarray  # (H, W) bool
    face: np.ndarray  # (H, W) bool ('face' part texels)
    flat: dict  # part name -> (H, W) bool, for FLAT_PARTS

    def grid(self, values: np.ndarray, fill=0.0) -> np.ndarray:
        """Scatter per-texel values (M, ...) into the (H, W, ...) grid."""
        out = np.full((self.height * self.width,) + values.shape[1:], fill, values.dtype)
        out[self.texel] = values
        return out.reshape((self.height, self.width) + values.shape[1:])

    def interpolate_at(self, per_vertex: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Like interpolate() for the texels idx (indices into the M skin texels) only."""
        pv = np.asarray(per_vertex, np.float32)
        tv, b = self.tri_vertices[:, idx], self.bary[:, idx]
        return pv[tv[0]] * b[0][:, None] + pv[tv[1]] * b[1][:, None] + pv[tv[2]] * b[2][:, None]

    def interpolate(self, per_vertex: np.ndarray, model: FaceModel) -> np.ndarray:
        """Per-vertex attribute (N, C) -> per-texel (M, C), barycentric (float32)."""
        pv = np.ascontiguousarray(per_vertex, np.float32)
        out = np.take(pv, self.tri_vertices[0], axis=0)
        out *= self.bary[0][:, None]
        for k in (1, 2):
            t = np.take(pv, self.tri_vertices[k], axis=0)
            t *= self.bary[k][:, None]
            out += t
        return out


def _paint_ids(model: FaceModel, tri_ids: np.ndarray, size: int) -> np.ndarray:
    tuv = model.triangle_uvs()[tri_ids]
    xy = np.stack([model.uv[:, 0] * size - 0.5, (1.0 - model.uv[:, 1]) * size - 0.5], 1)
    pts = np.round(xy[tuv] * 16).astype(np.int32)  # 4 fractional bits for fillPoly's `shift`
    img = np.full((size, 2 * size), -1, np.int32)
    for i in range(len(tri_ids)):
        cv2.fillPoly(img, [pts[i]], int(i), lineType=cv2.LINE_8, shift=4)
    return img


@functools.lru_cache(maxsize=4)
def _atlas_cached(size: int, model_key: int) -> Atlas:
    model = _MODELS[model_key]
    return build_atlas(model, size)


_MODELS: dict = {}


def get_atlas(model: FaceModel, size: int) -> Atlas:
    _MODELS[id(model)] = model
    return _atlas_cached(int(size), id(model))


def build_atlas(model: FaceModel, size: int) -> Atlas:
    H, W = size, 2 * size
    skin_tris = np.nonzero(tri_part_mask(model, SKIN_PARTS))[0]
    ids = _paint_ids(model, skin_tris, size)
    rows, cols = np.nonzero(ids >= 0)
    local = ids[rows, cols]
    texel = rows.astype(np.int64) * W + cols
    tri = skin_tris[local]
    # Barycentrics of each texel centre: the edge functions are affine in (x, y), so
    # per triangle 6 coefficients, gathered per texel (clamped: edge texels painted by
    # fillPoly can sit a fraction of a texel outside their triangle).
    tuv = (model.uv[model.triangle_uvs()[skin_tris]].astype(np.float64) * [size, -size]
           + [-0.5, size - 0.5])
    ax, ay, bx, by, cx, cy = (tuv[:, i, j] for i in range(3) for j in range(2))
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    inv = 1.0 / np.where(np.abs(area) < 1e-12, 1e-12, area)
    coef = np.stack([(by - cy) * inv, (cx - bx) * inv, (bx * cy - by * cx) * inv,
                     (cy - ay) * inv, (ax - cx) * inv, (cx * ay - cy * ax) * inv], 1).astype(np.float32)
    px = cols.astype(np.float32)
    py = rows.astype(np.float32)
    c = [np.take(coef[:, k], local) for k in range(6)]
    w0 = c[0] * px + c[1] * py + c[2]
    w1 = c[3] * px + c[4] * py + c[5]
    bary = np.empty((3, len(texel)), np.float32)
    bary[0], bary[1] = w0, w1
    bary[2] = 1.0 - w0 - w1
    np.clip(bary, 0, None, out=bary)
    bary /= np.maximum(bary.sum(0, keepdims=True), 1e-9)
    face_tris = tri_part_mask(model, ("face",))
    part = np.where(face_tris[tri], 0, 1).astype(np.int8)
    skin = (ids >= 0)
    face = np.zeros(H * W, bool)
    face[texel[part == 0]] = True  # noqa: the grid view is needed by several consumers
    flat = {}
    for p in FLAT_PARTS:
        flat[p] = _paint_ids(model, np.nonzero(tri_part_mask(model, (p,)))[0], size) >= 0
        flat[p] &= ~skin
    tris_t = np.ascontiguousarray(model.triangles().T.astype(np.intp))
    tri_vertices = np.stack([np.take(tris_t[k], tri) for k in range(3)])
    return Atlas(size, H, W, texel.astype(np.int64), tri, tri_vertices, bary, part, skin, face.reshape(H, W), flat)


def mirror(img: np.ndarray, size: int) -> np.ndarray:
    """Mirror a texture grid across the face's symmetry plane (x -> -x).

    The ICT layout is symmetric: u -> 2k + 1 - u within tile k maps a surface point to
    its mirror image (checked on the mesh: median 3D error 0), i.e. a horizontal flip per tile.
    """
    return np.concatenate([img[:, :size][:, ::-1], img[:, size:2 * size][:, ::-1]], 1)


def split_tiles(img: np.ndarray) -> list[np.ndarray]:
    """(size, 2*size, ...) -> [tile 1001 (u 0..1), tile 1002 (u 1..2)], each (size, size, ...)."""
    s = img.shape[0]
    return [np.ascontiguousarray(img[:, :s]), np.ascontiguousarray(img[:, s:2 * s])]


def default_model() -> FaceModel:
    return load_face_model()
