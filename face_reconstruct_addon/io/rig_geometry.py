"""The rig's geometry, worked out in numpy from the bundle (no bpy): which polygons make which object, the
bones, the skin weights, and every object's 52 ARKit shapes.

Objects ("pieces"): the head (skin, mouth socket, lashes, eye wetness), per eye the inner ball (iris plane and
sclera) and the clear outer shell (ICT's eyeball part: the shell is its first 770 vertices, the ball the other
800; docs/result-bundle.md), the upper and lower teeth (ICT's teeth part, told apart by jawOpen: the upper row
does not move), and the tongue (ICT's gums_tongue part, one connected surface of tongue and gums).

One jaw, never two: the rig's jawOpen control drives the jawOpen shape key and turns the jaw bone by the angle
ICT's jawOpen turns the lower teeth (a rigid 25 degrees about the model's x axis, fitted here). The head mesh is
not weighted to the jaw bone, so it opens by its shape key alone; the lower teeth and the tongue are weighted
to it, and their jawOpen shape keeps only what the bone's rotation does not do, so bone + shape = ICT's jawOpen.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .arkit import ARKIT_52, SPLIT
from .obj import ObjMesh

EYE_SHELL_VERTICES = 770
SIDES = {"eyeball_left": "L", "eyeball_right": "R"}
# Head material slot of each model part (the rest of the model is in its own objects).
HEAD_SLOTS = {
    "skin": ["face", "head_neck", "eye_socket_left", "eye_socket_right"],
    "mouth": ["mouth_socket"],
    "eye_wet": ["lacrimal_left", "lacrimal_right", "eye_blend_left", "eye_blend_right", "eye_occlusion_left",
                "eye_occlusion_right"],
    "eyelashes": ["eyelashes_left", "eyelashes_right"],
}
# tongueOut (ICT has none): the tongue's front pushed out of the mouth, fading to nothing at its root.
TONGUE_OUT_CM = np.array([0.0, 0.35, 2.4])   # at the tip, model axes (+Y up, +Z out of the face)
TONGUE_LENGTH_CM = 5.0                       # from the tip back to where the root stays put


@dataclass
class Piece:
    name: str                     # "head", "eye.L", "eye_shell.L", "teeth_upper", "teeth_lower", "tongue"
    material: str                 # material role ("head" uses per-polygon slots, see HEAD_SLOTS)
    vertices: np.ndarray          # model vertex ids, sorted
    polygons: np.ndarray          # polygon ids
    sizes: np.ndarray
    loop_vertex: np.ndarray       # into `vertices`
    loop_uv: np.ndarray           # into the mesh's uvs
    slots: np.ndarray             # per polygon: index into HEAD_SLOTS (head) or 0
    weights: dict = field(default_factory=dict)   # bone -> (len(vertices),) skin weight
    shapes: dict = field(default_factory=dict)    # ARKit name -> (len(vertices), 3) delta, cm


@dataclass
class Bone:
    head: np.ndarray              # model cm
    tail: np.ndarray
    parent: str | None
    deform: bool = True


@dataclass
class RigGeometry:
    bones: dict                   # name -> Bone, in creation order
    jaw_angle: float              # radians the jaw bone turns (about model +X) at jawOpen = 1
    jaw_pivot: np.ndarray
    pieces: list
    arkit_deltas: np.ndarray      # (52, n_vertices, 3), the whole head's ARKit shapes before the jaw split

    def piece(self, name):
        return next((p for p in self.pieces if p.name == name), None)


def arkit_deltas(names: list[str], deltas: np.ndarray) -> np.ndarray:
    """(52, N, 3): ICT's shapes under ARKit names, browInnerUp / cheekPuff the sum of their halves, tongueOut
    zero (rig_geometry adds it for the tongue)."""
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(ARKIT_52),) + deltas.shape[1:])
    for r, a in enumerate(ARKIT_52):
        if a in index:
            out[r] = deltas[index[a]]
        elif a in SPLIT:
            for side in ("Left", "Right"):
                if a + side in index:
                    out[r] += deltas[index[a + side]]
    return out


def rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def fit_jaw(rest: np.ndarray, opened: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Angle about the model's x axis and pivot (x = 0) of the rigid motion rest -> opened (Kabsch), or None."""
    if len(rest) < 3:
        return None
    pc, qc = rest.mean(0), opened.mean(0)
    U, _, Vt = np.linalg.svd((rest - pc).T @ (opened - qc))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    angle = float(np.arctan2(R[2, 1], R[1, 1]))
    if abs(angle) < 1e-3:
        return None
    Rx = rotation_x(angle)
    t = qc - Rx @ pc
    # Fixed point of X -> Rx X + t in the y-z plane: (I - Rx) p = t.
    A = (np.eye(3) - Rx)[1:, 1:]
    pyz = np.linalg.solve(A, t[1:])
    return angle, np.array([0.0, pyz[0], pyz[1]])


def jaw_residual(x: np.ndarray, d: np.ndarray, w: np.ndarray, angle: float, pivot: np.ndarray) -> np.ndarray:
    """Shape delta r with: skinning (weight w on a bone turned by `angle` about `pivot`, applied after the shape
    keys, as Blender's armature modifier is) of x + r lands exactly on x + d. With M = (1-w) I + w Rx the
    skinned point is p + M (x + r - p), so r = p + M^-1 (x + d - p) - x."""
    Rx = rotation_x(angle)
    M = (1.0 - w)[:, None, None] * np.eye(3) + w[:, None, None] * Rx
    target = (x + d - pivot)[..., None]
    return pivot + np.linalg.solve(M, target)[..., 0] - x


def _sphere_centre(P: np.ndarray) -> np.ndarray:
    s = np.linalg.lstsq(np.c_[2 * P, np.ones(len(P))], (P ** 2).sum(1), rcond=None)[0]
    return s[:3]


def _nearest_distance(P: np.ndarray, Q: np.ndarray, chunk: int = 512) -> np.ndarray:
    out = np.full(len(P), np.inf)
    for i in range(0, len(P), chunk):
        d = ((P[i:i + chunk, None, :] - Q[None, :, :]) ** 2).sum(-1)
        out[i:i + chunk] = np.sqrt(d.min(1)) if len(Q) else np.inf
    return out


def _smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def tongue_out_delta(V: np.ndarray, tongue_ids: np.ndarray, moving: np.ndarray, lower_teeth: np.ndarray) -> np.ndarray:
    """(len(tongue_ids), 3) tongueOut delta for the tongue object's vertices: the tongue body (moves with the
    jaw, away from the gums around the lower teeth, between them) pushed forward and slightly up, full at the
    tip and fading out over TONGUE_LENGTH_CM towards the root."""
    P = V[tongue_ids]
    body = moving[tongue_ids] & (_nearest_distance(P, V[lower_teeth]) > 0.45)
    if not body.any():
        return np.zeros_like(P)
    half_width = 0.75 * np.abs(P[body, 0]).max()
    tip = P[body, 2].max()
    w = (_smoothstep(tip - TONGUE_LENGTH_CM, tip - 0.5, P[:, 2])
         * (1.0 - _smoothstep(half_width * 0.8, half_width * 1.1, np.abs(P[:, 0])))
         * _smoothstep(P[body, 1].min(), P[body, 1].min() + 0.8, P[:, 1]) * body)
    return w[:, None] * TONGUE_OUT_CM[None, :]


def build(mesh: ObjMesh, names: list[str], deltas: np.ndarray, parts: dict) -> RigGeometry:
    V = mesh.vertices
    n = len(V)
    arkit = arkit_deltas(names, deltas)
    jaw_d = arkit[ARKIT_52.index("jawOpen")]
    jaw_mag = np.linalg.norm(jaw_d, axis=1)

    # -- which object each polygon goes to (by its first vertex's part) ---------------------------------------
    part_of = np.full(n, "", dtype=object)
    for p, (a, b) in parts.items():
        part_of[a:b] = p
    starts = mesh.loop_start
    first = mesh.loop_vertex[starts]
    piece_of_vertex = np.full(n, "head", dtype=object)
    for p, side in SIDES.items():
        if p in parts:
            a, b = parts[p]
            piece_of_vertex[a:b] = f"eye.{side}"
            piece_of_vertex[a:min(b, a + EYE_SHELL_VERTICES)] = f"eye_shell.{side}"
    lower_teeth = np.zeros(0, np.int64)
    if "teeth" in parts:
        a, b = parts["teeth"]
        ids = np.arange(a, b)
        # ICT's upper row does not move at all with jawOpen; the lower row's back molars move least (~half).
        moves = jaw_mag[a:b] > 0.05 * jaw_mag[a:b].max() if jaw_mag[a:b].max() > 0 else np.zeros(b - a, bool)
        piece_of_vertex[ids] = np.where(moves, "teeth_lower", "teeth_upper")
        lower_teeth = ids[moves]
    if "gums_tongue" in parts:
        a, b = parts["gums_tongue"]
        piece_of_vertex[a:b] = "tongue"
    poly_piece = piece_of_vertex[first]

    # -- bones ----------------------------------------------------------------------------------------------
    eye_c = {}
    for p, side in SIDES.items():
        if p in parts:
            a, b = parts[p]
            eye_c[side] = _sphere_centre(V[a:min(b, a + EYE_SHELL_VERTICES)])
    top, bottom = V[:, 1].max(), V[:, 1].min()
    eye_mid = (eye_c["L"] + eye_c["R"]) / 2 if len(eye_c) == 2 else np.array([0.0, 3.5, 8.0])
    chin = V[np.argmax(jaw_mag)] if jaw_mag.max() > 0 else eye_mid + [0.0, -9.0, 1.0]
    fit = None
    if len(lower_teeth) >= 3:
        fit = fit_jaw(V[lower_teeth], V[lower_teeth] + jaw_d[lower_teeth])
    elif jaw_mag.max() > 0:
        strong = jaw_mag > 0.5 * jaw_mag.max()
        fit = fit_jaw(V[strong], V[strong] + jaw_d[strong])
    if fit is None or not (bottom < fit[1][1] < eye_mid[1] and -5.0 < fit[1][2] < chin[2]):
        # A typical temporomandibular joint, with no opening (the bundle's jawOpen does not turn rigidly).
        fit = (0.0, np.array([0.0, eye_mid[1] - 5.5, eye_mid[2] - 9.0]))
    jaw_angle, pivot = fit
    neck_top = np.array([0.0, pivot[1] - 2.0, pivot[2] - 1.0])
    neck_base = np.array([0.0, bottom, neck_top[2] - 1.0])
    root = neck_base * [0, 1, 1]
    bones = {
        "root": Bone(root, root + [0, 0, -5.0], None, deform=False),
        "neck": Bone(neck_base, neck_top, "root"),
        "head": Bone(neck_top, np.array([0.0, top, neck_top[2]]), "neck"),
        "jaw": Bone(pivot, chin, "head"),
    }
    for side in ("L", "R"):
        c = eye_c.get(side, eye_mid)
        bones[f"eye.{side}"] = Bone(c, c + [0, 0, 1.5], "head")

    # -- skin weights (per model vertex) ------------------------------------------------------------------------
    w_jaw = np.zeros(n)
    if lower_teeth.size:
        w_jaw[lower_teeth] = 1.0
    tongue_ids = np.nonzero(piece_of_vertex == "tongue")[0]
    if tongue_ids.size and jaw_angle:
        # How much of the bone's rotation each tongue / gum vertex follows: its jawOpen motion projected on
        # the rotation's (jaw_residual removes the rest).
        rot = (V[tongue_ids] - pivot) @ (rotation_x(jaw_angle) - np.eye(3)).T
        den = (rot * rot).sum(1)
        w_jaw[tongue_ids] = np.clip(np.where(den > 1e-9, (jaw_d[tongue_ids] * rot).sum(1) / np.maximum(den, 1e-9),
                                             0.0), 0.0, 1.0)
    # The head (and everything not on the jaw) follows the head bone; the lower neck blends into the neck bone.
    w_neck = np.clip((neck_top[1] - V[:, 1]) / max(neck_top[1] - bottom, 1e-3), 0.0, 1.0) ** 2
    w_neck[piece_of_vertex != "head"] = 0.0
    w_head = 1.0 - w_jaw - w_neck

    # -- the ARKit shapes of each object ----------------------------------------------------------------------
    if tongue_ids.size:
        arkit[ARKIT_52.index("tongueOut"), tongue_ids] = tongue_out_delta(
            V, tongue_ids, w_jaw > 0.5, lower_teeth if lower_teeth.size else tongue_ids[:0])
    jaw_row = ARKIT_52.index("jawOpen")
    pieces = []
    order = ["head", "eye.L", "eye_shell.L", "eye.R", "eye_shell.R", "teeth_upper", "teeth_lower", "tongue"]
    slot_of_group = {g: i for i, gs in enumerate(HEAD_SLOTS.values()) for g in gs}
    for name in order:
        pids = np.nonzero(poly_piece == name)[0]
        if len(pids) == 0:
            continue
        loops = np.concatenate([np.arange(starts[p], starts[p] + mesh.sizes[p]) for p in pids]) \
            if len(pids) < 64 else _loops_of(starts, mesh.sizes, pids)
        vids = np.unique(mesh.loop_vertex[loops])
        remap = np.full(n, -1, np.int64)
        remap[vids] = np.arange(len(vids))
        slots = np.array([slot_of_group.get(g, 0) for g in mesh.groups[pids]], np.int32) if name == "head" \
            else np.zeros(len(pids), np.int32)
        material = {"head": "head", "teeth_upper": "teeth", "teeth_lower": "teeth", "tongue": "tongue"}.get(
            name, "eye" if name.startswith("eye.") else "eye_shell")
        piece = Piece(name, material, vids, pids, mesh.sizes[pids], remap[mesh.loop_vertex[loops]],
                      mesh.loop_uv[loops], slots)
        if name.startswith("eye"):
            piece.weights = {"eye." + name[-1]: np.ones(len(vids))}
        else:
            piece.weights = {b: w[vids] for b, w in (("head", w_head), ("neck", w_neck), ("jaw", w_jaw))
                             if w[vids].max() > 0}
        on_jaw = w_jaw[vids] > 0
        for r, a in enumerate(ARKIT_52):
            d = arkit[r, vids].copy()
            if r == jaw_row and on_jaw.any() and jaw_angle:
                sel = np.nonzero(on_jaw)[0]
                d[sel] = jaw_residual(V[vids[sel]], d[sel], w_jaw[vids[sel]], jaw_angle, pivot)
            # The head carries all 52 (exact-name consumers look for every one on it); the other objects only
            # the shapes that move them.
            if name == "head" or np.abs(d).max() > 1e-3:  # 10 micrometres: below that it is float noise
                piece.shapes[a] = d
        pieces.append(piece)
    return RigGeometry(bones, float(jaw_angle), pivot, pieces, arkit)


def _loops_of(starts: np.ndarray, sizes: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Loop indices of polygons `pids`, in order, without a Python loop per polygon."""
    s = sizes[pids]
    offsets = np.repeat(starts[pids] - np.concatenate([[0], np.cumsum(s)[:-1]]), s)
    return np.arange(s.sum()) + offsets
