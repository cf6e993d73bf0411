"""Video results in Blender without the video tracker: a photo bundle written by the real
backend.bundle.write_bundle plus a synthetic `animation` section (docs/result-bundle.md, "Animation")
with known expression curves and head poses; imported with the real bpy module, transferred to a
second head and to a plain mesh with ARKit shape keys, exported to Live Link Face CSV and glTF."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from conftest_blender import (bpy_clean, bpy_module, evaluated_world_co, look_at_R, make_bundle,  # noqa: F401
                              result_json)

N = 16            # tracked frames (31 video frames: the CSV crosses a second)
STEP = 2          # every 2nd video frame
FIRST = 4         # first tracked source-video frame
VIDEO_FPS = 30.0
REF = 3           # reference frame
CURVES = {"jawOpen": lambda k: 0.5 + 0.4 * np.sin(k / 2.0), "mouthSmileLeft": lambda k: k / (N - 1),
          "browInnerUpLeft": lambda k: 0.3 * (k % 3 == 0), "eyeBlinkRight": lambda k: 1.0 - k / (N - 1)}


# The rig's controls are the 52 ARKit names: browInnerUp = mean of ICT's halves (only the left one is animated).
CONTROL_CURVES = {"jawOpen": CURVES["jawOpen"], "mouthSmileLeft": CURVES["mouthSmileLeft"],
                  "eyeBlinkRight": CURVES["eyeBlinkRight"], "browInnerUp": lambda k: 0.5 * CURVES["browInnerUpLeft"](k)}


def _sym(expr, names):
    """Model weights as the ARKit rig reproduces them: each split shape's halves at their mean."""
    e = np.array(expr, np.float64)
    for whole in ("browInnerUp", "cheekPuff"):
        i, j = names.index(whole + "Left"), names.index(whole + "Right")
        e[..., i] = e[..., j] = (e[..., i] + e[..., j]) / 2
    return e


def _poses():
    R, t = [], []
    for k in range(N):
        # Camera in front of the face; the head turns / nods / moves a little over time.
        R.append(look_at_R(-12.0 + 2.5 * k, 4.0 * np.sin(k / 3.0)) @ _rot_z(np.radians(3.0 * np.cos(k))))
        t.append([0.4 * np.sin(k / 4.0), -1.0 + 0.1 * k, 60.0 - 0.5 * k])
    return np.array(R), np.array(t)


def _rot_z(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def make_video_bundle(out_dir, subject="Video A", seed=1, video=None):
    """A photo bundle + the animation section and animation.npz the video backend writes."""
    from backend.face_model import ARKIT_52, shape_names_to_arkit

    bundle = make_bundle(out_dir, subject=subject, seed=seed, textures=False)
    doc = result_json(bundle)
    names = doc["model"]["expression_names"]
    expr = np.zeros((N, len(names)), np.float32)
    for n, f in CURVES.items():
        expr[:, names.index(n)] = [f(k) for k in range(N)]
    R, t = _poses()
    arkit = np.array([[shape_names_to_arkit(dict(zip(names, map(float, row))))[a] for a in ARKIT_52] for row in expr])
    frame = FIRST + STEP * np.arange(N)
    np.savez(bundle / "animation.npz", frame=frame, time_s=frame / VIDEO_FPS, valid=np.ones(N, bool),
             expression=expr, arkit_names=np.array(ARKIT_52), arkit=arkit.astype(np.float32),
             R=R.astype(np.float32), t=t.astype(np.float32), reprojection_px=np.ones(N, np.float32))
    doc["animation"] = {
        "source_path": str(video or out_dir.parent / "missing.mp4"), "fps": VIDEO_FPS / STEP,
        "video_fps": VIDEO_FPS, "frame_step": STEP, "n_frames": N, "width": 320, "height": 240,
        "file": "animation.npz", "camera": {"fx": 400.0, "fy": 400.0, "cx": 159.5, "cy": 119.5},
        "reference_frame": REF, "identity_frames": [0, 5, 10], "smoothing": 0.0,
        "timings_s": {"decode": 0, "detect": 0, "identity": 0, "track": 0}, "tracking_fps": 10.0}
    (bundle / "result.json").write_text(json.dumps(doc))
    return bundle


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (320, 240))
    for i in range(FIRST + STEP * N):
        w.write(np.full((240, 320, 3), (i * 9) % 255, np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def vbundle(tmp_path_factory, video_file):
    return make_video_bundle(tmp_path_factory.mktemp("vb") / "video_a", video=video_file)


@pytest.fixture(scope="module")
def vbundle_novideo(tmp_path_factory):
    return make_video_bundle(tmp_path_factory.mktemp("vbn") / "video_b", subject="Video B", seed=2)


def _frames():
    return 1 + FIRST + STEP * np.arange(N)


def _npz(bundle):
    return np.load(bundle / "animation.npz"), np.load(bundle / "blendshapes.npz")


def test_import_keys_expression_and_head_pose(bpy_clean, vbundle):
    bpy = bpy_clean
    from face_reconstruct_addon import compat, importer

    out = importer.import_bundle(vbundle)
    rig, head, anim = out["rig"], out["head"], out["animation"]
    scene = bpy.context.scene
    frames = _frames()
    assert scene.render.fps / scene.render.fps_base == pytest.approx(VIDEO_FPS)
    assert (scene.frame_start, scene.frame_end) == (frames[0], frames[-1])
    assert anim["warnings"] == [] and scene.camera == anim["camera"]
    fcs = {(f.data_path, f.array_index): f for f in compat.id_fcurves(rig)}
    assert rig.animation_data.action == anim["action"]
    for n, f in CONTROL_CURVES.items():
        fc = fcs[(f'["{n}"]', 0)]
        co = np.array([tuple(k.co) for k in fc.keyframe_points])
        np.testing.assert_allclose(co[:, 0], frames)
        np.testing.assert_allclose(co[:, 1], [f(k) for k in range(N)], atol=1e-6)
    assert len(fcs[('pose.bones["head"].rotation_quaternion', 0)].keyframe_points) == N

    a, bs = _npz(vbundle)
    R, t = a["R"].astype(np.float64), a["t"].astype(np.float64)
    names = list(bs["names"])
    parts = result_json(vbundle)["model"]["parts"]
    keep = np.asarray(out["geometry"].piece("head").vertices)
    # Vertices fully on the head bone (top of the skull): no jaw or neck weight.
    vg = head.vertex_groups["head"].index
    sample = [v.index for v in head.data.vertices
              if len(v.groups) == 1 and v.groups[0].group == vg and v.groups[0].weight > 0.999][::400][:40]
    assert len(sample) >= 10
    rest_head = rig.data.bones["head"].matrix_local
    for k in (0, REF, 7, N - 1):
        scene.frame_set(int(frames[k]))
        # Bone: pose matrix = motion @ rest.
        motion = np.array(rig.pose.bones["head"].matrix @ rest_head.inverted())
        want_rot = importer.AXIS @ R[REF].T @ R[k] @ importer.AXIS.T
        np.testing.assert_allclose(motion[:3, :3], want_rot, atol=1e-5)
        np.testing.assert_allclose(motion[:3, 3], importer.AXIS @ R[REF].T @ (t[k] - t[REF]) * 0.01, atol=1e-6)
        # Deformed mesh (depsgraph): X(k) = R_ref^T (R_k X + t_k - t_ref), X with frame k's expression.
        X = bs["neutral"][keep].astype(np.float64) + np.tensordot(_sym(a["expression"][k], names),
                                                                  bs["deltas"][:, keep], 1)
        X = X[sample]
        want = importer.to_blender((R[REF].T @ (X @ R[k].T + t[k] - t[REF]).T).T)
        got = evaluated_world_co(bpy, head)[sample]
        np.testing.assert_allclose(got, want, atol=2e-5)
        if k == REF:
            np.testing.assert_allclose(motion, np.eye(4), atol=1e-6)
    # Between keys (frame_step 2) the controls interpolate.
    scene.frame_set(int(frames[2]) + 1)
    mid = 0.5 * (CURVES["jawOpen"](2) + CURVES["jawOpen"](3))
    assert rig.evaluated_get(bpy.context.evaluated_depsgraph_get())["jawOpen"] == pytest.approx(mid, abs=1e-5)


def test_video_camera_and_movie_clip(bpy_clean, vbundle, video_file):
    bpy = bpy_clean
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from face_reconstruct_addon import importer

    out = importer.import_bundle(vbundle)
    cam = out["animation"]["camera"]
    doc = result_json(vbundle)
    a, bs = _npz(vbundle)
    c = doc["animation"]["camera"]
    R, t = a["R"][REF].astype(np.float64), a["t"][REF].astype(np.float64)
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1280, 960)  # 320 x 240, scaled 4x
    # At the reference frame the head is at rest: model points project like the OpenCV camera.
    scene.frame_set(int(_frames()[REF]))
    X = bs["neutral"][np.linspace(0, 9000, 20).astype(int)].astype(np.float64)
    xc = X @ R.T + t
    uv = np.stack([c["fx"] * xc[:, 0] / xc[:, 2] + c["cx"], c["fy"] * xc[:, 1] / xc[:, 2] + c["cy"]], 1)
    got = []
    for p in importer.to_blender(X):
        ndc = world_to_camera_view(scene, cam, Vector(p))
        got.append((ndc.x * 320 - 0.5, (1 - ndc.y) * 240 - 0.5))
    assert np.abs(np.array(got) - uv).max() < 0.5
    bg = cam.data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip is not None
    assert bpy.path.abspath(bg.clip.filepath) == str(video_file) and bg.clip.frame_start == 1
    # The photo-view cameras are still the bundle's views, the video camera is not one of them.
    assert importer.view_cameras(out["rig"]) == out["cameras"] and cam not in out["cameras"]


def test_missing_video_warns(bpy_clean, vbundle_novideo):
    from face_reconstruct_addon import importer

    out = importer.import_bundle(vbundle_novideo)
    anim = out["animation"]
    assert len(anim["warnings"]) == 1 and "video not found" in anim["warnings"][0]
    assert len(anim["camera"].data.background_images) == 0
    res = bpy_clean.ops.faceforge.import_result(filepath=str(vbundle_novideo / "result.json"))
    assert res == {"FINISHED"}


def test_bad_animation_file_rolls_back(bpy_clean, vbundle, tmp_path):
    import shutil

    bpy = bpy_clean
    broken = tmp_path / "broken"
    shutil.copytree(vbundle, broken)
    d = dict(np.load(broken / "animation.npz"))
    d["expression"] = d["expression"][:, :10]
    np.savez(broken / "animation.npz", **d)
    before = (len(bpy.data.objects), len(bpy.data.actions), len(bpy.data.meshes))
    with pytest.raises(RuntimeError, match=r"animation.npz: expression is \(16, 10\)"):
        bpy.ops.faceforge.import_result(filepath=str(broken / "result.json"))
    assert (len(bpy.data.objects), len(bpy.data.actions), len(bpy.data.meshes)) == before


@pytest.fixture(scope="module")
def photo_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("pb") / "photo_b", subject="Photo B", seed=3, textures=False)


ARKIT_KEYS = ["JawOpen", "EyeBlinkRight", "mouth_smile_left", "BrowInnerUp", "browInnerUpLeft", "eyeBlink_L",
              "CheekPuff", "Custom"]


def _arkit_mesh(bpy, name="Avatar"):
    """A plain mesh (not FaceForge) with PascalCase / snake_case / _L style ARKit shape keys."""
    me = bpy.data.meshes.new(name)
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for n in ARKIT_KEYS:
        obj.shape_key_add(name=n, from_mix=False)
    return obj


def _curve(name, k):
    return CONTROL_CURVES[name](k) if name in CONTROL_CURVES else CURVES[name](k) if name in CURVES else 0.0


def _key_values(obj, frames):
    """Shape-key values at frames, from the Key's animation (F-curves evaluated)."""
    from face_reconstruct_addon import compat

    fcs = {fc.data_path: fc for fc in compat.id_fcurves(obj.data.shape_keys)}
    out = {}
    for kb in obj.data.shape_keys.key_blocks[1:]:
        fc = fcs.get(f'key_blocks["{kb.name}"].value')
        out[kb.name] = None if fc is None else np.array([fc.evaluate(f) for f in frames])
    return out


def test_transfer_animation_to_head_and_plain_mesh(bpy_clean, vbundle, photo_bundle):
    bpy = bpy_clean
    from face_reconstruct_addon import importer

    a = importer.import_bundle(vbundle)
    b = importer.import_bundle(photo_bundle)
    avatar = _arkit_mesh(bpy)
    frames = _frames()
    ks = np.arange(N)

    # Onto another FaceForge head: its rig controls (and head motion) are keyed.
    res = bpy.ops.faceforge.transfer_expression(source=a["rig"].name, target=b["head"].name, mode="ACTION")
    assert res == {"FINISHED"}
    scene = bpy.context.scene
    for k in (0, 5, N - 1):
        scene.frame_set(int(frames[k]))
        deps = bpy.context.evaluated_depsgraph_get()
        for n in ("jawOpen", "mouthSmileLeft", "browInnerUp", "eyeBlinkRight"):
            va = a["head"].data.shape_keys.key_blocks[n].value
            vb = b["head"].data.shape_keys.key_blocks[n].value
            assert va == pytest.approx(_curve(n, k), abs=1e-6) and vb == pytest.approx(va, abs=1e-6), (n, k)
        # Same head motion although the two rigs' head bones rest at different places.
        ma, mb = (r.evaluated_get(deps).pose.bones["head"].matrix @ r.data.bones["head"].matrix_local.inverted()
                  for r in (a["rig"], b["rig"]))
        np.testing.assert_allclose(np.array(ma), np.array(mb), atol=1e-5)

    # Onto a plain mesh with ARKit-named shape keys in several spellings.
    res = bpy.ops.faceforge.transfer_expression(source=a["head"].name, target=avatar.name, mode="ACTION")
    assert res == {"FINISHED"}
    vals = _key_values(avatar, frames)
    np.testing.assert_allclose(vals["JawOpen"], _curve("jawOpen", ks), atol=1e-6)
    np.testing.assert_allclose(vals["EyeBlinkRight"], _curve("eyeBlinkRight", ks), atol=1e-6)
    np.testing.assert_allclose(vals["mouth_smile_left"], _curve("mouthSmileLeft", ks), atol=1e-6)
    # The combined ARKit control stands in for a target's half.
    np.testing.assert_allclose(vals["browInnerUpLeft"], _curve("browInnerUp", ks), atol=1e-6)
    np.testing.assert_allclose(vals["BrowInnerUp"], _curve("browInnerUp", ks), atol=1e-6)
    np.testing.assert_allclose(vals["eyeBlink_L"], 0.0, atol=1e-6)
    assert vals["Custom"] is None
    # Per-frame keys really drive the mesh.
    scene.frame_set(int(frames[4]))
    assert avatar.data.shape_keys.key_blocks["JawOpen"].value == pytest.approx(_curve("jawOpen", 4), abs=1e-6)

    from face_reconstruct_addon import transfer

    result = transfer.transfer(transfer.source_from_head(a["rig"]), avatar, scene)
    assert result["unmatched"] == ["Custom"]
    assert result["matched"]["JawOpen"] == "jawOpen" and result["matched"]["eyeBlink_L"] == "eyeBlinkLeft"
    assert result["matched"]["BrowInnerUp"] == "browInnerUp"


def test_transfer_view_expression(bpy_clean, photo_bundle):
    bpy = bpy_clean
    from face_reconstruct_addon import importer

    b = importer.import_bundle(photo_bundle)
    avatar = _arkit_mesh(bpy)
    view = result_json(photo_bundle)["views"][1]["expression"]
    res = bpy.ops.faceforge.transfer_expression(source=b["rig"].name, target=avatar.name, mode="VIEW",
                                                view_index=1)
    assert res == {"FINISHED"}
    kb = avatar.data.shape_keys.key_blocks
    assert kb["JawOpen"].value == pytest.approx(view["jawOpen"], abs=1e-6)
    assert kb["BrowInnerUp"].value == pytest.approx((view["browInnerUpLeft"] + view["browInnerUpRight"]) / 2, abs=1e-6)
    assert avatar.data.shape_keys.animation_data is None  # a view is a pose, not animation
    # Onto another FaceForge head: its controls take the view's ARKit values.
    c = importer.import_bundle(photo_bundle, apply_view_index=None)
    assert bpy.ops.faceforge.transfer_expression(source=b["cameras"][1].name, target=c["rig"].name,
                                                 mode="VIEW") == {"FINISHED"}
    for n, w in result_json(photo_bundle)["views"][1]["arkit"].items():
        assert c["rig"][n] == pytest.approx(w, abs=1e-6), n
    with pytest.raises(RuntimeError, match="has no expression animation"):
        bpy.ops.faceforge.transfer_expression(source=b["rig"].name, target=avatar.name, mode="ACTION")


def test_livelink_csv_round_trip(bpy_clean, vbundle, photo_bundle, tmp_path):
    bpy = bpy_clean
    from face_reconstruct_addon import importer, livelink_csv

    a = importer.import_bundle(vbundle)
    csv_path = tmp_path / "take.csv"
    assert bpy.ops.faceforge.export_livelink_csv(filepath=str(csv_path), rig=a["rig"].name) == {"FINISHED"}
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(livelink_csv.HEADER) and lines[0].startswith("Timecode,BlendShapeCount,EyeBlinkLeft,")
    frames = _frames()
    n_rows = int(frames[-1] - frames[0] + 1)  # every scene frame, also between the tracked ones
    assert len(lines) == 1 + n_rows
    assert lines[1].split(",")[:2] == ["00:00:00:00.000", "61"] and lines[31].startswith("00:00:01:00.000")
    take = livelink_csv.read(csv_path)
    assert take.rate == 30.0
    np.testing.assert_allclose(take.times_s, np.arange(n_rows) / VIDEO_FPS, atol=1e-9)
    jaw = np.array(take.values["JawOpen"])
    np.testing.assert_allclose(jaw[::STEP], _curve("jawOpen", np.arange(N)), atol=1e-7)
    np.testing.assert_allclose(take.values["BrowInnerUp"][::STEP], 0.5 * _curve("browInnerUpLeft", np.arange(N)),
                               atol=1e-7)
    yaw = np.array(take.values["HeadYaw"])
    assert abs(yaw[STEP * REF]) < 1e-6 and np.ptp(yaw) > np.radians(10)  # the synthetic head turns ~27 deg

    # Import the take onto a plain mesh and onto another head: same values on the same scene frames.
    avatar = _arkit_mesh(bpy)
    assert bpy.ops.faceforge.import_livelink_csv(filepath=str(csv_path), target=avatar.name) == {"FINISHED"}
    every = np.arange(frames[0], frames[-1] + 1)
    vals = _key_values(avatar, every)
    np.testing.assert_allclose(vals["JawOpen"], jaw, atol=1e-7)
    np.testing.assert_allclose(vals["eyeBlink_L"], take.values["EyeBlinkLeft"], atol=1e-7)
    b = importer.import_bundle(photo_bundle)
    assert bpy.ops.faceforge.import_livelink_csv(filepath=str(csv_path), target=b["head"].name) == {"FINISHED"}
    scene = bpy.context.scene
    for k in (1, 6):
        scene.frame_set(int(frames[k]))
        key = b["head"].data.shape_keys.key_blocks
        assert key["jawOpen"].value == pytest.approx(_curve("jawOpen", k), abs=1e-6)
        assert key["browInnerUp"].value == pytest.approx(_curve("browInnerUp", k), abs=1e-6)


def test_livelink_csv_format_details(tmp_path):
    from face_reconstruct_addon import livelink_csv as ll

    assert len(ll.SHAPES) == 52 and len(ll.HEADER) == 63
    assert ll.HEADER[16:20] == ["JawForward", "JawRight", "JawLeft", "JawOpen"]
    assert ll.format_timecode(45 / 60, 60) == "00:00:00:45.000"
    assert ll.format_timecode(3661.5, 30) == "01:01:01:15.000"
    assert ll.format_timecode(1 / 29.97, 29.97) == "00:00:00:01.001"
    assert ll.parse_timecode("14:03:52:28.207") == (14 * 3600 + 3 * 60 + 52, 28.207)
    # A phone take: wall-clock timecodes at 60 fps, lower-case header spelling, no angle columns.
    p = tmp_path / "phone.csv"
    rows = ["Timecode,BlendshapeCount,EyeBlinkLeft,JawOpen"]
    for i in range(90):
        f = 50 + i
        rows.append(f"10:00:{f // 60:02d}:{f % 60:02d}.500,2,{i / 100:.3f},0.25")
    p.write_text("\n".join(rows) + "\n")
    take = ll.read(p)
    assert take.rate == 60.0 and len(take) == 90
    np.testing.assert_allclose(take.times_s, np.arange(90) / 60.0, atol=1e-9)
    assert take.values["JawOpen"][3] == 0.25 and set(take.values) == {"EyeBlinkLeft", "JawOpen"}
    # Shorter than a second: the caller's rate is used.
    short = tmp_path / "short.csv"
    short.write_text("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,0\n00:00:00:12.000,1,1\n")
    assert ll.read(short, rate_hint=24).times_s == [0.0, 0.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,jaw\n1,2\n")
    with pytest.raises(ll.CSVFormatError, match="no Timecode column"):
        ll.read(bad)


def _glb(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen = struct.unpack("<I", data[12:16])[0]
    doc = json.loads(data[20:20 + jlen])
    bin_chunk = data[20 + jlen + 8:]

    def accessor(i):
        acc = doc["accessors"][i]
        view = doc["bufferViews"][acc["bufferView"]]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        return np.frombuffer(bin_chunk, np.float32, acc["count"] * width, start).reshape(acc["count"], width)

    return doc, accessor


def test_glb_export_morph_targets_and_animation(bpy_clean, vbundle, tmp_path):
    bpy = bpy_clean
    from face_reconstruct_addon import compat, importer

    from face_reconstruct_addon.io.arkit import ARKIT_52

    a = importer.import_bundle(vbundle)
    importer.import_bundle(vbundle)  # a second head in the scene: not exported with the first
    path = tmp_path / "head.glb"
    assert bpy.ops.faceforge.export_glb(filepath=str(path), rig=a["rig"].name, compression="NONE") == {"FINISHED"}
    doc, accessor = _glb(path)
    names = ARKIT_52
    head_mesh = next(i for i, m in enumerate(doc["meshes"]) if m.get("extras", {}).get("targetNames") == ARKIT_52)
    assert all(len(p["targets"]) == 52 for p in doc["meshes"][head_mesh]["primitives"])
    joints = [doc["nodes"][j]["name"] for s in doc["skins"] for j in s["joints"]]
    assert len(doc["skins"]) >= 1 and len(set(joints)) == 6  # one rig: root, neck, head, jaw, eye.L, eye.R
    assert all(n["name"].startswith(a["collection"].name) or n["name"] in joints for n in doc["nodes"])
    head_node = next(i for i, n in enumerate(doc["nodes"]) if n.get("mesh") == head_mesh)
    bone_node = next(i for i, n in enumerate(doc["nodes"]) if n.get("name") == "head")
    assert len(doc["animations"]) == 1  # rig action + baked shape keys merged into one animation
    anim = doc["animations"][0]
    chans = {(c["target"]["node"], c["target"]["path"]): anim["samplers"][c["sampler"]] for c in anim["channels"]}
    n_frames = int(_frames()[-1] - _frames()[0] + 1)
    weights = chans[(head_node, "weights")]
    times = accessor(weights["input"])[:, 0]
    assert len(times) == n_frames
    np.testing.assert_allclose(times, np.arange(n_frames) / VIDEO_FPS, atol=1e-4)
    w = accessor(weights["output"]).reshape(n_frames, 52)
    np.testing.assert_allclose(w[::STEP, names.index("jawOpen")], _curve("jawOpen", np.arange(N)), atol=1e-5)
    np.testing.assert_allclose(w[::STEP, names.index("eyeBlinkRight")], _curve("eyeBlinkRight", np.arange(N)),
                               atol=1e-5)
    assert len(accessor(chans[(bone_node, "rotation")]["input"])) == n_frames
    # The scene is as before: drivers back, no leftover shape-key animation.
    key = a["head"].data.shape_keys
    assert len(key.animation_data.drivers) == 52 and key.animation_data.action is None
    assert len(a["animation"]["action"].slots) == 1
    assert not [fc for fc in compat.id_fcurves(a["rig"]) if fc.data_path.startswith("key_blocks")]
    bpy.context.scene.frame_set(int(_frames()[5]))
    assert key.key_blocks["jawOpen"].value == pytest.approx(_curve("jawOpen", 5), abs=1e-6)


def test_run_py_bundle_transfer_exports(tmp_path, vbundle, photo_bundle):
    """run.py as a user runs it (subprocess, bpy module): a photo result gets a video result's
    animation, then .blend, .glb and Live Link Face .csv are written."""
    import subprocess
    import sys

    from conftest_blender import REPO
    from face_reconstruct_addon import livelink_csv

    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "run.py"), "--from-bundle", str(photo_bundle),
                        "--transfer-from", str(vbundle), "--output", str(out / "h.blend"),
                        "--export-glb", str(out / "h.glb"), "--export-csv", str(out / "h.csv")],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "transferred Photo B_rig: 52 matched; 16 frame(s)" in r.stderr  # the 52 ARKit controls
    assert (out / "h.blend").is_file()
    take = livelink_csv.read(out / "h.csv")
    n_rows = int(_frames()[-1] - _frames()[0] + 1)
    assert len(take) == n_rows
    np.testing.assert_allclose(take.values["JawOpen"][::STEP], _curve("jawOpen", np.arange(N)), atol=1e-7)
    doc, accessor = _glb(out / "h.glb")
    weights = [c for a in doc["animations"] for c in a["channels"] if c["target"]["path"] == "weights"]
    # Only the target head: its head, lower teeth and tongue meshes (the imported source head is not exported).
    assert sorted(doc["nodes"][c["target"]["node"]]["name"] for c in weights) == \
        ["Photo B_head", "Photo B_teeth_lower", "Photo B_tongue"]
    r = subprocess.run([sys.executable, str(REPO / "run.py"), "--from-bundle", str(tmp_path / "nope"),
                        "--output", str(out / "x.blend")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("not a result folder (no result.json)")


class _Layout:
    """Stands in for bpy.types.UILayout: checks that every drawn property and operator exists."""

    def __init__(self, bpy):
        self.bpy = bpy
        self.ops = []

    def __getattr__(self, name):  # row(), column(), box(), label(), ... -> a sub-layout
        return lambda *a, **k: self

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, name

    def operator(self, idname, **kw):
        mod, op = idname.split(".")
        rna = getattr(getattr(self.bpy.ops, mod), op).get_rna_type()
        self.ops.append(idname)

        class Props:
            def __setattr__(self, key, value):
                assert key in rna.properties, (idname, key)

        return Props()


def test_panels_draw(bpy_clean, vbundle_novideo):
    bpy = bpy_clean
    from face_reconstruct_addon import importer, ui

    out = importer.import_bundle(vbundle_novideo)
    bpy.context.view_layer.objects.active = out["head"]
    ctx = bpy.context
    for panel_cls, settings in ((ui.FACEFORGE_PT_transfer, ("HEAD", "VIEW")),
                                (ui.FACEFORGE_PT_transfer, ("CSV", "ACTION")),
                                (ui.FACEFORGE_PT_views, None), (ui.FACEFORGE_PT_reconstruct, None)):
        if settings:
            ctx.scene.faceforge.transfer_source_type, ctx.scene.faceforge.transfer_mode = settings
        layout = _Layout(bpy)
        panel_cls.draw(type("P", (), {"layout": layout})(), ctx)
        assert layout.ops
    assert "faceforge.transfer_expression" in _draw_ops(bpy, ui.FACEFORGE_PT_transfer)
    assert "faceforge.video_choose" in _draw_ops(bpy, ui.FACEFORGE_PT_reconstruct)


def _draw_ops(bpy, panel_cls):
    layout = _Layout(bpy)
    panel_cls.draw(type("P", (), {"layout": layout})(), bpy.context)
    return layout.ops


def test_glb_sparse_and_draco_round_trip(bpy_clean, tmp_path):
    """The morph-target forms of Export Head as glTF: sparse and Draco read back by Blender's glTF importer keep
    the head's jawOpen and eyeBlinkLeft deltas (matched by position: the importer splits UV seams); sparse is
    smaller than dense, and Draco (base meshes compressed, targets sparse) smaller again."""
    bpy = bpy_clean
    from face_reconstruct_addon import importer

    out = importer.import_bundle(make_bundle(tmp_path / "b", textures=False))
    head = out["head"]
    co0 = _co(head)
    want = {n: _deltas(head, n) for n in ("jawOpen", "eyeBlinkLeft")}
    sizes = {}
    for form in ("NONE", "SPARSE", "DRACO"):
        path = tmp_path / f"{form}.glb"
        assert bpy.ops.faceforge.export_glb(filepath=str(path), rig=out["rig"].name, compression=form,
                                            animations=False) == {"FINISHED"}
        sizes[form] = path.stat().st_size
        doc, _ = _glb(path)
        targets = [t for m in doc["meshes"] for p in m["primitives"] for t in p.get("targets", [])]
        n_sparse = sum("sparse" in doc["accessors"][i] for t in targets for i in t.values())
        assert (n_sparse > 0) == (form != "NONE"), form
        assert any("KHR_draco_mesh_compression" in p.get("extensions", {})
                   for m in doc["meshes"] for p in m["primitives"]) == (form == "DRACO")
    for form in ("SPARSE", "DRACO"):  # dense accessors are the importer's everyday case
        bpy.ops.wm.read_factory_settings(use_empty=True)
        assert bpy.ops.import_scene.gltf(filepath=str(tmp_path / f"{form}.glb")) == {"FINISHED"}
        back = max((o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys),
                   key=lambda o: len(o.data.vertices))
        co = _co(back)
        # Nearest original vertex of each imported one (brute force in chunks: no scipy needed).
        idx = np.concatenate([np.argmin(((c[:, None] - co0[None]) ** 2).sum(-1), 1) for c in np.array_split(co, 64)])
        assert np.abs(co - co0[idx]).max() < 2e-5, form  # Draco quantises positions to 14 bits: 1.7e-5 m
        for n, w in want.items():
            # Measured: 4e-6 m (Draco), 1e-7 m (sparse); the largest jawOpen delta is 3.5 cm.
            assert np.abs(_deltas(back, n) - w[idx]).max() < 2e-5, (form, n)
    # Measured on this head (no skin textures): dense 25.2 MB, sparse 18.7, Draco 17.4 (tools/measure_exports.py
    # gives a textured head's sizes, docs/benchmarks.md).
    assert sizes["DRACO"] < sizes["SPARSE"] < 0.85 * sizes["NONE"], sizes


def _co(obj) -> np.ndarray:
    co = np.zeros(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _deltas(obj, name: str) -> np.ndarray:
    kb = obj.data.shape_keys.key_blocks
    base, co = np.zeros(len(obj.data.vertices) * 3, np.float32), np.zeros(len(obj.data.vertices) * 3, np.float32)
    kb[0].data.foreach_get("co", base)
    kb[name].data.foreach_get("co", co)
    return (co - base).reshape(-1, 3)
