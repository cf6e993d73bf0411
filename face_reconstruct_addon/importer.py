"""Build Blender objects from a FaceForge result bundle (docs/result-bundle.md).

Everything goes into a new collection named after the subject; datablock names are left to
Blender's uniqueness rules and nothing is looked up by name, so importing twice gives two
independent copies. If anything fails half way, every datablock created so far is removed.
"""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import animation, compat
from .tables import control_map

SCHEMA = "faceforge.result"
SCHEMA_VERSION = 1
# Model space (cm, +Y up, +Z out of the face) -> Blender (m, +Z up, face looking down -Y).
AXIS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SCALE = 0.01
EYE_PARTS = {"eyeball_left": "L", "eyeball_right": "R"}
# Material slot of each model part on the head object.
SLOTS = {
    "skin": ["face", "head_neck", "eye_socket_left", "eye_socket_right"],
    "mouth": ["mouth_socket", "gums_tongue"],
    "teeth": ["teeth"],
    "eye_wet": ["lacrimal_left", "lacrimal_right", "eye_blend_left", "eye_blend_right",
                "eye_occlusion_left", "eye_occlusion_right"],
    "eyelashes": ["eyelashes_left", "eyelashes_right"],
}
# The baked images hold the skin's UDIM tiles side by side (1001 face, 1002 scalp/neck): an image W
# wide and H high covers u in [0, W/H]. A second UV layer with u scaled by H/W samples them as-is in
# every engine (Workbench and glTF ignore Mapping nodes; Workbench samples the active UV layer).
BAKED_UV = "UVMap_baked"
SLOT_COLORS = {"skin": (0.8, 0.62, 0.52, 1.0), "mouth": (0.55, 0.2, 0.2, 1.0), "teeth": (0.9, 0.88, 0.8, 1.0),
               "eye_wet": (1.0, 1.0, 1.0, 0.0), "eyelashes": (0.05, 0.04, 0.03, 1.0),
               "eye": (0.92, 0.92, 0.9, 1.0)}


class BundleError(Exception):
    """A bundle the importer cannot read; str() is a one-line message naming the file."""


def to_blender(points_cm: np.ndarray) -> np.ndarray:
    return (np.asarray(points_cm, np.float64) @ AXIS.T) * SCALE


def camera_matrix_world(R, t) -> Matrix:
    """OpenCV extrinsics (x_cam = R X + t, cm) -> Blender camera world matrix (camera looks down -Z)."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    rot = AXIS @ R.T @ np.diag([1.0, -1.0, -1.0])
    loc = AXIS @ (-R.T @ t) * SCALE
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = loc
    return Matrix(m.tolist())


def camera_intrinsics(cam_data, camera: dict, width: int, height: int) -> None:
    """Focal length and principal point in pixels -> lens / shift with sensor fit AUTO.

    Blender maps the larger image side to the sensor width; OpenCV pixel (0, 0) is the centre of
    the top-left pixel, hence the +0.5 in the shifts.
    """
    big = max(width, height)
    cam_data.sensor_fit = "AUTO"
    cam_data.sensor_width = 36.0
    cam_data.lens = float(camera["fx"]) * cam_data.sensor_width / big
    # A positive shift moves the frame (not the scene) right/up, i.e. the principal point left/down.
    cam_data.shift_x = (width / 2.0 - float(camera["cx"]) - 0.5) / big
    cam_data.shift_y = (float(camera["cy"]) + 0.5 - height / 2.0) / big


def read_bundle(path) -> tuple[Path, dict]:
    bundle = Path(path)
    if bundle.is_file() and bundle.name == "result.json":
        bundle = bundle.parent
    rj = bundle / "result.json"
    if not rj.is_file():
        raise BundleError(f"{bundle}: not a result folder (no result.json)")
    try:
        doc = json.loads(rj.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{rj}: unreadable ({e})") from e
    if doc.get("schema") != SCHEMA:
        raise BundleError(f"{rj}: not a FaceForge result (schema {doc.get('schema')!r})")
    if int(doc.get("schema_version", 0)) > SCHEMA_VERSION:
        raise BundleError(f"{rj}: schema version {doc['schema_version']} is newer than this add-on "
                          f"(reads {SCHEMA_VERSION}); update the add-on")
    return bundle, doc


def parse_obj(path: Path):
    """Vertices (N,3), uvs (U,2), polygon sizes, flat vertex ids, flat uv ids, group name per polygon."""
    verts, uvs, sizes, fv, ft, groups = [], [], [], [], [], []
    group = ""
    try:
        text = path.read_text()
    except OSError as e:
        raise BundleError(f"{path}: cannot read the mesh ({e.strerror or e})") from e
    for line in text.splitlines():
        if line.startswith("v "):
            verts.append(line[2:].split())
        elif line.startswith("vt "):
            uvs.append(line[3:].split()[:2])
        elif line.startswith("f "):
            items = line[2:].split()
            sizes.append(len(items))
            for it in items:
                p = it.split("/")
                fv.append(int(p[0]) - 1)
                ft.append(int(p[1]) - 1 if len(p) > 1 and p[1] else -1)
            groups.append(group)
        elif line.startswith("g "):
            group = line[2:].strip()
    if not verts or not sizes:
        raise BundleError(f"{path}: mesh has no vertices or faces")
    return (np.array(verts, np.float64), np.array(uvs, np.float64).reshape(-1, 2), np.array(sizes, np.int64),
            np.array(fv, np.int64), np.array(ft, np.int64), np.array(groups))


class _Created:
    """Datablocks made by one import, removed again if the import fails."""

    def __init__(self):
        self.items = []

    def add(self, coll, idb):
        self.items.append((coll, idb))
        return idb

    def rollback(self):
        for coll, idb in reversed(self.items):
            try:
                coll.remove(idb)
            except (ReferenceError, RuntimeError):
                pass


def _make_mesh(name, verts_bl, sizes, fv, ft, uvs):
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts_bl))
    me.vertices.foreach_set("co", verts_bl.astype(np.float32).ravel())
    me.loops.add(len(fv))
    me.loops.foreach_set("vertex_index", fv.astype(np.int32))
    me.polygons.add(len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    me.polygons.foreach_set("loop_start", starts)
    if len(uvs) and (ft >= 0).all():
        layer = me.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", uvs[ft].astype(np.float32).ravel())
    me.update(calc_edges=True)
    if me.validate(verbose=False):
        # validate() returns True when it had to fix something: the OBJ was inconsistent.
        raise BundleError(f"{name}: mesh data was invalid and had to be repaired")
    compat.set_smooth(me)
    return me


def _material(created, name, color, images=None):
    mat = created.add(bpy.data.materials, compat.new_material_node_tree(name))
    mat.diffuse_color = color  # Workbench / solid view colour
    nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
        nt.links.new(bsdf.outputs[0], out.inputs[0])
    compat.principled_input(bsdf, "Base Color").default_value = color
    if color[3] < 1.0:
        compat.principled_input(bsdf, "Alpha").default_value = color[3]
        if hasattr(mat, "surface_render_method"):
            mat.surface_render_method = "BLENDED"
    rough = compat.principled_input(bsdf, "Roughness")
    if rough is not None:
        rough.default_value = 0.55
    images = images or {}
    vector = None
    if images:
        uvn = nt.nodes.new("ShaderNodeUVMap")
        uvn.uv_map = BAKED_UV
        uvn.location = (-800, 0)
        vector = uvn.outputs["UV"]
    if "albedo" in images:
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.image = images["albedo"]
        tex.extension = "EXTEND"
        tex.location = (-400, 200)
        nt.links.new(vector, tex.inputs["Vector"])
        nt.links.new(tex.outputs["Color"], compat.principled_input(bsdf, "Base Color"))
    if "normal" in images:
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.image = images["normal"]
        tex.extension = "EXTEND"
        tex.location = (-600, -200)
        nt.links.new(vector, tex.inputs["Vector"])
        nm = nt.nodes.new("ShaderNodeNormalMap")
        nm.location = (-300, -200)
        nt.links.new(tex.outputs["Color"], nm.inputs["Color"])
        nt.links.new(nm.outputs["Normal"], compat.principled_input(bsdf, "Normal"))
    return mat


def _fit_jaw_pivot(neutral_cm, jaw_delta_cm):
    """Rotation centre of jawOpen in the model's y-z plane, from the strongly moving vertices.

    For a small rotation θ about the x axis through (cy, cz): dy = -θ (z - cz), dz = θ (y - cy),
    which is linear in (θ, θ cz, θ cy).
    """
    mag = np.linalg.norm(jaw_delta_cm, axis=1)
    sel = mag > 0.5 * mag.max()
    y, z = neutral_cm[sel, 1], neutral_cm[sel, 2]
    dy, dz = jaw_delta_cm[sel, 1], jaw_delta_cm[sel, 2]
    n = sel.sum()
    A = np.zeros((2 * n, 3))
    b = np.concatenate([dy, dz])
    A[:n, 0], A[:n, 1] = -z, 1.0
    A[n:, 0], A[n:, 2] = y, -1.0
    (theta, k1, k2), *_ = np.linalg.lstsq(A, b, rcond=None)
    if abs(theta) < 1e-6:
        return None
    return np.array([0.0, k2 / theta, k1 / theta])


def _build_rig(created, coll, name, neutral_cm, parts, deltas, names):
    """Armature with root, neck, head, jaw, eye.L, eye.R; returns (object, per-vertex weights dict)."""
    eye_c = {side: neutral_cm[slice(*parts[p])].mean(0) for p, side in EYE_PARTS.items() if p in parts}
    top = neutral_cm[:, 1].max()
    bottom = neutral_cm[:, 1].min()
    jaw_d = deltas[names.index("jawOpen")] if "jawOpen" in names else np.zeros_like(neutral_cm)
    chin = neutral_cm[np.argmax(np.linalg.norm(jaw_d, axis=1))]
    eye_mid = (eye_c["L"] + eye_c["R"]) / 2 if len(eye_c) == 2 else np.array([0.0, 3.5, 8.0])
    pivot = _fit_jaw_pivot(neutral_cm, jaw_d) if np.abs(jaw_d).max() > 0 else None
    # Fall back to a typical temporomandibular joint position if the fit is implausible.
    if pivot is None or not (bottom < pivot[1] < eye_mid[1] and -5.0 < pivot[2] < chin[2]):
        pivot = np.array([0.0, eye_mid[1] - 5.5, eye_mid[2] - 9.0])
    neck_top = np.array([0.0, pivot[1] - 2.0, pivot[2] - 1.0])
    neck_base = np.array([0.0, bottom, neck_top[2] - 1.0])

    arm = created.add(bpy.data.armatures, bpy.data.armatures.new(name + "_rig"))
    obj = created.add(bpy.data.objects, bpy.data.objects.new(name + "_rig", arm))
    coll.objects.link(obj)
    obj.show_in_front = True
    bpy.context.view_layer.update()
    # Edit bones need edit mode, which needs the object active in a view layer.
    vl = bpy.context.view_layer
    prev_active = vl.objects.active
    vl.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        eb = arm.edit_bones

        def bone(bname, head, tail, parent=None, deform=True):
            b = eb.new(bname)
            b.head = Vector(to_blender(head[None])[0])
            b.tail = Vector(to_blender(tail[None])[0])
            b.parent = parent
            b.use_deform = deform
            return b

        root = bone("root", neck_base * [0, 1, 1], neck_base * [0, 1, 1] + [0, 0, -5.0], deform=False)
        neck = bone("neck", neck_base, neck_top, root)
        head = bone("head", neck_top, np.array([0.0, top, neck_top[2]]), neck)
        head.use_connect = False
        bone("jaw", pivot, chin, head)
        for side in ("L", "R"):
            c = eye_c.get(side, eye_mid)
            bone(f"eye.{side}", c, c + [0, 0, 1.5], head)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        vl.objects.active = prev_active

    # Skin weights: lower-face vertices follow the jaw as much as they move with jawOpen; the lower
    # neck blends into the neck bone; everything else follows the head.
    mag = np.linalg.norm(jaw_d, axis=1)
    ref = np.percentile(mag[mag > 0.5 * mag.max()], 50) if mag.max() > 0 else 1.0
    w_jaw = np.clip(mag / ref, 0.0, 1.0)
    w_neck = np.clip((neck_top[1] - neutral_cm[:, 1]) / max(neck_top[1] - bottom, 1e-3), 0.0, 1.0) ** 2
    w_neck *= 1.0 - w_jaw
    w_head = 1.0 - w_jaw - w_neck
    return obj, {"head": w_head, "jaw": w_jaw, "neck": w_neck}


def _add_groups(obj, vids, weights):
    for gname, w in weights.items():
        vg = obj.vertex_groups.new(name=gname)
        ww = w[vids]
        for level in np.unique(np.round(ww, 3)):
            if level <= 0:
                continue
            idx = np.nonzero(np.round(ww, 3) == level)[0]
            vg.add(idx.tolist(), float(level), "REPLACE")


def _skin(obj, rig):
    obj.parent = rig
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = rig


def _add_driver(key, shape, rig, props):
    fc = key.key_blocks[shape].driver_add("value")
    drv = fc.driver
    drv.type = "SUM"
    for p in props:
        var = drv.variables.new()
        var.name = "v_" + "".join(ch if ch.isalnum() else "_" for ch in p)
        var.type = "SINGLE_PROP"
        var.targets[0].id_type = "OBJECT"
        var.targets[0].id = rig
        var.targets[0].data_path = f'["{p}"]'
    # A driver evaluated while still incomplete (no variables yet) is flagged invalid and then never
    # re-evaluated; it is complete now.
    drv.is_valid = True
    fc.is_valid = True
    return fc


# ARKit eyeLook* at 1.0 is roughly a 30 degree turn sideways and 25 degrees up/down.
EYE_YAW_RAD, EYE_PITCH_RAD = 0.52, 0.44


def _add_eye_drivers(rig, controls) -> None:
    """Turn the eye bones from the eyeLook* properties (ICT's eyeLook shapes only move the lids).

    The eye bones point out of the face (-Y) with roll 0, so their local Z is world up and a positive
    rotation about it turns the gaze towards world +X (the subject's left); positive X looks up.
    """
    for side, word in (("L", "Left"), ("R", "Right")):
        pb = rig.pose.bones.get(f"eye.{side}")
        if pb is None:
            continue
        pb.rotation_mode = "XYZ"
        toward_plus_x = f"eyeLookOut{word}" if side == "L" else f"eyeLookIn{word}"
        toward_minus_x = f"eyeLookIn{word}" if side == "L" else f"eyeLookOut{word}"
        for axis, (pos, neg, scale) in {0: (f"eyeLookUp{word}", f"eyeLookDown{word}", EYE_PITCH_RAD),
                                        2: (toward_plus_x, toward_minus_x, EYE_YAW_RAD)}.items():
            if pos not in controls or neg not in controls:
                continue
            fc = pb.driver_add("rotation_euler", axis)
            drv = fc.driver
            drv.type = "SCRIPTED"
            for name, prop in (("a", pos), ("b", neg)):
                var = drv.variables.new()
                var.name, var.type = name, "SINGLE_PROP"
                var.targets[0].id_type = "OBJECT"
                var.targets[0].id = rig
                var.targets[0].data_path = f'["{prop}"]'
            # A "simple expression": evaluated without Python, so it works with auto-run scripts off.
            drv.expression = f"(a - b) * {scale}"
            drv.is_valid = True
            fc.is_valid = True


def apply_view(rig, cam_obj, scene=None) -> None:
    """Set the rig's expression properties to the view's fitted expression, make the camera active
    and the render size that of its photo (so the camera background lines up)."""
    expr = cam_obj.get("faceforge_expression") or {}
    for p in rig.get("faceforge_controls", []):
        rig[p] = float(expr.get(p, 0.0))
    rig.update_tag()
    scene = scene or bpy.context.scene
    scene.camera = cam_obj
    w, h = cam_obj.get("faceforge_size", (0, 0))
    if w and h:
        scene.render.resolution_x, scene.render.resolution_y = int(w), int(h)
        scene.render.resolution_percentage = 100


def reset_expression(rig) -> None:
    for p in rig.get("faceforge_controls", []):
        rig[p] = 0.0
    rig.update_tag()


def import_bundle(path, context=None, apply_view_index: int | None = 0) -> dict:
    """Import a bundle; returns {"collection", "head", "eyes", "rig", "cameras"} (the objects)."""
    context = context or bpy.context
    bundle, doc = read_bundle(path)
    files = doc.get("files", {})
    mesh_path = bundle / files.get("mesh", "head.obj")
    bs_path = bundle / files.get("blendshapes", "blendshapes.npz")
    if not bs_path.is_file():
        raise BundleError(f"{bs_path}: blendshapes file is missing")
    verts_cm, uvs, sizes, fv, ft, groups = parse_obj(mesh_path)
    try:
        with np.load(bs_path) as d:
            names = [str(s) for s in d["names"]]
            deltas = d["deltas"].astype(np.float64)
    except Exception as e:  # zip / key errors from a damaged file
        raise BundleError(f"{bs_path}: unreadable ({e.__class__.__name__}: {e})") from e
    if deltas.shape[1] != len(verts_cm):
        raise BundleError(f"{bs_path}: {deltas.shape[1]} vertices, but the mesh has {len(verts_cm)}")
    parts = {k: tuple(v) for k, v in doc.get("model", {}).get("parts", {}).items()}
    subject = str(doc.get("subject") or bundle.name)

    created = _Created()
    try:
        out = _build(context, created, bundle, doc, subject, verts_cm, uvs, sizes, fv, ft, groups, names,
                     deltas, parts, files, apply_view_index)
    except BaseException:
        created.rollback()
        raise
    return out


def _build(context, created, bundle, doc, subject, verts_cm, uvs, sizes, fv, ft, groups, names, deltas, parts,
           files, apply_view_index):
    scene = context.scene
    coll = created.add(bpy.data.collections, bpy.data.collections.new(subject))
    scene.collection.children.link(coll)
    coll["faceforge_bundle"] = str(bundle)
    coll["faceforge_subject"] = subject

    images = {}
    for key, cs in (("albedo", "sRGB"), ("normal", "Non-Color")):
        if key in files and (bundle / files[key]).is_file():
            images[key] = created.add(bpy.data.images, compat.load_image(bundle / files[key], cs))

    # Split polygons: each eyeball becomes its own object, everything else is the head.
    starts = np.concatenate([[0], np.cumsum(sizes)])
    first_v = fv[starts[:-1]]
    eye_ranges = {side: parts[p] for p, side in EYE_PARTS.items() if p in parts}
    poly_piece = np.full(len(sizes), "", dtype=object)
    for side, (a, b) in eye_ranges.items():
        poly_piece[(first_v >= a) & (first_v < b)] = side
    vert_piece = np.full(len(verts_cm), "", dtype=object)
    for side, (a, b) in eye_ranges.items():
        vert_piece[a:b] = side

    rig, weights = _build_rig(created, coll, subject, verts_cm, parts, deltas, names)
    controls, drivers = control_map(names)
    for p in controls:
        rig[p] = 0.0
        rig.id_properties_ui(p).update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0,
                                       description=f"ARKit-style expression weight {p}")
    rig["faceforge_controls"] = controls
    # Setting ID properties from Python does not tag the depsgraph; without this the evaluated rig
    # lacks the properties, the drivers fail once and stay flagged invalid.
    rig.update_tag()

    slot_of_group = {g: i for i, (_, gs) in enumerate(SLOTS.items()) for g in gs}
    pieces = {}
    for piece in ("", "L", "R"):
        vids = np.nonzero(vert_piece == piece)[0]
        pids = np.nonzero(poly_piece == piece)[0]
        if len(pids) == 0:
            continue
        remap = np.full(len(verts_cm), -1, np.int64)
        remap[vids] = np.arange(len(vids))
        loop_sel = np.concatenate([np.arange(starts[p], starts[p + 1]) for p in pids])
        lv = remap[fv[loop_sel]]
        if (lv < 0).any():
            raise BundleError(f"{bundle}: a face of {piece or 'the head'} uses vertices of another part")
        oname = f"{subject}_head" if piece == "" else f"{subject}_eye.{piece}"
        me = created.add(bpy.data.meshes, _make_mesh(oname, to_blender(verts_cm[vids]), sizes[pids], lv,
                                                     ft[loop_sel], uvs))
        obj = created.add(bpy.data.objects, bpy.data.objects.new(oname, me))
        coll.objects.link(obj)
        obj["faceforge_vertex_ids"] = [int(vids[0]), int(vids[-1]) + 1] if piece else []
        if piece == "":
            for sname in SLOTS:
                me.materials.append(_material(created, f"{subject}_{sname}", SLOT_COLORS[sname],
                                              images if sname == "skin" else None))
            if images:
                w, h = next(iter(images.values())).size[:]
                scale = np.array([h / w if w else 1.0, 1.0])
                baked = me.uv_layers.new(name=BAKED_UV)
                baked.data.foreach_set("uv", (uvs[ft[loop_sel]] * scale).astype(np.float32).ravel())
                # Active too: Workbench's Texture colour reads the active layer. "UVMap" keeps ICT's
                # own UDIM layout for textures made elsewhere.
                baked.active_render = True
                me.uv_layers.active = baked
            mi = np.array([slot_of_group.get(g, 0) for g in groups[pids]], np.int32)
            me.polygons.foreach_set("material_index", mi)
            _add_groups(obj, vids, weights)
            _add_shape_keys(obj, verts_cm[vids], deltas[:, vids], names)
            for n in names:
                _add_driver(me.shape_keys, n, rig, drivers[n])
        else:
            me.materials.append(_material(created, f"{subject}_eye", SLOT_COLORS["eye"]))
            vg = obj.vertex_groups.new(name=f"eye.{piece}")
            vg.add(list(range(len(vids))), 1.0, "REPLACE")
            if np.abs(deltas[:, vids]).max() > 0:  # ICT eyeballs have no expression deltas today
                _add_shape_keys(obj, verts_cm[vids], deltas[:, vids], names)
                for n in names:
                    _add_driver(me.shape_keys, n, rig, drivers[n])
        _skin(obj, rig)
        pieces[piece] = obj

    _add_eye_drivers(rig, controls)

    cams = []
    for i, view in enumerate(doc.get("views", [])):
        cams.append(_make_camera(created, coll, bundle, subject, i, view, rig))
    coll["faceforge_rig"] = rig  # ID pointers, not names: renaming objects keeps the links intact
    anim = None
    if doc.get("animation"):
        anim = animation.import_animation(created, coll, bundle, doc, rig, names, scene)
        coll["faceforge_video_camera"] = anim["camera"]
    if cams and apply_view_index is not None and 0 <= apply_view_index < len(cams):
        apply_view(rig, cams[apply_view_index], scene)
    if anim is not None:
        # A video result opens on its first frame, seen through the video camera.
        apply_view(rig, anim["camera"], scene)
        scene.frame_set(anim["frame_start"])
    context.view_layer.update()
    return {"collection": coll, "head": pieces.get(""), "eyes": [pieces[s] for s in ("L", "R") if s in pieces],
            "rig": rig, "cameras": cams, "animation": anim}


def _add_shape_keys(obj, verts_cm, deltas_cm, names):
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    base = to_blender(verts_cm)
    for n, d in zip(names, deltas_cm):
        sk = obj.shape_key_add(name=n, from_mix=False)
        sk.data.foreach_set("co", (base + to_blender(d)).astype(np.float32).ravel())
        sk.slider_min, sk.slider_max = 0.0, 1.0
    obj.data.shape_keys.use_relative = True
    obj.active_shape_key_index = 0
    return basis


def _make_camera(created, coll, bundle, subject, i, view, rig):
    cam = view["camera"]
    w, h = int(view["width"]), int(view["height"])
    name = f"{subject}_cam_{view.get('name', i)}"
    data = created.add(bpy.data.cameras, bpy.data.cameras.new(name))
    camera_intrinsics(data, cam, w, h)
    dist = float(np.linalg.norm(cam["t"])) * SCALE
    data.clip_start = max(0.001, dist * 0.05)
    data.clip_end = max(10.0, dist * 20)
    obj = created.add(bpy.data.objects, bpy.data.objects.new(name, data))
    coll.objects.link(obj)
    obj.matrix_world = camera_matrix_world(cam["R"], cam["t"])
    img_path = bundle / view.get("image", "")
    if view.get("image") and img_path.is_file():
        img = created.add(bpy.data.images, compat.load_image(img_path))
        bg = data.background_images.new()
        bg.image = img
        bg.frame_method = "STRETCH"
        bg.alpha = 1.0
        data.show_background_images = True
    obj["faceforge_view_index"] = i
    obj["faceforge_rig"] = rig
    obj["faceforge_size"] = [w, h]
    obj["faceforge_fx_fy_cx_cy"] = [float(cam["fx"]), float(cam["fy"]), float(cam["cx"]), float(cam["cy"])]
    obj["faceforge_expression"] = {str(k): float(v) for k, v in view.get("expression", {}).items()}
    obj["faceforge_arkit"] = {str(k): float(v) for k, v in view.get("arkit", {}).items()}
    err = view.get("reprojection_error_px") or {}
    if "median" in err:
        obj["faceforge_reprojection_median_px"] = float(err["median"])
    if abs(float(cam["fx"]) - float(cam["fy"])) > 1e-3 * float(cam["fx"]):
        # Blender has one focal length per camera; non-square pixels go into the pixel aspect.
        obj["faceforge_pixel_aspect"] = float(cam["fy"]) / float(cam["fx"])
    return obj


def find_rig(obj):
    """The FaceForge rig for any object of an import (the rig itself, a mesh or a camera)."""
    if obj is None:
        return None
    if obj.type == "ARMATURE" and "faceforge_controls" in obj:
        return obj
    linked = obj.get("faceforge_rig")
    if isinstance(linked, bpy.types.Object):
        return linked
    if obj.parent is not None:
        return find_rig(obj.parent)
    for coll in obj.users_collection:
        linked = coll.get("faceforge_rig")
        if isinstance(linked, bpy.types.Object):
            return linked
    return None


def view_cameras(rig):
    cams = [o for o in bpy.data.objects if o.type == "CAMERA" and o.get("faceforge_rig") == rig]
    return sorted(cams, key=lambda o: o.get("faceforge_view_index", 0))
