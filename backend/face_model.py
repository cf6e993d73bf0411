"""ICT-FaceKit light: loading and evaluation (numpy, and torch on CPU or CUDA).

Units are centimetres; axes are the model's own: +Y up, +Z out of the face,
the subject's left at +X. Vertices = neutral + identity^T a + expression^T b,
where identity modes are already scaled by their standard deviation (so
a ~ N(0, 1)) and expression weights b live in [0, 1].
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import paths
from .contract import ARKIT_52, EYE_LOOK_RANGE_DEG
from .errors import SetupError

# Vertex ranges [start, stop) of the model's parts (ICT_README.md).
PARTS = {
    "face": (0, 9409),
    "head_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021),
    "eyeball_right": (23021, 24591),
    "lacrimal_left": (24591, 24795),
    "lacrimal_right": (24795, 24999),
    "eye_blend_left": (24999, 25023),
    "eye_blend_right": (25023, 25047),
    "eye_occlusion_left": (25047, 25199),
    "eye_occlusion_right": (25199, 25351),
    "eyelashes_left": (25351, 26035),
    "eyelashes_right": (26035, 26719),
}
FACE_VERTICES = PARTS["face"]  # the region accuracy is measured on
# Jawline candidates from ICT_README ("extended jawline"), subject's right then left.
JAWLINE_RIGHT = [1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199, 801, 1447, 800]
JAWLINE_LEFT = [3041, 3661, 3042, 4390, 3880, 3022, 3085, 2484, 4102, 4036, 3061, 2253, 3466, 3490, 3493, 3496, 3498]

# ICT splits two ARKit shapes into halves; ARKit has tongueOut, ICT does not. The names and the gaze range of the
# eyeLook* shapes are shared with the add-on (backend/contract.py).
ARKIT_52 = list(ARKIT_52)


def eye_look_weights(names: list[str], yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The eyeLook* weights (others 0) of a gaze: yaw > 0 towards the subject's left, pitch > 0 up (degrees)."""
    h, up, down = EYE_LOOK_RANGE_DEG["horizontal"], EYE_LOOK_RANGE_DEG["up"], EYE_LOOK_RANGE_DEG["down"]
    w = {"eyeLookOutLeft": yaw_deg / h, "eyeLookInLeft": -yaw_deg / h, "eyeLookInRight": yaw_deg / h,
         "eyeLookOutRight": -yaw_deg / h, "eyeLookUpLeft": pitch_deg / up, "eyeLookUpRight": pitch_deg / up,
         "eyeLookDownLeft": -pitch_deg / down, "eyeLookDownRight": -pitch_deg / down}
    return np.array([min(max(w.get(n, 0.0), 0.0), 1.0) for n in names])


def gaze_angles(weights: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per eye ("left", "right"): (yaw, pitch) in degrees from eyeLook* weights (inverse of eye_look_weights)."""
    h, up, down = EYE_LOOK_RANGE_DEG["horizontal"], EYE_LOOK_RANGE_DEG["up"], EYE_LOOK_RANGE_DEG["down"]
    g = lambda n: float(weights.get(n, 0.0))  # noqa: E731
    pitch = {s: up * g(f"eyeLookUp{s}") - down * g(f"eyeLookDown{s}") for s in ("Left", "Right")}
    return {"left": (h * (g("eyeLookOutLeft") - g("eyeLookInLeft")), pitch["Left"]),
            "right": (h * (g("eyeLookInRight") - g("eyeLookOutRight")), pitch["Right"])}


# Pairs of shapes a face cannot do at once (lid up and down, jaw or mouth both ways, brow down and outer brow up,
# gaze both ways). A fit that sets both is explaining something else; a rig that receives both does neither.
ANTAGONISTS = [("eyeWideLeft", "eyeBlinkLeft"), ("eyeWideRight", "eyeBlinkRight"), ("eyeWideLeft", "eyeSquintLeft"),
               ("eyeWideRight", "eyeSquintRight"), ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"),
               ("browDownLeft", "browOuterUpLeft"), ("browDownRight", "browOuterUpRight"),
               ("eyeLookInLeft", "eyeLookOutLeft"), ("eyeLookInRight", "eyeLookOutRight"),
               ("eyeLookUpLeft", "eyeLookDownLeft"), ("eyeLookUpRight", "eyeLookDownRight")]


def resolve_antagonists(weights: np.ndarray, names: list[str]) -> np.ndarray:
    """Weights (..., E) with no antagonist pair on together: each pair keeps its net (the larger minus the
    smaller, on the larger). The fitter's antagonist penalty keeps most fits apart already; this makes it a
    guarantee for consumers that treat the pairs as exclusive (ARKit rigs, retargeting), at the cost of the small
    part of a lid or gaze pose that only the two together could explain. The pairs move opposite ways, so the
    net keeps the motion they agree on."""
    out = np.array(weights, np.float64, copy=True)
    for a, b in ANTAGONISTS:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            net = out[..., i] - out[..., j]
            out[..., i], out[..., j] = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    return out


def ict_to_arkit_name(name: str) -> str:
    """'eyeBlink_L' -> 'eyeBlinkLeft'; split shapes keep their side: 'browInnerUp_L' -> 'browInnerUpLeft'."""
    return re.sub(r"_L$", "Left", re.sub(r"_R$", "Right", name))


def shape_names_to_arkit(weights: dict[str, float]) -> dict[str, float]:
    """Per-shape weights (our 53 names) -> the 52 standard ARKit names (halves averaged, tongueOut 0)."""
    out = {n: 0.0 for n in ARKIT_52}
    for n, w in weights.items():
        base = re.sub(r"(Left|Right)$", "", n)
        if n in out:
            out[n] = float(w)
        elif base in out:  # browInnerUp, cheekPuff
            out[base] += 0.5 * float(w)
    return out


def arkit_to_shape_names(weights: dict[str, float], shape_names: list[str]) -> dict[str, float]:
    """Standard ARKit weights -> our shape names (a combined ARKit shape drives both halves)."""
    lower = {k.lower(): float(v) for k, v in weights.items()}
    out = {}
    for n in shape_names:
        key = n.lower()
        if key in lower:
            out[n] = lower[key]
        else:
            base = re.sub(r"(left|right)$", "", key)
            out[n] = lower.get(base, 0.0)
    return out


@dataclass
class FaceModel:
    neutral: np.ndarray  # (N, 3) float32, cm
    identity: np.ndarray  # (K, N, 3)
    expression: np.ndarray  # (E, N, 3)
    ict_expression_names: list[str]
    polygon_sizes: np.ndarray  # (F,)
    polygon_vertices: np.ndarray  # flat
    uv: np.ndarray  # (U, 2)
    polygon_uvs: np.ndarray  # flat, parallel to polygon_vertices
    landmarks_ibug68: np.ndarray  # (68,) vertex ids
    sha256: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_vertices(self) -> int:
        return self.neutral.shape[0]

    @property
    def n_identity(self) -> int:
        return self.identity.shape[0]

    @property
    def n_expression(self) -> int:
        return self.expression.shape[0]

    @property
    def expression_names(self) -> list[str]:
        """ARKit-style names of the model's expression shapes (53)."""
        return [ict_to_arkit_name(n) for n in self.ict_expression_names]

    def vertices(self, identity=None, expression=None) -> np.ndarray:
        """Evaluate the mesh. identity (K,) or (B,K); expression (E,) or (B,E). Returns (N,3) or (B,N,3)."""
        ident = np.zeros(self.n_identity, np.float32) if identity is None else np.asarray(identity, np.float32)
        expr = np.zeros(self.n_expression, np.float32) if expression is None else np.asarray(expression, np.float32)
        batched = ident.ndim == 2 or expr.ndim == 2
        ident, expr = np.atleast_2d(ident), np.atleast_2d(expr)
        B = max(len(ident), len(expr))
        ident = np.broadcast_to(ident, (B, ident.shape[1]))
        expr = np.broadcast_to(expr, (B, expr.shape[1]))
        K, E = ident.shape[1], expr.shape[1]
        v = self.neutral[None] + np.einsum("bk,knd->bnd", ident, self.identity[:K])
        v = v + np.einsum("be,end->bnd", expr, self.expression[:E])
        return v if batched else v[0]

    def triangles(self) -> np.ndarray:
        """Quads fan-split into triangles, (T, 3) vertex ids, plus per-triangle polygon id in `_cache`."""
        if "tris" not in self._cache:
            self._cache["tris"], self._cache["tri_uvs"], self._cache["tri_poly"] = _triangulate(
                self.polygon_sizes, self.polygon_vertices, self.polygon_uvs)
        return self._cache["tris"]

    def triangle_uvs(self) -> np.ndarray:
        self.triangles()
        return self._cache["tri_uvs"]

    def triangle_polygon(self) -> np.ndarray:
        self.triangles()
        return self._cache["tri_poly"]

    def part_of_vertex(self) -> np.ndarray:
        """(N,) index into list(PARTS) for each vertex."""
        out = np.zeros(self.n_vertices, np.int32)
        for i, (a, b) in enumerate(PARTS.values()):
            out[a:b] = i
        return out


def _triangulate(sizes, verts, uvs):
    tris, tuv, tpoly = [], [], []
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for n in np.unique(sizes):
        idx = np.nonzero(sizes == n)[0]
        base = starts[idx]
        for k in range(1, n - 1):  # fan: (0, k, k+1)
            cols = np.stack([base, base + k, base + k + 1], 1)
            tris.append(verts[cols])
            tuv.append(uvs[cols])
            tpoly.append(idx)
    order = np.argsort(np.concatenate(tpoly), kind="stable")
    return (np.concatenate(tris)[order].astype(np.int64), np.concatenate(tuv)[order].astype(np.int64),
            np.concatenate(tpoly)[order].astype(np.int64))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def load_face_model(path: str | Path | None = None) -> FaceModel:
    path = Path(path or paths.ICT_MODEL)
    if not path.is_file():
        raise SetupError("face model file is missing; run `python build.py setup` or restore weights/", path)
    try:
        d = np.load(path)
        m = FaceModel(
            neutral=d["neutral"].astype(np.float32),
            identity=d["identity"].astype(np.float32),
            expression=d["expression"].astype(np.float32),
            ict_expression_names=[str(s) for s in d["expression_names"]],
            polygon_sizes=d["polygon_sizes"].astype(np.int64),
            polygon_vertices=d["polygon_vertices"].astype(np.int64),
            uv=d["uv"].astype(np.float32),
            polygon_uvs=d["polygon_uvs"].astype(np.int64),
            landmarks_ibug68=d["landmarks_ibug68"].astype(np.int64),
            # result.json's model.sha256: which model file a bundle's identity coefficients belong to
            # (22 MB: 30 ms once per process, load_face_model is cached)
            sha256=_sha256(path),
        )
    except Exception as e:  # zip/pickle errors from a damaged file
        raise SetupError(f"face model file is corrupt ({e.__class__.__name__}: {e})", path) from e
    return m


def vertex_index_sets(path: str | Path | None = None) -> dict:
    return json.loads(Path(path or paths.ICT_VERTEX_INDICES).read_text())


class TorchFaceModel:
    """The model's bases as torch tensors, optionally restricted to a subset of vertices.

    `rows` may be vertex ids (M,) or barycentric samples: (M,3) vertex ids with (M,3) weights;
    evaluation then returns (B, M, 3) surface points.
    """

    def __init__(self, model: FaceModel, device="cpu", dtype=None, vertex_ids=None, bary_weights=None,
                 n_identity=None):
        import torch

        dtype = dtype or torch.float32
        K = n_identity or model.n_identity
        mean, ident, expr = model.neutral, model.identity[:K], model.expression
        if vertex_ids is not None:
            vid = np.asarray(vertex_ids)
            if bary_weights is None:
                mean, ident, expr = mean[vid], ident[:, vid], expr[:, vid]
            else:
                w = np.asarray(bary_weights, np.float32)[..., None]
                mean = (mean[vid] * w).sum(-2)
                ident = (ident[:, vid] * w).sum(-2)
                expr = (expr[:, vid] * w).sum(-2)
        self.device, self.dtype = torch.device(device), dtype
        self.mean = torch.as_tensor(np.ascontiguousarray(mean), dtype=dtype, device=device)  # (M,3)
        M = self.mean.shape[0]
        # (K, M*3) so that evaluation is one matmul
        self.B_id = torch.as_tensor(np.ascontiguousarray(ident.reshape(K, M * 3)), dtype=dtype, device=device)
        self.B_exp = torch.as_tensor(np.ascontiguousarray(expr.reshape(len(expr), M * 3)), dtype=dtype,
                                     device=device)

    def __call__(self, identity, expression):
        """identity (B,K) or (K,), expression (B,E) -> (B, M, 3)."""
        if identity.dim() == 1:
            identity = identity[None]
        M = self.mean.shape[0]
        return (self.mean.reshape(1, M * 3) + identity @ self.B_id + expression @ self.B_exp).reshape(-1, M, 3)
