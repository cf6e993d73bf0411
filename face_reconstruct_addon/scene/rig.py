"""The face rig: armature (root, neck, head, jaw, eye.L, eye.R), the 52 ARKit controls as custom properties on
the armature object, and the drivers that connect them to shape keys, the jaw bone and the eye bones.

Drivers are "simple expressions" (a sum or a product with a constant): Blender evaluates them without Python,
so they work with auto-run scripts off.
"""
from __future__ import annotations

import math

import bpy
from mathutils import Vector

from ..io.arkit import ARKIT_52, EYE_LOOK_RANGE_DEG
from ..io.cameras import to_blender

CONTROLS = list(ARKIT_52)


def build_armature(created, coll, name: str, geometry, context):
    """Armature object with geometry.bones (model cm); the jaw's roll puts its local X on world X, the axis
    jawOpen turns it about."""
    arm = created.add(bpy.data.armatures, bpy.data.armatures.new(name + "_rig"))
    obj = created.add(bpy.data.objects, bpy.data.objects.new(name + "_rig", arm))
    coll.objects.link(obj)
    obj.show_in_front = True
    # Edit bones need edit mode, which needs the object active in a view layer.
    vl = context.view_layer
    vl.update()
    prev_active = vl.objects.active
    vl.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        eb = arm.edit_bones
        made = {}
        for bname, b in geometry.bones.items():
            e = eb.new(bname)
            e.head = Vector(to_blender(b.head[None])[0])
            e.tail = Vector(to_blender(b.tail[None])[0])
            e.parent = made.get(b.parent)
            e.use_connect = False
            e.use_deform = b.deform
            made[bname] = e
        if "jaw" in made:
            jaw = made["jaw"]
            direction = (jaw.tail - jaw.head).normalized()
            jaw.align_roll(Vector((1.0, 0.0, 0.0)).cross(direction))  # local Z = X x Y  =>  local X = world X
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        vl.objects.active = prev_active
    return obj


def add_controls(rig) -> None:
    for p in CONTROLS:
        rig[p] = 0.0
        rig.id_properties_ui(p).update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0,
                                       description=f"ARKit blendshape weight {p}")
    rig["faceforge_controls"] = CONTROLS
    # Setting ID properties from Python does not tag the depsgraph; without this the evaluated rig lacks the
    # properties, the drivers fail once and stay flagged invalid.
    rig.update_tag()


def _prop_var(drv, name, rig, prop):
    var = drv.variables.new()
    var.name, var.type = name, "SINGLE_PROP"
    var.targets[0].id_type = "OBJECT"
    var.targets[0].id = rig
    var.targets[0].data_path = f'["{prop}"]'
    return var


def _done(fc):
    # A driver evaluated while still incomplete (no variables yet) is flagged invalid and then never
    # re-evaluated; it is complete now.
    fc.driver.is_valid = True
    fc.is_valid = True
    return fc


def add_shape_driver(key, shape: str, rig, prop: str | None = None):
    """key_blocks[shape].value = rig[prop] (prop defaults to the shape's own name)."""
    fc = key.key_blocks[shape].driver_add("value")
    fc.driver.type = "SUM"
    _prop_var(fc.driver, "w", rig, prop or shape)
    return _done(fc)


def drive_shape_keys(obj, rig) -> None:
    key = obj.data.shape_keys
    if key is None:
        return
    for kb in key.key_blocks[1:]:
        if kb.name in CONTROLS:
            add_shape_driver(key, kb.name, rig)


def add_jaw_driver(rig, angle: float) -> None:
    """jaw bone rotation about its local X (= world X, build_armature) = jawOpen * angle. The head mesh is not
    weighted to the jaw, so the mouth opens once (by its shape key); the lower teeth and tongue follow the bone."""
    pb = rig.pose.bones.get("jaw")
    if pb is None or not angle:
        return
    pb.rotation_mode = "XYZ"
    fc = pb.driver_add("rotation_euler", 0)
    fc.driver.type = "SCRIPTED"
    _prop_var(fc.driver, "w", rig, "jawOpen")
    fc.driver.expression = f"w * {angle:.6f}"
    _done(fc)
    rig["faceforge_jaw_angle"] = float(angle)
    # The bone is the control's output, not a second control: keep it from being posed by hand.
    pb.lock_rotation = (True, True, True)


def add_eye_drivers(rig) -> None:
    """Turn the eye bones from the eyeLook* controls (ICT's eyeLook shapes only move the lids) with the backend's
    ranges (io.arkit.EYE_LOOK_RANGE_DEG: 30 degrees sideways, 25 up, 30 down at weight 1).

    The eye bones point out of the face (-Y) with roll 0, so their local Z is world up and a positive rotation
    about it turns the gaze towards world +X (the subject's left); positive X looks up.
    """
    h, up, down = (math.radians(EYE_LOOK_RANGE_DEG[k]) for k in ("horizontal", "up", "down"))
    for side, word in (("L", "Left"), ("R", "Right")):
        pb = rig.pose.bones.get(f"eye.{side}")
        if pb is None:
            continue
        pb.rotation_mode = "XYZ"
        toward_plus_x = f"eyeLookOut{word}" if side == "L" else f"eyeLookIn{word}"
        toward_minus_x = f"eyeLookIn{word}" if side == "L" else f"eyeLookOut{word}"
        for axis, (pos, neg, kpos, kneg) in {0: (f"eyeLookUp{word}", f"eyeLookDown{word}", up, down),
                                             2: (toward_plus_x, toward_minus_x, h, h)}.items():
            fc = pb.driver_add("rotation_euler", axis)
            fc.driver.type = "SCRIPTED"
            _prop_var(fc.driver, "a", rig, pos)
            _prop_var(fc.driver, "b", rig, neg)
            fc.driver.expression = f"a * {kpos:.6f} - b * {kneg:.6f}"
            _done(fc)


def skin(obj, rig) -> None:
    obj.parent = rig
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = rig


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


def rig_meshes(rig) -> list:
    return [o for o in rig.children if o.type == "MESH"]


def set_controls(rig, values: dict) -> None:
    for p in rig.get("faceforge_controls", []):
        rig[p] = float(values.get(p, 0.0))
    rig.update_tag()
