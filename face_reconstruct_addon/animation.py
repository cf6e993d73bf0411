"""Video results in Blender: the bundle's `animation` section -> an Action on the face rig, a video
camera; and the way back out: per-frame weights and head motion sampled from a rig, Live Link Face
CSV export, glTF export with the driven shape keys baked.

Frame mapping: tracked frame k (source-video frame `frame[k]`) is scene frame `1 + frame[k]` at the
*video's* rate, so the video clip in the camera background (clip frame f at scene frame f) lines up
with the keys for any frame_step; between keys the F-curves interpolate linearly.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Quaternion

from . import compat
from .io.arkit import ARKIT_52, EYE_LOOK_RANGE_DEG
from .io.bundle import load_animation
from .io.cameras import head_angles as _angles_blender, head_motion as _head_motion
from .scene.cameras import make_video_camera, video_camera  # noqa: F401 (video_camera: public)
from .scene.rig import add_shape_driver

HEAD_BONE = "head"
ACTION_GROUP_EXPR = "Expression"


class AnimationError(Exception):
    """A problem with a rig's animation; one line for the user."""


def set_scene_rate(scene, fps: float) -> None:
    """Scene rate = fps exactly, also for NTSC rates (29.97 -> fps 30, base 1.001)."""
    nominal = max(1, int(round(fps)))
    scene.render.fps = nominal
    scene.render.fps_base = nominal / float(fps)


def head_motion(R_ref, t_ref, R_k, t_k) -> Matrix:
    """Rigid motion of frame k in Blender space (io.cameras.head_motion) as a mathutils Matrix."""
    return Matrix(_head_motion(R_ref, t_ref, R_k, t_k).tolist())


def _bone_rest(rig, bone: str) -> Matrix:
    """Armature-space matrix of a pose bone when it has no pose of its own (its parents' current pose
    applied), i.e. what `pose_bone.matrix` would be with an identity matrix_basis."""
    pb = rig.pose.bones[bone]
    b = pb.bone
    if b.parent is None:
        return b.matrix_local.copy()
    return pb.parent.matrix @ b.parent.matrix_local.inverted() @ b.matrix_local


def motion_to_basis(rig, motion: Matrix, bone: str = HEAD_BONE) -> Matrix:
    """matrix_basis that moves `bone` (and everything skinned to it) by `motion` (armature space):
    pose matrix = motion @ rest  =>  basis = rest^-1 @ motion @ rest with rest from _bone_rest."""
    rest = _bone_rest(rig, bone)
    return rest.inverted() @ motion @ rest


def basis_to_motion(rig, basis: Matrix, bone: str = HEAD_BONE) -> Matrix:
    rest = _bone_rest(rig, bone)
    return rest @ basis @ rest.inverted()


def key_head_motion(rig, action, slot, frames, motions, bone: str = HEAD_BONE) -> None:
    """Key `bone` (location + quaternion) so that at frames[i] it has moved by motions[i]."""
    pb = rig.pose.bones[bone]
    pb.rotation_mode = "QUATERNION"
    locs, quats, prev = [], [], None
    for m in motions:
        loc, q, _ = motion_to_basis(rig, m, bone).decompose()
        if prev is not None and prev.dot(q) < 0:  # keep neighbouring quaternions on one hemisphere
            q.negate()
        prev = q
        locs.append(loc)
        quats.append(q)
    base = f'pose.bones["{bone}"]'
    for i in range(3):
        compat.set_keys(compat.new_fcurve(action, slot, f"{base}.location", i, bone), frames, [v[i] for v in locs])
    for i in range(4):
        compat.set_keys(compat.new_fcurve(action, slot, f"{base}.rotation_quaternion", i, bone), frames,
                        [q[i] for q in quats])


def import_animation(created, coll, bundle, rig, scene) -> dict:
    """Keys the rig (the 52 ARKit controls + head bone) and makes the video camera; returns
    {"action", "camera", "frame_start", "frame_end", "fps", "warnings"}."""
    anim = load_animation(bundle)
    arkit, R, t, frame, ref = anim["arkit"], anim["R"], anim["t"], anim["frame"], anim["reference_frame"]
    video_fps = float(anim.get("video_fps") or 0) or float(anim.get("fps") or 30.0) * int(anim.get("frame_step") or 1)
    frames = (1 + frame).astype(np.float64)
    warnings = []

    action = created.add(bpy.data.actions, bpy.data.actions.new(f"{rig.name}_video"))
    slot = compat.assign_action(rig, action)
    # Every control is keyed (tongueOut at 0), so an expression applied from a photo view cannot leak into the
    # animation.
    for i, p in enumerate(ARKIT_52):
        fc = compat.new_fcurve(action, slot, f'["{p}"]', 0, ACTION_GROUP_EXPR)
        compat.set_keys(fc, frames, np.clip(arkit[:, i], 0.0, 1.0))

    key_head_motion(rig, action, slot, frames, [head_motion(R[ref], t[ref], R[k], t[k]) for k in range(len(frames))])

    set_scene_rate(scene, video_fps)
    scene.frame_start, scene.frame_end = int(frames[0]), int(frames[-1])
    scene.frame_current = int(frames[0])
    cam = make_video_camera(created, coll, rig, anim, R[ref], t[ref], warnings)
    rig["faceforge_animation"] = {
        "fps": float(anim.get("fps") or video_fps), "video_fps": video_fps,
        "frame_step": int(anim.get("frame_step") or 1), "n_frames": int(len(frames)),
        "frame_start": int(frames[0]), "frame_end": int(frames[-1]), "reference_frame": int(ref),
        "source_path": str(anim.get("source_path", "")), "gaze": anim["gaze_deg"] is not None,
    }
    for w in warnings:
        print(f"FaceForge: {w}")
    return {"action": action, "camera": cam, "frame_start": int(frames[0]), "frame_end": int(frames[-1]),
            "fps": video_fps, "warnings": warnings}


# -- rig -> per-frame data -------------------------------------------------------------------------
def rig_controls(rig) -> list[str]:
    return [str(p) for p in rig.get("faceforge_controls", [])]


def _fcurve_map(id_data) -> dict:
    return {(fc.data_path, fc.array_index): fc for fc in compat.id_fcurves(id_data)}


def rig_key_frames(rig) -> list[float]:
    """Frames where the rig's expression controls are keyed (sorted, unique)."""
    fcs = _fcurve_map(rig)
    frames = set()
    for p in rig_controls(rig):
        fc = fcs.get((f'["{p}"]', 0))
        if fc is not None:
            n = len(fc.keyframe_points)
            co = [0.0] * (2 * n)
            fc.keyframe_points.foreach_get("co", co)
            frames.update(co[0::2])
    return sorted(frames)


def rig_controls_at(rig, frames) -> dict[str, np.ndarray]:
    """Each control's value at each frame: its F-curve where keyed, else its current value."""
    fcs = _fcurve_map(rig)
    out = {}
    for p in rig_controls(rig):
        fc = fcs.get((f'["{p}"]', 0))
        if fc is None:
            out[p] = np.full(len(frames), float(rig.get(p, 0.0)))
        else:
            out[p] = np.array([fc.evaluate(f) for f in frames], np.float64)
    return out


def effective_weights(controls: list[str], values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-shape weights: the rig's controls are the 52 ARKit shapes, each driving the key of its own name."""
    return {p: values[p] for p in controls}


def head_motion_at(rig, frames, bone: str = HEAD_BONE) -> list[Matrix] | None:
    """The head bone's motion (armature space, see motion_to_basis) at each frame from its F-curves;
    None when the bone is not animated."""
    pb = rig.pose.bones.get(bone)
    if pb is None:
        return None
    fcs = _fcurve_map(rig)
    base = f'pose.bones["{bone}"]'
    loc_fc = [fcs.get((f"{base}.location", i)) for i in range(3)]
    if pb.rotation_mode == "QUATERNION":
        rot_fc = [fcs.get((f"{base}.rotation_quaternion", i)) for i in range(4)]
        rot_now = list(pb.rotation_quaternion)
    elif pb.rotation_mode == "AXIS_ANGLE":
        return None
    else:
        rot_fc = [fcs.get((f"{base}.rotation_euler", i)) for i in range(3)]
        rot_now = list(pb.rotation_euler)
    if not any(loc_fc) and not any(rot_fc):
        return None
    out = []
    for f in frames:
        loc = [fc.evaluate(f) if fc else float(pb.location[i]) for i, fc in enumerate(loc_fc)]
        rot = [fc.evaluate(f) if fc else rot_now[i] for i, fc in enumerate(rot_fc)]
        if pb.rotation_mode == "QUATERNION":
            r = Quaternion(rot).normalized().to_matrix().to_4x4()
        else:
            from mathutils import Euler

            r = Euler(rot, pb.rotation_mode).to_matrix().to_4x4()
        basis = Matrix.Translation(loc) @ r
        out.append(basis_to_motion(rig, basis, bone))
    return out


def head_angles(motion: Matrix) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians of a head motion (io.cameras.head_angles: model axes, Live Link Face's own
    sign conventions are undocumented; these are ours)."""
    return _angles_blender(np.array(motion.to_3x3()))


def livelink_columns(rig, frames) -> tuple[dict, dict]:
    """(shapes, angles) columns for livelink_csv.write: the 52 ARKit weights and head / eye angles."""
    controls = rig_controls(rig)
    eff = effective_weights(controls, rig_controls_at(rig, frames))
    n = len(frames)
    shapes = {a: np.clip(eff.get(a, np.zeros(n)), 0.0, 1.0) for a in ARKIT_52}
    angles = {}
    motions = head_motion_at(rig, frames)
    if motions is not None:
        ypr = np.array([head_angles(m) for m in motions])
        angles.update(HeadYaw=ypr[:, 0], HeadPitch=ypr[:, 1], HeadRoll=ypr[:, 2])
    # Same mapping as the eye-bone drivers: yaw > 0 looks towards the subject's left, pitch > 0 up.
    z = np.zeros(n)
    g = lambda k: eff.get(k, z)  # noqa: E731
    h, up, down = (math.radians(EYE_LOOK_RANGE_DEG[k]) for k in ("horizontal", "up", "down"))
    angles["LeftEyeYaw"] = (g("eyeLookOutLeft") - g("eyeLookInLeft")) * h
    angles["RightEyeYaw"] = (g("eyeLookInRight") - g("eyeLookOutRight")) * h
    angles["LeftEyePitch"] = g("eyeLookUpLeft") * up - g("eyeLookDownLeft") * down
    angles["RightEyePitch"] = g("eyeLookUpRight") * up - g("eyeLookDownRight") * down
    return shapes, angles


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def export_csv(rig, filepath, scene=None, frame_range: tuple[int, int] | None = None) -> int:
    """Write the rig's expression (and head motion) as a Live Link Face CSV, one row per scene frame
    (sampled from the F-curves, so a video tracked every n-th frame still gives every frame). Without
    animation, one row with the current expression. Returns the number of rows."""
    from . import livelink_csv

    scene = scene or bpy.context.scene
    keyed = rig_key_frames(rig)
    if frame_range is not None:
        a, b = frame_range
    elif keyed:
        a, b = int(math.floor(keyed[0])), int(math.ceil(keyed[-1]))
    else:
        a = b = scene.frame_current
    frames = list(range(a, b + 1))
    fps = scene_fps(scene)
    shapes, angles = livelink_columns(rig, frames)
    livelink_csv.write(filepath, [(f - a) / fps for f in frames], {k: list(v) for k, v in shapes.items()},
                       {k: list(v) for k, v in angles.items()}, rate=fps)
    return len(frames)


# -- glTF -----------------------------------------------------------------------------------------
def _driven_meshes(rig):
    """Meshes whose shape keys are driven by this rig's controls: [(object, {shape: [props]})]."""
    out = []
    for obj in bpy.data.objects:
        key = obj.data.shape_keys if obj.type == "MESH" else None
        ad = key.animation_data if key is not None else None
        if ad is None or not ad.drivers:
            continue
        spec = {}
        for fc in ad.drivers:
            if not (fc.data_path.startswith('key_blocks["') and fc.data_path.endswith('"].value')):
                continue
            vars_ = list(fc.driver.variables)
            if fc.driver.type != "SUM" or not vars_ or any(
                    v.type != "SINGLE_PROP" or v.targets[0].id != rig for v in vars_):
                continue
            shape = fc.data_path[len('key_blocks["'):-len('"].value')]
            spec[shape] = [v.targets[0].data_path[2:-2] for v in vars_]
        if spec:
            out.append((obj, spec))
    return out


@contextlib.contextmanager
def baked_shape_keys(scene=None, only_rig=None):
    """While inside: each animated FaceForge rig's driven shape-key values are keyed per frame on the
    meshes' Keys and those drivers are removed; everything is put back afterwards.

    Why: a driver is not animation data to a glTF exporter. Blender's own exporter happens to sample
    shape-key drivers of an armature's children, but not when the rig is left out of the export, and
    a driver plus a baked action would give two weight channels. On 4.4+ the baked F-curves go into a
    KEY slot of the rig's own action, so the exporter (merging by action) writes one animation with
    the head motion and the weights.
    """
    scene = scene or bpy.context.scene
    undo = []
    try:
        for rig in [o for o in scene.objects if o.type == "ARMATURE" and "faceforge_controls" in o
                    and (only_rig is None or o == only_rig)]:
            ad = rig.animation_data
            frames_keyed = rig_key_frames(rig)
            if ad is None or ad.action is None or not frames_keyed:
                continue
            frames = list(range(int(math.floor(frames_keyed[0])), int(math.ceil(frames_keyed[-1])) + 1))
            values = rig_controls_at(rig, frames)
            for obj, spec in _driven_meshes(rig):
                key = obj.data.shape_keys
                kad = key.animation_data
                prev = (kad.action, compat.action_slot(key)) if kad is not None else (None, None)
                if compat.HAS_SLOTS:
                    action, made = ad.action, False
                else:  # pragma: no cover - a legacy action animates one ID type only
                    action, made = bpy.data.actions.new(f"{ad.action.name}_shapekeys"), True
                slot = compat.assign_action(key, action, slot_name=obj.data.name)
                fcs = []
                for shape, props in spec.items():
                    vals = sum(values.get(p, np.zeros(len(frames))) for p in props)
                    fc = compat.new_fcurve(action, slot, f'key_blocks["{shape}"].value', 0, "Shape keys")
                    compat.set_keys(fc, frames, np.clip(vals, 0.0, 1.0))
                    fcs.append(fc)
                for fc in list(key.animation_data.drivers):
                    shape = fc.data_path[len('key_blocks["'):-len('"].value')]
                    if shape in spec:
                        key.animation_data.drivers.remove(fc)
                undo.append((key, rig, spec, action, slot, made, prev))
        yield
    finally:
        for key, rig, spec, action, slot, made, prev in reversed(undo):
            ad = key.animation_data
            if prev[0] is not None:
                compat.assign_action(key, prev[0], slot_name=prev[1].name_display if prev[1] else None)
            else:
                ad.action = None
            if made:  # pragma: no cover - legacy path
                bpy.data.actions.remove(action)
            elif slot is not None:
                for fc in compat.action_fcurves(action, slot):
                    compat.remove_fcurve(action, slot, fc)
                action.slots.remove(slot)
            for shape, props in spec.items():
                add_shape_driver(key, shape, rig, props[0])


@contextlib.contextmanager
def only_selected(rig, context=None):
    """While inside: exactly the rig and its meshes are selected (the exporters' use_selection), the rig active;
    the previous selection and active object come back afterwards."""
    context = context or bpy.context
    vl = context.view_layer
    before = [o for o in vl.objects if o.select_get(view_layer=vl)]
    active = vl.objects.active
    try:
        for o in before:
            o.select_set(False, view_layer=vl)
        for o in [rig] + [c for c in rig.children if c.type == "MESH"]:
            o.select_set(True, view_layer=vl)
        vl.objects.active = rig
        yield
    finally:
        for o in vl.objects:
            o.select_set(o in before, view_layer=vl)
        vl.objects.active = active


def export_glb(filepath, scene=None, animations: bool = True, rig=None, draco: bool = False,
               sparse: bool = False) -> int:
    """glTF binary of one head (`rig`: its armature and meshes, with their 52 ARKit-named morph targets and the
    skin; None: the whole scene) and, with `animations`, its actions (head motion + baked shape-key weights).
    Only one rig per file, so joint names are unique. Returns the file's size in bytes."""
    scene = scene or bpy.context.scene
    filepath = Path(filepath).absolute()
    ctx = contextlib.nullcontext() if rig is None else only_selected(rig)
    with ctx:
        if animations:
            with baked_shape_keys(scene, rig):
                compat.export_glb(str(filepath), animations=True, selection=rig is not None, draco=draco,
                                  sparse=sparse)
        else:
            compat.export_glb(str(filepath), animations=False, selection=rig is not None, draco=draco, sparse=sparse)
    return filepath.stat().st_size


def export_fbx(filepath, scene, rig, animations: bool = True) -> int:
    """FBX of one head for Unreal / Unity (compat.export_fbx): the shape keys become blend shapes under their
    ARKit names. Returns the file's size in bytes."""
    filepath = Path(filepath).absolute()
    with only_selected(rig):
        if animations and rig.animation_data and rig.animation_data.action:
            with baked_shape_keys(scene, rig):
                compat.export_fbx(str(filepath), animations=True)
        else:
            compat.export_fbx(str(filepath), animations=False)
    return filepath.stat().st_size
