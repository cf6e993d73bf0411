"""Every Blender API difference between 4.2 and 5.x that the add-on touches lives here (including
4.4's slotted actions and 5.0's removal of Action.fcurves: see "Animation data" below).

When Blender changes an API, only this module should need an edit. Each helper says which
versions differ and how; everything else in the add-on calls these instead of the raw API.
"""
from __future__ import annotations

import bpy

VERSION = bpy.app.version


def is_background() -> bool:
    return bool(bpy.app.background)


def new_material_node_tree(name: str):
    """A material with the default Principled BSDF -> Material Output tree.

    5.0 deprecated `Material.use_nodes` (always true, scheduled for removal in 6.0);
    4.2 - 4.5 need it set to get a node tree at all.
    """
    mat = bpy.data.materials.new(name)
    if VERSION < (5, 0, 0):
        mat.use_nodes = True
    return mat


def new_world(name: str):
    """A world with a Background -> World Output node tree. As for materials, 5.0 deprecated `World.use_nodes`
    (always true); 4.2 - 4.5 need it set."""
    world = bpy.data.worlds.new(name)
    if VERSION < (5, 0, 0) or world.node_tree is None:
        world.use_nodes = True
    return world


def set_blended(mat) -> None:
    """Alpha-blended surface. 4.2 introduced `Material.surface_render_method` (EEVEE Next) next to the older
    `blend_method`, which 4.2 - 4.x still read for Workbench; 5.0 keeps only the former."""
    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "BLENDED"
    if hasattr(mat, "blend_method"):
        try:
            mat.blend_method = "BLEND"
        except (TypeError, AttributeError):
            pass


def enable_denoising(scene) -> bool:
    """Cycles denoising where this build has a denoiser (the bpy wheels ship without OpenImageDenoise: the
    enum is then empty and setting use_denoising would only log a warning per render)."""
    cy = scene.cycles
    denoisers = cy.bl_rna.properties["denoiser"].enum_items.keys()
    cy.use_denoising = bool(denoisers)
    if denoisers:
        cy.denoiser = "OPENIMAGEDENOISE" if "OPENIMAGEDENOISE" in denoisers else denoisers[0]
    return bool(denoisers)


def principled_input(bsdf, *names):
    """First existing socket among `names` (socket names moved in 4.0; kept flexible for 5.x)."""
    for n in names:
        sock = bsdf.inputs.get(n)
        if sock is not None:
            return sock
    return None


def set_smooth(mesh) -> None:
    """Smooth shading on every face. `Mesh.shade_smooth()` only exists from 4.1 on and auto-smooth was
    removed in 4.1; setting the face attribute works everywhere."""
    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
    else:  # pragma: no cover - pre-4.1
        mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))


def workbench_engine() -> str:
    return "BLENDER_WORKBENCH"


def eevee_engine() -> str:
    """4.2 - 4.x call EEVEE Next "BLENDER_EEVEE_NEXT"; 5.0 renamed it back to "BLENDER_EEVEE"."""
    items = bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items.keys()
    return "BLENDER_EEVEE_NEXT" if "BLENDER_EEVEE_NEXT" in items else "BLENDER_EEVEE"


def draw_progress(layout, factor: float, text: str) -> None:
    """`UILayout.progress` exists from 4.0; older builds get a text row."""
    if "progress" in bpy.types.UILayout.bl_rna.functions:
        layout.progress(factor=max(0.0, min(1.0, factor)), type="BAR", text=text)
    else:  # pragma: no cover
        layout.label(text=f"{text} ({factor * 100:.0f}%)")


def export_glb(filepath: str, animations: bool = False, selection: bool = False, draco: bool = False,
               sparse: bool = False) -> None:
    """glTF binary with shape keys and skin (and, with `animations`, every action, sampled per frame and
    merged by action); `selection`: the selected objects only; `draco`: Draco-compressed base meshes (the
    exporter's encoder leaves morph targets out: they stay plain accessors, so combine with `sparse`); `sparse`: morph targets written as sparse accessors where that is smaller. Option names in
    io_scene_gltf2 churn between releases, so only the ones this build knows are passed; drivers are not
    exported as such (animation.baked_shape_keys)."""
    props = bpy.ops.export_scene.gltf.get_rna_type().properties.keys()
    wanted = {"export_format": "GLB", "export_morph": True, "export_skins": True, "export_cameras": not selection,
              "export_lights": False, "export_yup": True, "export_apply": False,
              "export_animations": bool(animations), "use_selection": bool(selection),
              "export_draco_mesh_compression_enable": bool(draco), "export_try_sparse_sk": bool(sparse),
              "export_try_omit_sparse_sk": bool(sparse)}
    if draco:
        wanted.update(export_draco_mesh_compression_level=6, export_draco_position_quantization=14)
    if animations:
        # One head's own actions only ("ACTIONS" also takes every other action whose channels fit its bones,
        # e.g. a second imported head's).
        wanted.update(export_morph_animation=True,
                      export_animation_mode="ACTIVE_ACTIONS" if selection else "ACTIONS", export_force_sampling=True,
                      export_merge_animation="ACTION", export_optimize_animation_size=False,
                      export_anim_slide_to_zero=True)
    kwargs = {k: v for k, v in wanted.items() if k in props}
    if draco and "export_draco_mesh_compression_enable" not in props:
        raise RuntimeError("this Blender's glTF exporter has no Draco compression")
    result = bpy.ops.export_scene.gltf(filepath=str(filepath), **kwargs)
    if "FINISHED" not in result:
        raise RuntimeError(f"glTF export failed ({result})")


def export_fbx(filepath: str, animations: bool = False) -> None:
    """FBX of the selected objects for Unreal / Unity: armature + meshes, shape keys as blend shapes under their
    key names, no leaf bones, +Y up / -Z forward as both engines import it. The exporter's option set has been
    stable from 4.2 to 5.0, but only known options are passed."""
    props = bpy.ops.export_scene.fbx.get_rna_type().properties.keys()
    wanted = {"use_selection": True, "object_types": {"ARMATURE", "MESH"}, "add_leaf_bones": False,
              "use_mesh_modifiers": False, "mesh_smooth_type": "FACE", "axis_forward": "-Z", "axis_up": "Y",
              "apply_unit_scale": True, "bake_anim": bool(animations), "bake_anim_use_all_actions": False,
              "bake_anim_use_nla_strips": False, "path_mode": "COPY", "embed_textures": True,
              "armature_nodetype": "NULL"}
    kwargs = {k: v for k, v in wanted.items() if k in props}
    result = bpy.ops.export_scene.fbx(filepath=str(filepath), **kwargs)
    if "FINISHED" not in result:
        raise RuntimeError(f"FBX export failed ({result})")


def extension_user_dir(package: str, sub: str) -> str | None:
    """A writable folder that belongs to the extension (`bpy.utils.extension_path_user`, 4.2+), or None when the
    add-on runs as a plain module (the tests, run.py)."""
    fn = getattr(bpy.utils, "extension_path_user", None)
    if fn is None or not package.startswith("bl_ext."):
        return None
    try:
        return fn(package, path=sub, create=True)
    except (ValueError, RuntimeError, OSError):
        return None


def online_access() -> bool:
    """Whether Blender allows add-ons to use the internet (`bpy.app.online_access`, 4.2+: Preferences > System >
    Network > Allow Online Access, or --online-mode / --offline-mode). Extensions must check it before connecting."""
    return bool(getattr(bpy.app, "online_access", True))


def addon_preferences(context, package: str):
    """The add-on's preferences, or None when the add-on was registered without addon_utils
    (e.g. `register()` called directly from a script)."""
    addon = context.preferences.addons.get(package)
    return addon.preferences if addon is not None else None


def status_text(context, text: str | None) -> None:
    """Status bar text (Workspace.status_text_set); absent without a window (background / bpy module)."""
    ws = getattr(context, "workspace", None)
    if ws is not None and hasattr(ws, "status_text_set"):
        try:
            ws.status_text_set(text)
        except (RuntimeError, TypeError):
            pass


def tag_redraw_all(context) -> None:
    wm = getattr(context, "window_manager", None)
    if wm is None:
        return
    for win in wm.windows:
        for area in win.screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR", "INFO"}:
                area.tag_redraw()


def load_image(path: str, colorspace: str | None = None):
    """Load without reusing a same-named image (check_existing=False), so a second import never
    shares or replaces the first import's images."""
    img = bpy.data.images.load(str(path), check_existing=False)
    if colorspace:
        try:
            img.colorspace_settings.name = colorspace
        except TypeError:  # OCIO config without that name
            pass
    return img


# -- Animation data -------------------------------------------------------------------------------
# Blender 4.4 introduced slotted (layered) actions: one Action holds several slots, each slot's
# F-curves live in a channelbag of the action's first keyframe strip, and AnimData picks a slot next
# to the action (`AnimData.action_slot`). 4.4 - 4.5 still offer `Action.fcurves` as a proxy for the
# first slot; 5.0 removed it. Before 4.4 an action is a flat F-curve list bound to one ID type.
# Everything below branches on `HAS_SLOTS`; only the slotted branch runs under the bpy 5.0.1 the tests
# use, the legacy branch follows the 4.2 API documentation and is untested here.
HAS_SLOTS = hasattr(bpy.types, "ActionSlot")
_INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}


def _id_type(id_data) -> str:
    """ID type enum of an ID (`bpy.types.Key` -> 'KEY'); `ID.id_type` exists for every ID."""
    return id_data.id_type


def assign_action(id_data, action, slot_name: str | None = None):
    """Give `id_data` (an Object, a Key, ...) `action`, creating and assigning a slot for it on 4.4+.

    Returns the slot (None before 4.4). An existing slot for the same ID type and name is reused, so
    re-assigning is idempotent and one action can animate several IDs (e.g. a rig and its shape keys)
    through different slots - glTF export then merges them into one animation.
    """
    ad = id_data.animation_data or id_data.animation_data_create()
    if not HAS_SLOTS:  # pragma: no cover - Blender < 4.4
        ad.action = action
        return None
    name = slot_name or id_data.name
    slot = next((s for s in action.slots if s.target_id_type == _id_type(id_data) and s.name_display == name),
                None)
    if slot is None:
        slot = action.slots.new(id_type=_id_type(id_data), name=name)
    ad.action = action
    if ad.action_slot != slot:
        ad.action_slot = slot
    return slot


def action_slot(id_data):
    """The slot `id_data` is animated through (None before 4.4 or without an action)."""
    ad = id_data.animation_data
    if not HAS_SLOTS or ad is None or ad.action is None:
        return None
    return ad.action_slot


def _channelbag(action, slot, create: bool):
    if not action.layers:
        if not create:
            return None
        action.layers.new("Layer")
    layer = action.layers[0]
    if not layer.strips:
        if not create:
            return None
        layer.strips.new(type="KEYFRAME")
    return layer.strips[0].channelbag(slot, ensure=create)


def action_fcurves(action, slot=None) -> list:
    """The F-curves of `action` that animate `slot` (4.4+; all slots' when slot is None), or all of a
    legacy action's F-curves."""
    if action is None:
        return []
    if not HAS_SLOTS:  # pragma: no cover - Blender < 4.4
        return list(action.fcurves)
    slots = [slot] if slot is not None else list(action.slots)
    out = []
    for s in slots:
        bag = _channelbag(action, s, create=False)
        if bag is not None:
            out += list(bag.fcurves)
    return out


def id_fcurves(id_data) -> list:
    """F-curves of the action currently animating `id_data` (through its slot on 4.4+)."""
    ad = id_data.animation_data
    if ad is None or ad.action is None:
        return []
    return action_fcurves(ad.action, action_slot(id_data) if HAS_SLOTS else None)


def new_fcurve(action, slot, data_path: str, index: int = 0, group: str = ""):
    """An F-curve for `data_path[index]` in `action` (for `slot` on 4.4+), replacing an existing one."""
    if not HAS_SLOTS:  # pragma: no cover - Blender < 4.4
        fcurves = action.fcurves
        old = fcurves.find(data_path, index=index)
        if old is not None:
            fcurves.remove(old)
        return fcurves.new(data_path, index=index, action_group=group)
    bag = _channelbag(action, slot, create=True)
    old = bag.fcurves.find(data_path, index=index)
    if old is not None:
        bag.fcurves.remove(old)
    return bag.fcurves.new(data_path, index=index, group_name=group)


def remove_fcurve(action, slot, fcurve) -> None:
    if not HAS_SLOTS:  # pragma: no cover - Blender < 4.4
        action.fcurves.remove(fcurve)
        return
    bag = _channelbag(action, slot, create=False)
    if bag is not None:
        bag.fcurves.remove(fcurve)


def set_keys(fcurve, frames, values, interpolation: str = "LINEAR") -> None:
    """Replace the keyframes of `fcurve` with (frames[i], values[i]) in one bulk write (keyframe_insert
    per key is ~100x slower for 53 channels x thousands of frames)."""
    n = len(frames)
    kp = fcurve.keyframe_points
    if len(kp):
        kp.clear()
    kp.add(n)
    co = [0.0] * (2 * n)
    co[0::2] = [float(f) for f in frames]
    co[1::2] = [float(v) for v in values]
    kp.foreach_set("co", co)
    kp.foreach_set("interpolation", [_INTERPOLATION[interpolation]] * n)
    # Handles follow the points ('AUTO_CLAMPED' default); update() recomputes them and sorts.
    fcurve.update()


def copy_action(action):
    """A full copy (slots, layers, channelbags on 4.4+; plain F-curves before)."""
    return action.copy()
