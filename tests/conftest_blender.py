"""Shared fixtures for the Blender add-on tests (imported by tests/test_addon_*.py).

bpy is imported once per test process (it takes seconds); each test starts from an empty factory
scene with the add-on enabled through addon_utils, as a user's Blender would have it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
ADDON = "face_reconstruct_addon"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def bpy_module():
    bpy = pytest.importorskip("bpy")
    return bpy


def enable_addon(bpy):
    import addon_utils

    mod = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    assert mod is not None, "add-on failed to enable"
    return mod


@pytest.fixture
def bpy_clean(bpy_module):
    """Empty factory scene, add-on enabled; disabled again afterwards."""
    bpy = bpy_module
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon(bpy)
    yield bpy
    import addon_utils

    addon_utils.disable(ADDON, default_set=True)


def look_at_R(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """OpenCV rotation of a camera in front of the face (+Z), turned by yaw about the model's Y axis."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    flip = np.diag([1.0, -1.0, -1.0])  # camera looks down -Z_model (at the face), image y down
    return flip @ Rx @ Ry


def make_bundle(out_dir: Path, subject: str = "Test Subject", seed: int = 0, textures: bool = True,
                eyes: bool = False) -> Path:
    """A real bundle written by backend.bundle.write_bundle: random identity, made-up cameras, the
    sample photos as views (a non-square one with an off-centre principal point on purpose). eyes: an
    eye_albedo.png with a red iris disc (radius 0.45 around (0.5, 0.5), docs/result-bundle.md) on white sclera."""
    from backend.bundle import write_bundle
    from backend.face_model import gaze_angles, load_face_model, shape_names_to_arkit
    from tests import bundles

    model = load_face_model()
    rng = np.random.default_rng(seed)
    identity = rng.standard_normal(model.n_identity).astype(np.float32) * 0.7
    photos = [(DATA / "multiview-mvfnet" / "front.jpg", 224, 224, 0.0),
              (DATA / "multiview-mvfnet" / "left.jpg", 224, 224, 35.0),
              (DATA / "single-300w" / "image_0010.png", 1280, 1024, -20.0)]
    views, images = [], []
    for i, (src, w, h, yaw) in enumerate(photos):
        R = look_at_R(yaw, 5.0 * i)
        t = np.array([0.3 * i, -1.0, 55.0 + 5 * i])
        fx = 1.3 * max(w, h)
        expr = {n: float(rng.uniform(0, 0.6)) if k % 5 == i else 0.0
                for k, n in enumerate(model.expression_names)}
        name = f"{i}_{src.name}"
        images.append((str(src), name))
        views.append({
            "name": src.stem, "image": f"images/{name}", "source_path": str(src), "width": w, "height": h,
            "landmark_format": "mediapipe478", "landmarks_2d": [[w / 2, h / 2]] * 478, "n_faces": 1,
            "camera": {"fx": fx, "fy": fx, "cx": w / 2 - 0.5 + 7.0 * i, "cy": h / 2 - 0.5 - 4.0 * i,
                       "R": R.tolist(), "t": t.tolist(), "yaw_deg": yaw, "pitch_deg": 5.0 * i, "roll_deg": 0.0,
                       "focal_source": "given"},
            "expression": expr, "arkit": shape_names_to_arkit(expr),
            "gaze": {side: {"yaw_deg": y, "pitch_deg": p} for side, (y, p) in gaze_angles(expr).items()},
            "reprojection_error_px": {"median": 1.0, "mean": 1.2, "p90": 2.0, "max": 3.0},
            "interocular_px": 60.0, "warnings": [],
        })
    extra = {}
    files = {}
    if textures:
        from PIL import Image
        import io

        for key, color in (("albedo", (200, 150, 130)), ("normal", (128, 128, 255))):
            buf = io.BytesIO()
            Image.new("RGB", (128, 64), color).save(buf, "PNG")  # two UDIM tiles side by side, like the baker
            extra[f"{key}.png"] = buf.getvalue()
            files[key] = f"{key}.png"
    if eyes:
        from PIL import Image
        import io

        yy, xx = np.mgrid[0:128, 0:128]
        disc = np.hypot(xx + 0.5 - 64, yy + 0.5 - 64) < 0.45 * 128  # the real texture's iris: about 0.42
        px = np.full((128, 128, 3), 235, np.uint8)
        px[disc] = (210, 20, 20)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "PNG")
        extra["eye_albedo.png"] = buf.getvalue()
        files["eye_albedo"] = "eye_albedo.png"
    result = bundles.result(subject, model, views=views, files=files)
    return write_bundle(out_dir, result, model, identity, images=images, extra_files=extra)


def evaluated_world_co(bpy, obj) -> np.ndarray:
    """(N, 3) world-space vertex positions of obj after its modifiers, shape keys and drivers."""
    deps = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(deps)
    me = ev.to_mesh()
    co = np.zeros(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def result_json(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "result.json").read_text())


def orphan_servers(pid_marker: str = "backend") -> list[int]:
    """PIDs of live `backend serve` / `backend.server` processes that are children of this process."""
    me = os.getpid()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == me and state != "Z" and any(b"backend" in c for c in cmd) and (
                b"serve" in cmd or b"backend.server" in cmd):
            out.append(int(d.name))
    return out
