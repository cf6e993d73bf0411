"""Completing what no photo saw: a smooth tone on the mesh, mirrored where the other side was
seen, and skin-like detail.

Tone (low frequency) is solved on the mesh, not in UV space: the UV layout cuts the head into
islands (face, scalp-and-neck, the ears' edges, under the chin), and any image-space fill
(push-pull, inpainting) makes a different colour on the two sides of every cut, which shows
as a seam on the model. On the mesh the two sides of a cut are the same vertices. Each skin
vertex gets the observed colour with its confidence (and, with a lower weight, the colour
its mirror vertex saw), and a membrane (graph Laplacian) spreads it into the rest:

    (diag(w) + lam * L + eps * I) x = w * observed + eps * prior

Detail: random-phase noise (Galerne, Gousseau, Morel 2011, "Random phase textures") with the
power spectrum of the photo's own well-seen skin, as relative luminance variation: pores and
mottling of this person's scale and strength, no repeats within a tile, tiling seamlessly.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from ..face_model import FaceModel
from .atlas import SKIN_PARTS, tri_part_mask

# smoothness of the spread against fidelity to observations (graph Laplacian, ~6 neighbours)
_LAMBDA = 2.0
# pull towards the prior where nothing was seen: small, so observed tones reach far
_EPS = 1e-3
# mirror observations count this much against a vertex's own
MIRROR_WEIGHT = 0.7


@functools.lru_cache(maxsize=4)
def _mesh(model_key: int, vertices_key: bytes):
    """Graph Laplacian over the skin vertices (local indices, in the order given) and each
    vertex's mirror (x -> -x) as a local index, -1 where the mesh has none within 3 mm."""
    from scipy.spatial import cKDTree

    from .atlas import _MODELS

    model = _MODELS[model_key]
    verts = np.frombuffer(vertices_key, np.int64)
    local = np.full(model.n_vertices, -1, np.int64)
    local[verts] = np.arange(len(verts))
    tris = local[model.triangles()[tri_part_mask(model, SKIN_PARTS)]]
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e = e[(e >= 0).all(1)]
    K = len(verts)
    A = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(K, K)).tocsr()
    A = ((A + A.T) > 0).astype(np.float64)
    L = sparse.diags(np.asarray(A.sum(1)).ravel()) - A
    P = model.neutral[verts].astype(np.float64)
    d, j = cKDTree(P).query(P * [-1, 1, 1])
    mirror = np.where(d < 0.3, j, -1)
    return L.tocsr(), mirror


def mesh_fill(model: FaceModel, vertices: np.ndarray, values: np.ndarray, weights: np.ndarray,
              prior: np.ndarray | None = None,
              mirror_weight: float = MIRROR_WEIGHT, lam: float = _LAMBDA, match_gain: bool = True,
              eps: float = _EPS) -> np.ndarray:
    """Complete per-vertex values (K, C) seen with weights (K,) in [0, 1] over the skin mesh;
    vertices (K,) are the vertex ids the rows belong to (the skin triangles' vertices).

    Mirrored observations are first given the per-channel gain that best matches them to the
    vertices seen from both sides (lighting or exposure differences between the two halves).
    """
    from .atlas import _MODELS

    K = len(weights)
    _MODELS.setdefault(id(model), model)
    L, mirror = _mesh(id(model), np.ascontiguousarray(vertices, np.int64).tobytes())
    v = np.asarray(values, np.float64).reshape(K, -1)
    w = np.clip(np.asarray(weights, np.float64), 0, 1)
    if mirror_weight > 0:
        has = mirror >= 0
        mw = np.zeros(K)
        mv = np.zeros_like(v)
        mw[has] = w[mirror[has]] * mirror_weight
        mv[has] = v[mirror[has]]
        both = (w > 0.5) & (mw > 0.5 * mirror_weight)
        if match_gain and both.sum() > 50 and (v[both] > 0).all() and (mv[both] > 0).all():
            gain = np.exp(np.median(np.log(v[both]) - np.log(np.maximum(mv[both], 1e-6)), axis=0))
            mv *= np.clip(gain, 0.5, 2.0)
        # the mirror only fills in: where this side was seen it stays itself
        mw *= (1 - w)
        tot = w + mw
        v = np.where(tot[:, None] > 0, (w[:, None] * v + mw[:, None] * mv) / np.maximum(tot, 1e-12)[:, None], v)
        w = np.clip(tot, 0, 1)
    if prior is None:
        sw = w.sum()
        prior = (w[:, None] * v).sum(0) / sw if sw > 0 else np.zeros(v.shape[1])
    prior = np.broadcast_to(np.asarray(prior, np.float64), v.shape)
    M = (sparse.diags(w + eps) + lam * L).tocsc()
    rhs = w[:, None] * v + eps * prior
    x = spsolve(M, rhs)
    return np.asarray(x, np.float32).reshape(K, -1)


def random_phase_noise(exemplar: np.ndarray, seed: int = 0) -> np.ndarray:
    """A periodic (tileable) texture with the exemplar's power spectrum and random phases.

    exemplar: (P, P) float, zero mean. The exemplar's periodic component is used (its border
    jump would otherwise put a cross into the spectrum)."""
    ex = np.asarray(exemplar, np.float64)
    ex = ex - ex.mean()
    ex = _periodic_component(ex)
    spec = np.abs(np.fft.rfft2(ex))
    rng = np.random.default_rng(seed)
    phase = np.exp(2j * np.pi * rng.random(spec.shape))
    phase[0, 0] = 1.0
    noise = np.fft.irfft2(spec * phase, s=ex.shape)
    sd = noise.std()
    return (noise * (ex.std() / sd if sd > 0 else 0.0)).astype(np.float32)


def _periodic_component(u: np.ndarray) -> np.ndarray:
    """Moisan's periodic-plus-smooth decomposition: the periodic part of u."""
    M, N = u.shape
    v = np.zeros_like(u)
    v[0, :] += u[-1, :] - u[0, :]
    v[-1, :] += u[0, :] - u[-1, :]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] += u[:, 0] - u[:, -1]
    q = np.arange(M)[:, None]
    r = np.arange(N)[None, :]
    den = 2 * np.cos(2 * np.pi * q / M) + 2 * np.cos(2 * np.pi * r / N) - 4
    den[0, 0] = 1.0
    s = np.fft.fft2(v) / den
    s[0, 0] = 0
    return u - np.real(np.fft.ifft2(s))


def tile(pattern: np.ndarray, height: int, width: int) -> np.ndarray:
    P, Q = pattern.shape[:2]
    reps = (-(-height // P), -(-width // Q)) + (1,) * (pattern.ndim - 2)
    return np.tile(pattern, reps)[:height, :width]


def best_window(mask: np.ndarray, size: int) -> tuple[int, int, float] | None:
    """Top-left (row, col) of the size x size window with the largest share of `mask`, and that share."""
    H, W = mask.shape
    if size > H or size > W:
        return None
    frac = cv2.boxFilter(mask.astype(np.float32), -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
    # boxFilter centres the window: keep centres whose window lies inside the grid
    half = size // 2
    valid = frac[half:H - size + half + 1, half:W - size + half + 1]
    if valid.size == 0:
        return None
    i = int(np.argmax(valid))
    r, c = divmod(i, valid.shape[1])
    return r, c, float(valid.flat[i])
