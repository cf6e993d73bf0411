"""Importer-only tests: a bundle written by the real backend.bundle.write_bundle (random identity,
made-up cameras, sample photos) imported with the real bpy module. No torch, a few seconds."""
from __future__ import annotations

import numpy as np
import pytest

from conftest_blender import bpy_clean, bpy_module, make_bundle, result_json  # noqa: F401 (fixtures)

N_VERTS, N_FACES = 26719, 26384


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "subject_a", subject="Subject A")


def _pieces(out):
    return [out["head"], *out["eyes"]]


def test_mesh_counts_uvs_materials(bpy_clean, bundle):
    from face_reconstruct_addon import importer

    out = importer.import_bundle(bundle)
    pieces = _pieces(out)
    assert sum(len(o.data.vertices) for o in pieces) == N_VERTS
    assert sum(len(o.data.polygons) for o in pieces) == N_FACES
    head = out["head"].data
    sizes = np.zeros(len(head.polygons), np.int32)
    head.polygons.foreach_get("loop_total", sizes)
    assert (sizes == 4).sum() > 20000 and set(np.unique(sizes)) <= {3, 4}  # quads kept, not triangulated
    for o in pieces:
        assert o.data.uv_layers.active is not None
        smooth = np.zeros(len(o.data.polygons), bool)
        o.data.polygons.foreach_get("use_smooth", smooth)
        assert smooth.all()
    mats = [m.name for m in head.materials]
    assert len(mats) == 5 and all(m.startswith("Subject A_") for m in mats)
    skin = head.materials[0]
    imgs = {n.image.name for n in skin.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert {"albedo.png", "normal.png"} <= imgs
    # ICT's UDIM layout is kept; the baked layer squeezes tiles 1001-1002 into the 2:1 image.
    ict = np.zeros(len(head.loops) * 2, np.float32)
    baked = np.zeros_like(ict)
    head.uv_layers["UVMap"].data.foreach_get("uv", ict)
    head.uv_layers["UVMap_baked"].data.foreach_get("uv", baked)
    assert ict.reshape(-1, 2)[:, 0].max() > 2.0
    np.testing.assert_allclose(baked.reshape(-1, 2), ict.reshape(-1, 2) * [0.5, 1.0], atol=1e-6)
    assert head.uv_layers.active.name == "UVMap_baked" and head.uv_layers["UVMap_baked"].active_render
    bsdf = next(n for n in skin.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Base Color"].is_linked and bsdf.inputs["Normal"].is_linked
    assert out["collection"].name == "Subject A"
    assert {o.name for o in out["collection"].objects} >= {o.name for o in pieces}


def test_vertices_and_shape_keys_match_npz(bpy_clean, bundle):
    from face_reconstruct_addon import importer

    out = importer.import_bundle(bundle, apply_view_index=None)
    d = np.load(bundle / "blendshapes.npz")
    names, deltas, neutral = list(d["names"]), d["deltas"], d["neutral"]
    assert len(names) == 53
    parts = result_json(bundle)["model"]["parts"]
    head = out["head"]
    head_ids = np.ones(N_VERTS, bool)
    for p in ("eyeball_left", "eyeball_right"):
        head_ids[slice(*parts[p])] = False
    co = np.zeros(len(head.data.vertices) * 3, np.float32)
    head.data.vertices.foreach_get("co", co)
    expect = importer.to_blender(neutral[head_ids])
    np.testing.assert_allclose(co.reshape(-1, 3), expect, atol=1e-5)
    keys = head.data.shape_keys.key_blocks
    assert [k.name for k in keys][1:] == names
    for i, n in enumerate(names):
        kc = np.zeros(len(co), np.float32)
        keys[n].data.foreach_get("co", kc)
        np.testing.assert_allclose(kc.reshape(-1, 3) - expect, importer.to_blender(deltas[i][head_ids]), atol=1e-5)
    # ICT eyeballs carry no expression deltas, so the eye objects need no shape keys.
    assert np.abs(deltas[:, ~head_ids]).max() == 0
    for eye in out["eyes"]:
        assert eye.data.shape_keys is None


def test_rig_drivers_and_skinning(bpy_clean, bundle):
    bpy = bpy_clean
    from face_reconstruct_addon import importer
    from face_reconstruct_addon.tables import ARKIT_52

    out = importer.import_bundle(bundle, apply_view_index=None)
    rig, head = out["rig"], out["head"]
    assert {b.name for b in rig.data.bones} == {"root", "neck", "head", "jaw", "eye.L", "eye.R"}
    assert rig.data.bones["jaw"].parent.name == "head"
    names = [k.name for k in head.data.shape_keys.key_blocks][1:]
    # One property per shape key plus the ARKit names ICT splits or lacks.
    for n in set(names) | set(ARKIT_52):
        assert n in rig.keys(), n
    drivers = head.data.shape_keys.animation_data.drivers
    assert len(drivers) == len(names) == 53
    # browInnerUp (ARKit, combined) drives both ICT halves.
    fc = next(f for f in drivers if f.data_path == 'key_blocks["browInnerUpLeft"].value')
    assert sorted(v.targets[0].data_path for v in fc.driver.variables) == ['["browInnerUp"]', '["browInnerUpLeft"]']
    assert head.vertex_groups.keys() == ["head", "jaw", "neck"]
    assert out["eyes"][0].vertex_groups.keys() == ["eye.L"] and out["eyes"][1].vertex_groups.keys() == ["eye.R"]
    assert all(o.find_armature() == rig for o in _pieces(out))

    # Drive through the property and evaluate: the deformed head must be neutral + w * delta.
    d = np.load(bundle / "blendshapes.npz")
    rig["jawOpen"] = 0.5
    rig["browInnerUp"] = 0.4
    rig.update_tag()
    bpy.context.view_layer.update()
    deps = bpy.context.evaluated_depsgraph_get()
    ev = head.evaluated_get(deps).to_mesh()
    co = np.zeros(len(ev.vertices) * 3, np.float32)
    ev.vertices.foreach_get("co", co)
    head.evaluated_get(deps).to_mesh_clear()
    names_l = list(d["names"])
    parts = result_json(bundle)["model"]["parts"]
    keep = np.ones(N_VERTS, bool)
    for p in ("eyeball_left", "eyeball_right"):
        keep[slice(*parts[p])] = False
    want = d["neutral"] + 0.5 * d["deltas"][names_l.index("jawOpen")] + 0.4 * (
        d["deltas"][names_l.index("browInnerUpLeft")] + d["deltas"][names_l.index("browInnerUpRight")])
    np.testing.assert_allclose(co.reshape(-1, 3), importer.to_blender(want[keep]), atol=1e-4)
    # eyeLook* turn the eye bones: looking out/in moves both gazes towards the same world side.
    rig["eyeLookOutLeft"] = 1.0
    rig["eyeLookInRight"] = 1.0
    rig["eyeLookUpLeft"] = 0.5
    rig.update_tag()
    bpy.context.view_layer.update()
    gaze_l = rig.pose.bones["eye.L"].matrix.col[1].xyz
    gaze_r = rig.pose.bones["eye.R"].matrix.col[1].xyz
    assert gaze_l.x > 0.45 and gaze_r.x > 0.45  # towards +X, the subject's left (~30 degrees)
    assert gaze_l.z > 0.15 and abs(gaze_r.z) < 1e-6 and gaze_l.y < 0 and gaze_r.y < 0
    # Jaw weights follow the jaw: the chin is on the jaw bone, the forehead on the head bone.
    jaw_d = np.linalg.norm(d["deltas"][names_l.index("jawOpen")][keep], axis=1)
    chin = int(np.argmax(jaw_d))
    assert head.vertex_groups["jaw"].weight(chin) > 0.9


def test_cameras_project_like_opencv(bpy_clean, bundle):
    """The Blender camera must project a vertex where the OpenCV camera in result.json does (< 1 px)."""
    bpy = bpy_clean
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from face_reconstruct_addon import importer

    out = importer.import_bundle(bundle, apply_view_index=None)
    doc = result_json(bundle)
    neutral = np.load(bundle / "blendshapes.npz")["neutral"]
    sample = neutral[np.linspace(0, 9408, 50).astype(int)]  # face vertices
    scene = bpy.context.scene
    assert len(out["cameras"]) == len(doc["views"]) == 3
    for cam, view in zip(out["cameras"], doc["views"]):
        c = view["camera"]
        w, h = view["width"], view["height"]
        importer.apply_view(out["rig"], cam, scene)
        assert (scene.render.resolution_x, scene.render.resolution_y) == (w, h)
        assert cam.data.lens == pytest.approx(c["fx"] * cam.data.sensor_width / max(w, h))
        R, t = np.array(c["R"]), np.array(c["t"])
        xc = sample @ R.T + t
        uv_cv = np.stack([c["fx"] * xc[:, 0] / xc[:, 2] + c["cx"], c["fy"] * xc[:, 1] / xc[:, 2] + c["cy"]], 1)
        bl = importer.to_blender(sample)
        uv_bl = []
        for p in bl:
            ndc = world_to_camera_view(scene, cam, Vector(p))
            # normalised (0..1, y up, pixel edges) -> OpenCV pixels (y down, pixel centres)
            uv_bl.append((ndc.x * w - 0.5, (1.0 - ndc.y) * h - 0.5))
        err = np.abs(np.array(uv_bl) - uv_cv).max()
        assert err < 1.0, (cam.name, err)
        assert cam.data.show_background_images
        bg = cam.data.background_images[0].image
        assert bg is not None and tuple(bg.size) == (w, h)


def test_view_expression_switch(bpy_clean, bundle):
    from face_reconstruct_addon import importer

    doc = result_json(bundle)
    out = importer.import_bundle(bundle)  # applies view 0 by default
    rig = out["rig"]
    for n, w in doc["views"][0]["expression"].items():
        assert rig[n] == pytest.approx(w)
    from face_reconstruct_addon.importer import find_rig, view_cameras

    out["cameras"][1].name = "renamed camera"  # links are ID pointers, so renaming breaks nothing
    assert view_cameras(rig) == out["cameras"]
    assert all(find_rig(o) == rig for o in [rig, out["head"], *out["eyes"], *out["cameras"]])
    res = bpy_clean.ops.faceforge.apply_view(rig=rig.name, camera=out["cameras"][1].name)
    assert res == {"FINISHED"}
    for n, w in doc["views"][1]["expression"].items():
        assert rig[n] == pytest.approx(w)
    assert bpy_clean.context.scene.camera == out["cameras"][1]
    assert bpy_clean.ops.faceforge.reset_expression(rig=rig.name) == {"FINISHED"}
    assert all(rig[n] == 0.0 for n in doc["views"][1]["expression"])


def test_import_twice_keeps_both(bpy_clean, bundle):
    bpy = bpy_clean
    res = bpy.ops.faceforge.import_result(filepath=str(bundle / "result.json"))
    assert res == {"FINISHED"}
    first = {o.name for o in bpy.data.collections["Subject A"].objects}
    first_head = next(o for o in bpy.data.objects if o.name == "Subject A_head")
    first_co = first_head.data.vertices[100].co.copy()
    res = bpy.ops.faceforge.import_result(filepath=str(bundle))
    assert res == {"FINISHED"}
    colls = [c for c in bpy.data.collections if c.name.startswith("Subject A")]
    assert len(colls) == 2
    second = {o.name for o in colls[1].objects}
    assert first.isdisjoint(second) and len(first) == len(second) == 7  # head, 2 eyes, rig, 3 cameras
    assert {o.name for o in bpy.data.collections["Subject A"].objects} == first
    assert (first_head.data.vertices[100].co - first_co).length == 0
    # Each import drives its own head only.
    heads = [o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys]
    targets = {v.targets[0].id.name for h in heads for f in h.data.shape_keys.animation_data.drivers
               for v in f.driver.variables}
    assert len(targets) == 2


def test_bad_bundle_leaves_nothing(bpy_clean, bundle, tmp_path):
    import shutil

    bpy = bpy_clean
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    # Truncate the blendshapes to the wrong vertex count: detected after parsing, before building.
    d = dict(np.load(broken / "blendshapes.npz"))
    d["deltas"] = d["deltas"][:, :100]
    np.savez(broken / "blendshapes.npz", **d)
    before = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections))
    # An operator that reports an ERROR raises RuntimeError (carrying the message) when called from Python.
    with pytest.raises(RuntimeError, match="blendshapes.npz: 100 vertices, but the mesh has 26719"):
        bpy.ops.faceforge.import_result(filepath=str(broken / "result.json"))
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections)) == before
    with pytest.raises(RuntimeError, match="not a result folder"):
        bpy.ops.faceforge.import_result(filepath=str(tmp_path / "nothing" / "result.json"))


def test_rollback_on_failure_mid_build(bpy_clean, bundle, monkeypatch):
    """A failure after objects exist (here: while making cameras) removes everything created so far."""
    bpy = bpy_clean
    from face_reconstruct_addon import importer

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(importer, "_make_camera", boom)
    counts = lambda: (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.materials),  # noqa: E731
                      len(bpy.data.armatures), len(bpy.data.images), len(bpy.data.collections))
    before = counts()
    with pytest.raises(RuntimeError):
        importer.import_bundle(bundle)
    assert counts() == before
