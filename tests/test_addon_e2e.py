"""End to end through the real backend: bpy module in this process, `python -m backend serve` as a
real subprocess, real mediapipe + fitting on the sample photos.

What is and is not exercised: bpy-as-a-module has no window, so Blender cannot deliver TIMER or ESC
events, and WindowManager.event_timer_add / modal_handler_add need a window. The tests therefore call
the operator's own invoke() / modal() / execute() functions with a stand-in operator instance, a
context whose window manager records timer and handler registration, and synthetic TIMER / ESC
events; everything behind them is real (Runner, BackendClient, server subprocess, pipeline, importer,
scene progress properties, reports). Not exercised: Blender's event loop itself (timer delivery, key
map, redraw) and Workspace.status_text_set, which need a windowed Blender.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from conftest_blender import DATA, bpy_clean, bpy_module, enable_addon, orphan_servers  # noqa: F401 (fixtures)

PHOTOS = DATA / "multiview-mvfnet"
N_VERTS, N_FACES = 26719, 26384
pytestmark = pytest.mark.slow


def _add_photos(bpy):
    res = bpy.ops.faceforge.photo_add(directory=str(PHOTOS),
                                      files=[{"name": n} for n in ("front.jpg", "left.jpg", "right.jpg")])
    assert res == {"FINISHED"}
    assert [Path(p.filepath).name for p in bpy.context.scene.faceforge.photos] == ["front.jpg", "left.jpg",
                                                                                    "right.jpg"]


class FakeWindowManager:
    def __init__(self):
        self.timers, self.removed, self.handlers, self.windows = [], [], [], []

    def event_timer_add(self, step, window=None):
        assert window is not None and 0 < step <= 0.5  # polled often enough for a live progress bar
        token = object()
        self.timers.append(token)
        return token

    def event_timer_remove(self, token):
        self.removed.append(token)

    def modal_handler_add(self, op):
        self.handlers.append(op)


class FakeContext:
    """bpy.context with a window manager that records what the operator registers."""

    def __init__(self, bpy):
        self._bpy = bpy
        self.window_manager = FakeWindowManager()
        self.window = object()
        self.workspace = None

    def __getattr__(self, name):
        return getattr(self._bpy.context, name)


class Event:
    def __init__(self, type, value="NOTHING"):
        self.type, self.value = type, value


def _operator_instance():
    from face_reconstruct_addon.operators import FACEFORGE_OT_reconstruct as Op

    class Standin:  # what Blender would instantiate: the operator's own methods, a report() log
        invoke, modal, execute, cancel, _report_end = Op.invoke, Op.modal, Op.execute, Op.cancel, Op._report_end
        _timer = _runner = None

        def __init__(self):
            self.reports = []

        def report(self, level, message):
            self.reports.append((sorted(level)[0], message))

    return Standin()


def _drive_modal(op, ctx, until=None, timeout=300.0):
    """Send TIMER events (and a mouse move, which must pass through) until modal() ends or until()."""
    t0 = time.monotonic()
    while True:
        assert op.modal(ctx, Event("MOUSEMOVE")) == {"PASS_THROUGH"}  # UI stays usable while running
        r = op.modal(ctx, Event("TIMER"))
        if r != {"PASS_THROUGH"}:
            return r
        if until is not None and until():
            return r
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def _object_counts(bpy):
    return (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections), len(bpy.data.images),
            len(bpy.data.armatures), len(bpy.data.cameras))


def test_reconstruct_modal_path_and_saved_blend(bpy_clean, tmp_path, monkeypatch):
    bpy = bpy_clean
    from face_reconstruct_addon import jobs

    _add_photos(bpy)
    s = bpy.context.scene.faceforge
    s.texture_size, s.output_dir, s.subject = "512", str(tmp_path / "results"), "Mvf Subject"
    ctx, op = FakeContext(bpy), _operator_instance()
    from face_reconstruct_addon import compat

    monkeypatch.setattr(compat, "is_background", lambda: False)  # take the interactive (modal) branch
    assert op.invoke(ctx, Event("LEFTMOUSE", "PRESS")) == {"RUNNING_MODAL"}
    wm = ctx.window_manager
    assert len(wm.timers) == 1 and wm.handlers == [op]
    runner = op._runner
    assert s.running and jobs.ACTIVE["runner"] is runner
    stages = []

    def record():
        stage = s.stage.split(":")[0]
        if not stages or stages[-1] != stage:
            stages.append(stage)
        assert 0.0 <= s.progress <= 1.0
        return False

    assert _drive_modal(op, ctx, until=record) == {"FINISHED"}, op.reports
    assert wm.removed == wm.timers  # the timer is gone with the job
    assert op.reports[-1] == ("INFO", "FaceForge: imported Mvf Subject")
    assert runner.state == jobs.FINISHED and jobs.ACTIVE["runner"] is None
    assert not s.running and s.stage == "Done" and s.last_error == ""
    assert {"detect", "fit"} <= set(stages), stages
    # The backend stays warm for the next job (and is the only one running); a second job reuses it.
    from face_reconstruct_addon import client

    warm = client.warm_pids()
    assert orphan_servers() == warm == [runner.job.client.pid]
    s.output_dir = str(tmp_path / "results2")
    second = jobs.Runner()
    second.start(bpy.context)
    assert second.job.warm and second.job.client.pid == warm[0]
    assert second.run_blocking(bpy.context, timeout=600) == jobs.FINISHED, second.error
    assert second.job.client.jobs_run == 2 and orphan_servers() == warm
    assert client.shutdown_warm() == 1 and orphan_servers() == []

    bundle = tmp_path / "results" / "Mvf_Subject"
    assert (bundle / "result.json").is_file()
    blend = tmp_path / "head.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    # Re-open the saved file from scratch and check what a user would get.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    import json

    doc = json.loads((bundle / "result.json").read_text())
    coll = bpy.data.collections["Mvf Subject"]
    meshes = [o for o in coll.objects if o.type == "MESH"]
    assert sorted(o.name for o in meshes) == sorted(f"Mvf Subject_{p}" for p in (
        "head", "eye.L", "eye_shell.L", "eye.R", "eye_shell.R", "teeth_upper", "teeth_lower", "tongue"))
    assert sum(len(o.data.vertices) for o in meshes) == N_VERTS
    assert sum(len(o.data.polygons) for o in meshes) == N_FACES
    assert all(o.data.uv_layers.active is not None for o in meshes)
    head = bpy.data.objects["Mvf Subject_head"]
    keys = head.data.shape_keys.key_blocks
    d = np.load(bundle / "blendshapes.npz")
    names = [str(n) for n in d["names"]]
    from face_reconstruct_addon.io.arkit import ARKIT_52

    assert [k.name for k in keys][1:] == ARKIT_52
    keep = np.arange(*head["faceforge_vertex_ids"])
    keep = keep[np.isin(keep, np.concatenate([np.arange(*doc["model"]["parts"][p]) for p in (
        "face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "lacrimal_left", "lacrimal_right",
        "eye_blend_left", "eye_blend_right", "eye_occlusion_left", "eye_occlusion_right", "eyelashes_left",
        "eyelashes_right")]))]
    base = np.zeros(len(head.data.vertices) * 3, np.float32)
    keys["Basis"].data.foreach_get("co", base)
    C = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]) * 0.01
    np.testing.assert_allclose(base.reshape(-1, 3), d["neutral"][keep] @ C.T, atol=1e-5)
    for n in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight"):
        kc = np.zeros_like(base)
        keys[n].data.foreach_get("co", kc)
        np.testing.assert_allclose(kc.reshape(-1, 3) - base.reshape(-1, 3),
                                   d["deltas"][names.index(n)][keep] @ C.T, atol=1e-5)
    assert len(head.data.shape_keys.animation_data.drivers) == 52
    rig = bpy.data.objects["Mvf Subject_rig"]
    assert all(rig[n] == 0.0 for n in ARKIT_52)  # the saved scene opens neutral
    assert bpy.context.scene.camera.name.startswith("Mvf Subject_cam_")
    assert {b.name for b in rig.data.bones} == {"root", "neck", "head", "jaw", "eye.L", "eye.R"}
    assert {"browInnerUp", "cheekPuff", "tongueOut", "jawOpen"} <= set(rig.keys())
    cams = sorted((o for o in coll.objects if o.type == "CAMERA"), key=lambda o: o["faceforge_view_index"])
    assert len(cams) == len(doc["views"]) == 3
    for cam, view in zip(cams, doc["views"]):
        w, h = view["width"], view["height"]
        assert cam.data.lens == pytest.approx(view["camera"]["fx"] * cam.data.sensor_width / max(w, h), rel=1e-5)
        bg = cam.data.background_images[0]
        assert cam.data.show_background_images and bg.image is not None and tuple(bg.image.size) == (w, h)
        assert bg.image.filepath.endswith(Path(view["image"]).name)
    # The recovered cameras reproject the fitted landmarks' vertices like the OpenCV cameras (< 1 px).
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from face_reconstruct_addon import importer

    sample = d["neutral"][::997]
    for cam, view in zip(cams, doc["views"]):
        importer.apply_view(rig, cam, bpy.context.scene)
        c, w, h = view["camera"], view["width"], view["height"]
        xc = sample @ np.array(c["R"]).T + np.array(c["t"])
        uv_cv = np.stack([c["fx"] * xc[:, 0] / xc[:, 2] + c["cx"], c["fy"] * xc[:, 1] / xc[:, 2] + c["cy"]], 1)
        uv_bl = np.array([(p.x * w - 0.5, (1 - p.y) * h - 0.5) for p in
                          (world_to_camera_view(bpy.context.scene, cam, Vector(q)) for q in sample @ C.T)])
        assert np.abs(uv_bl - uv_cv).max() < 1.0, cam.name
    # The saved scene opens neutral, lit, looking through the first view; its expression is one click away.
    assert bpy.context.scene.world is not None and bpy.context.scene.render.engine == "CYCLES"
    unpacked = [(img.name, img.filepath) for img in bpy.data.images if img.source == "FILE" and not img.packed_file]
    assert unpacked == [], unpacked  # textures and photos packed by default
    importer.apply_view(rig, cams[0], bpy.context.scene)
    for n, wgt in doc["views"][0]["arkit"].items():
        if not n.startswith("eyeLook"):  # those come from the view's gaze (same angles, In/Out netted)
            assert rig[n] == pytest.approx(wgt, abs=1e-6)
    skin = head.data.materials[0]
    assert any(n.type == "TEX_IMAGE" and n.image for n in skin.node_tree.nodes) == ("albedo" in doc["files"])


def test_esc_mid_run_leaves_nothing(bpy_clean, tmp_path, monkeypatch):
    bpy = bpy_clean
    from face_reconstruct_addon import jobs

    _add_photos(bpy)
    s = bpy.context.scene.faceforge
    s.texture_size = "512"  # output_dir empty: a temporary folder the runner must remove again
    before = _object_counts(bpy)
    ctx, op = FakeContext(bpy), _operator_instance()
    from face_reconstruct_addon import compat

    monkeypatch.setattr(compat, "is_background", lambda: False)
    assert op.invoke(ctx, Event("LEFTMOUSE", "PRESS")) == {"RUNNING_MODAL"}
    runner = op._runner
    pid, out = runner.job.client.pid, runner.output
    # Esc as soon as the backend reports real work.
    _drive_modal(op, ctx, until=lambda: runner.job.stage not in ("starting", "load"), timeout=120)
    assert runner.state == jobs.RUNNING, (runner.state, runner.error)
    assert op.modal(ctx, Event("ESC", "PRESS")) == {"RUNNING_MODAL"}  # Esc is consumed, not passed on
    assert _drive_modal(op, ctx, timeout=120) == {"CANCELLED"}
    assert op.reports[-1] == ("WARNING", "FaceForge: cancelled")
    assert ctx.window_manager.removed == ctx.window_manager.timers
    assert runner.state == jobs.CANCELLED and s.stage == "Cancelled" and not s.running
    assert _object_counts(bpy) == before
    from face_reconstruct_addon import client

    # The backend answered the cancel, so it stays warm; shutting it down leaves nothing.
    assert orphan_servers() == client.warm_pids()
    client.shutdown_warm()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert orphan_servers() == []
    assert not out.exists() and not out.parent.exists()  # no bundle, no temp folder


def test_operator_blocking_path_and_backend_error(bpy_clean, tmp_path):
    """execute() (what `blender -b` runs): a photo with no face gives the backend's one-line error in
    the operator report (RuntimeError from bpy.ops carries it) and leaves nothing behind."""
    bpy = bpy_clean
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    assert bpy.ops.faceforge.photo_add_folder(directory=str(tmp_path)) == {"FINISHED"}
    s = bpy.context.scene.faceforge
    s.texture_size, s.output_dir = "0", str(tmp_path / "out")
    before = _object_counts(bpy)
    with pytest.raises(RuntimeError) as ei:
        bpy.ops.faceforge.reconstruct()
    msg = str(ei.value)
    assert "blank.png" in msg and "face" in msg.lower(), msg
    assert s.last_error and "blank.png" in s.last_error and not s.running
    from face_reconstruct_addon import client

    assert _object_counts(bpy) == before and orphan_servers() == client.warm_pids()
    client.shutdown_warm()
    assert orphan_servers() == []


def test_missing_backend_python_is_reported(bpy_clean, tmp_path):
    bpy = bpy_clean
    prefs = bpy.context.preferences.addons["face_reconstruct_addon"].preferences
    prefs.python_path = str(tmp_path / "no-such-python")
    bpy.context.scene.faceforge.photos.add().filepath = str(PHOTOS / "front.jpg")
    with pytest.raises(RuntimeError, match="no-such-python: backend Python not found"):
        bpy.ops.faceforge.reconstruct()
    with pytest.raises(RuntimeError, match="no-such-python"):
        bpy.ops.faceforge.check_backend()


def test_disabling_addon_mid_run_ends_backend(bpy_clean):
    bpy = bpy_clean
    import addon_utils

    from face_reconstruct_addon import jobs

    _add_photos(bpy)
    bpy.context.scene.faceforge.texture_size = "512"
    runner = jobs.Runner()
    runner.start(bpy.context)
    out = runner.output
    assert runner.job.client.alive()
    addon_utils.disable("face_reconstruct_addon", default_set=True)  # unregister() must stop the job
    assert not runner.job.client.alive() and orphan_servers() == []
    assert jobs.ACTIVE["runner"] is None and not out.parent.exists()
    enable_addon(bpy)  # the fixture's teardown disables it again


def test_cancel_button_mid_run(bpy_clean, tmp_path):
    """The panel's Cancel button (faceforge.cancel) stops the running job the same way."""
    bpy = bpy_clean
    from face_reconstruct_addon import jobs

    _add_photos(bpy)
    bpy.context.scene.faceforge.texture_size = "512"
    before = _object_counts(bpy)
    runner = jobs.Runner()
    runner.start(bpy.context)
    t0 = time.monotonic()
    while runner.tick(bpy.context) == jobs.RUNNING and runner.job.stage in ("starting", "load"):
        time.sleep(0.02)
        assert time.monotonic() - t0 < 120
    assert bpy.ops.faceforge.cancel() == {"FINISHED"}
    while runner.tick(bpy.context) == jobs.RUNNING:
        time.sleep(0.05)
        assert time.monotonic() - t0 < 120
    from face_reconstruct_addon import client

    assert runner.state == jobs.CANCELLED and _object_counts(bpy) == before
    assert orphan_servers() == client.warm_pids()
    client.shutdown_warm()
    assert orphan_servers() == []
    assert not runner.output.parent.exists()
