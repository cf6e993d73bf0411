"""Reading a result bundle (docs/result-bundle.md) into plain Python and numpy: no bpy.

Every path result.json names (`files.*`, `views[].image`, `animation.file`) is relative to the bundle and must
stay inside it: a bundle is data from elsewhere, and a name like "../../.ssh/id_rsa" or "/etc/passwd" is refused
with a one-line error instead of being read (or, for an image, packed into a .blend that is then shared).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arkit import ARKIT_52, gaze_controls, to_arkit
from .obj import ObjError, ObjMesh, parse_obj

SCHEMA = "faceforge.result"
SCHEMA_VERSION = 1


class BundleError(Exception):
    """A bundle the importer cannot read; str() is a one-line message naming the file."""


@dataclass
class Bundle:
    folder: Path                 # absolute
    doc: dict                    # result.json
    subject: str
    mesh: ObjMesh
    names: list[str]             # the model's expression names (blendshapes.npz `names`)
    deltas: np.ndarray           # (len(names), n_vertices, 3) cm
    parts: dict[str, tuple[int, int]]
    files: dict[str, Path] = field(default_factory=dict)      # optional files present: key -> absolute path
    view_images: list[Path | None] = field(default_factory=list)

    @property
    def views(self) -> list[dict]:
        return list(self.doc.get("views") or [])

    @property
    def result_json(self) -> Path:
        return self.folder / "result.json"


def inside(folder: Path, rel, where: str, rj: Path) -> Path:
    """`folder / rel`, refused unless `rel` is a relative path that stays inside `folder` (symlinks resolved)."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{rj}: {where}: expected a file name, got {rel!r}")
    p = Path(rel)
    root = folder.resolve()
    target = (root / p).resolve()
    if p.is_absolute() or (target != root and root not in target.parents):
        raise BundleError(f"{rj}: {where}: {rel!r} points outside the bundle {root}")
    return target


def read_doc(path) -> tuple[Path, dict]:
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name == "result.json":
        folder = folder.parent
    folder = folder.absolute()
    rj = folder / "result.json"
    if not rj.is_file():
        raise BundleError(f"{folder}: not a result folder (no result.json)")
    try:
        doc = json.loads(rj.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{rj}: unreadable ({e})") from e
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BundleError(f"{rj}: not a FaceForge result (schema {doc.get('schema') if isinstance(doc, dict) else None!r})")
    try:
        version = int(doc.get("schema_version", 0))
    except (TypeError, ValueError):
        raise BundleError(f"{rj}: schema_version {doc.get('schema_version')!r} is not a number") from None
    if version > SCHEMA_VERSION:
        raise BundleError(f"{rj}: schema version {version} is newer than this add-on (reads {SCHEMA_VERSION}); "
                          "update the add-on")
    return folder, doc


OPTIONAL_FILES = ("albedo", "normal", "hair_mask", "eye_albedo", "eye_shell_albedo")


def read_bundle(path) -> Bundle:
    folder, doc = read_doc(path)
    rj = folder / "result.json"
    files = doc.get("files") or {}
    if not isinstance(files, dict):
        raise BundleError(f"{rj}: files: expected an object")
    mesh_path = inside(folder, files.get("mesh", "head.obj"), "files.mesh", rj)
    bs_path = inside(folder, files.get("blendshapes", "blendshapes.npz"), "files.blendshapes", rj)
    present = {}
    for key in OPTIONAL_FILES:
        if key in files:
            p = inside(folder, files[key], f"files.{key}", rj)
            if p.is_file():
                present[key] = p
    view_images = []
    views = doc.get("views") or []
    if not isinstance(views, list):
        raise BundleError(f"{rj}: views: expected a list")
    for i, v in enumerate(views):
        img = v.get("image") if isinstance(v, dict) else None
        p = inside(folder, img, f"views[{i}].image", rj) if img is not None else None
        view_images.append(p if p is not None and p.is_file() else None)
    if not bs_path.is_file():
        raise BundleError(f"{bs_path}: blendshapes file is missing")
    try:
        mesh = parse_obj(mesh_path)
    except ObjError as e:
        raise BundleError(str(e)) from e
    try:
        with np.load(bs_path) as d:
            names = [str(s) for s in d["names"]]
            deltas = d["deltas"].astype(np.float64)
    except Exception as e:  # zip / key errors from a damaged file
        raise BundleError(f"{bs_path}: unreadable ({e.__class__.__name__}: {e})") from e
    if deltas.ndim != 3 or deltas.shape[0] != len(names) or deltas.shape[2] != 3:
        raise BundleError(f"{bs_path}: deltas are {deltas.shape}, expected ({len(names)}, vertices, 3)")
    if deltas.shape[1] != len(mesh.vertices):
        raise BundleError(f"{bs_path}: {deltas.shape[1]} vertices, but the mesh has {len(mesh.vertices)}")
    parts = {}
    for k, v in ((doc.get("model") or {}).get("parts") or {}).items():
        a, b = int(v[0]), int(v[1])
        if not 0 <= a <= b <= len(mesh.vertices):
            raise BundleError(f"{rj}: model.parts.{k}: [{a}, {b}) is outside the mesh's {len(mesh.vertices)} vertices")
        parts[str(k)] = (a, b)
    subject = str(doc.get("subject") or folder.name)
    return Bundle(folder, doc, subject, mesh, names, deltas, parts, present, view_images)


def view_arkit(view: dict, names: list[str]) -> dict[str, float]:
    """A view's expression as the 52 ARKit weights: its `arkit` (the backend's own conversion) where present,
    else converted from `expression`; with `gaze`, the eyeLook* weights that turn the eye bones by it."""
    if isinstance(view.get("arkit"), dict) and view["arkit"]:
        out = {a: float(view["arkit"].get(a, 0.0)) for a in ARKIT_52}
    else:
        expr = view.get("expression") or {}
        w = to_arkit(names, [float(expr.get(n, 0.0)) for n in names])
        out = dict(zip(ARKIT_52, map(float, w)))
    gaze = view.get("gaze")
    if isinstance(gaze, dict) and "left" in gaze and "right" in gaze:
        g = {s: (float(gaze[s]["yaw_deg"]), float(gaze[s]["pitch_deg"])) for s in ("left", "right")}
        out.update(gaze_controls(g["left"], g["right"]))
    return out


def load_animation(bundle: Bundle) -> dict:
    """The `animation` section with its arrays, checked; `arkit` (N, 52) holds the weights the rig is keyed
    with (gaze_deg, where present, sets the eyeLook* columns)."""
    anim = dict(bundle.doc["animation"])
    rj = bundle.result_json
    path = inside(bundle.folder, anim.get("file", "animation.npz"), "animation.file", rj)
    if not path.is_file():
        raise BundleError(f"{path}: animation file is missing")
    try:
        with np.load(path) as d:
            arr = {k: d[k] for k in d.files}
    except Exception as e:  # damaged zip / pickle refusal
        raise BundleError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from e
    for k in ("expression", "R", "t"):
        if k not in arr:
            raise BundleError(f"{path}: no '{k}' array")
    n = len(arr["expression"])
    names = bundle.names
    if n == 0:
        raise BundleError(f"{path}: no frames")
    if arr["expression"].shape != (n, len(names)):
        raise BundleError(f"{path}: expression is {arr['expression'].shape}, expected ({n}, {len(names)})")
    if arr["R"].shape != (n, 3, 3) or arr["t"].shape != (n, 3):
        raise BundleError(f"{path}: R / t shapes {arr['R'].shape} / {arr['t'].shape} do not match {n} frames")
    frame = np.asarray(arr.get("frame", np.arange(n)), np.int64)
    if len(frame) != n or (np.diff(frame) <= 0).any():
        raise BundleError(f"{path}: 'frame' must be {n} increasing video frame numbers")
    ref = int(anim.get("reference_frame", 0))
    if not 0 <= ref < n:
        raise BundleError(f"{path}: reference_frame {ref} is outside 0..{n - 1}")
    expression = arr["expression"].astype(np.float64)
    if "arkit" in arr and [str(x) for x in arr.get("arkit_names", [])] == ARKIT_52 and arr["arkit"].shape == (n, 52):
        arkit = arr["arkit"].astype(np.float64)
    else:
        arkit = to_arkit(names, expression)
    gaze = arr.get("gaze_deg")
    if gaze is not None:
        if gaze.shape != (n, 2, 2):
            raise BundleError(f"{path}: gaze_deg is {gaze.shape}, expected ({n}, 2, 2)")
        col = {a: i for i, a in enumerate(ARKIT_52)}
        for k in range(n):
            for a, w in gaze_controls(tuple(gaze[k, 0]), tuple(gaze[k, 1])).items():
                arkit[k, col[a]] = w
    anim.update(expression=expression, arkit=arkit, R=arr["R"].astype(np.float64), t=arr["t"].astype(np.float64),
                frame=frame, reference_frame=ref, path=path, gaze_deg=gaze)
    return anim
