"""Import a FaceForge result bundle (docs/result-bundle.md) into Blender: read it with io/ (no bpy), build the
datablocks with scene/.

Everything goes into a new collection named after the subject; datablock names are left to Blender's
uniqueness rules and nothing is looked up by name, so importing twice gives two independent copies. If anything
fails half way, every datablock created so far is removed.

What an import makes: the head, per eye an inner ball and a clear shell, upper and lower teeth and the tongue
(separate objects, skinned to the head, jaw and eye bones), a rig whose 52 ARKit controls drive their shape keys,
the jaw bone and the eye bones; one camera per photo; for a video result its animation and video camera; a World
and lights when the scene has none. The head opens neutral: each photo's fitted expression is one click away in
Fitted Views (apply_view).
"""
from __future__ import annotations

import bpy
import numpy as np

from . import animation, compat
from .io import rig_geometry
from .io.bundle import Bundle, BundleError, read_bundle
from .io.cameras import AXIS, SCALE, to_blender  # noqa: F401 (public: tests and scripts use them from here)
from .scene import materials, mesh, rig as rig_mod, world
from .scene.cameras import apply_view, look_through, make_view_camera, reset_expression, view_cameras  # noqa: F401
from .scene.created import Created
from .scene.rig import find_rig  # noqa: F401

__all__ = ["import_bundle", "BundleError", "apply_view", "reset_expression", "find_rig", "view_cameras",
           "to_blender", "AXIS", "SCALE", "pack_images"]


def import_bundle(path, context=None, apply_view_index: int | None = None, pack_textures: bool = False,
                  setup_scene: bool = True) -> dict:
    """Import a bundle; returns {"collection", "head", "eyes", "shells", "teeth", "tongue", "objects", "rig",
    "cameras", "lights", "animation"}.

    apply_view_index: pose the head with that view's fitted expression (None: neutral; the view's camera is
    active either way). pack_textures: pack every image into the .blend (it then no longer needs the bundle).
    setup_scene: World (when the scene has none), lights, Cycles and Standard colour management.
    """
    context = context or bpy.context
    try:
        bundle = read_bundle(path)
    except BundleError:
        raise
    created = Created()
    try:
        out = _build(context, created, bundle, apply_view_index, setup_scene)
        if pack_textures:
            pack_images(out)
    except mesh.MeshError as e:
        created.rollback()
        raise BundleError(str(e)) from e
    except BaseException:
        created.rollback()
        raise
    return out


def _images(created, bundle: Bundle) -> dict:
    out = {}
    for key, cs in (("albedo", "sRGB"), ("normal", "Non-Color"), ("eye_albedo", "sRGB"),
                    ("eye_shell_albedo", "sRGB")):
        if key in bundle.files:
            out[key] = created.add(bpy.data.images, compat.load_image(bundle.files[key], cs))
    return out


def _piece_material(created, subject, piece, images, cache):
    # Both eyes, both teeth rows share their materials.
    if piece.material != "head" and piece.material in cache:
        return cache[piece.material]
    cache[piece.material] = mats = _new_piece_material(created, subject, piece, images)
    return mats


def _new_piece_material(created, subject, piece, images):
    if piece.material == "eye":
        return [materials.material(created, f"{subject}_eye", "eye",
                                   {"albedo": images["eye_albedo"]} if "eye_albedo" in images else None)]
    if piece.material == "eye_shell":
        # The shell is clear over a textured inner ball; opaque with its own picture only when the bundle has
        # no inner-ball texture (docs/result-bundle.md: eye_shell_albedo is for renderers that keep it opaque).
        opaque = "eye_shell_albedo" in images and "eye_albedo" not in images
        return [materials.material(created, f"{subject}_eye_shell", "eye" if opaque else "eye_shell",
                                   {"albedo": images["eye_shell_albedo"]} if opaque else None)]
    if piece.material == "head":
        skin = {k: images[k] for k in ("albedo", "normal") if k in images}
        return [materials.material(created, f"{subject}_{role}", role, skin if role == "skin" else None)
                for role in rig_geometry.HEAD_SLOTS]
    return [materials.material(created, f"{subject}_{piece.material}", piece.material)]


def _build(context, created, bundle: Bundle, apply_view_index, setup_scene):
    scene = context.scene
    subject = bundle.subject
    coll = created.add(bpy.data.collections, bpy.data.collections.new(subject))
    scene.collection.children.link(coll)
    coll["faceforge_bundle"] = str(bundle.folder)
    coll["faceforge_subject"] = subject

    geo = rig_geometry.build(bundle.mesh, bundle.names, bundle.deltas, bundle.parts)
    images = _images(created, bundle)
    rig = rig_mod.build_armature(created, coll, subject, geo, context)
    rig_mod.add_controls(rig)
    rig["faceforge_model_names"] = list(bundle.names)

    V, uvs = bundle.mesh.vertices, bundle.mesh.uvs
    objects, mat_cache = {}, {}
    for piece in geo.pieces:
        oname = f"{subject}_{piece.name}"
        me = created.add(bpy.data.meshes, mesh.make_mesh(oname, to_blender(V[piece.vertices]), piece.sizes,
                                                         piece.loop_vertex, piece.loop_uv, uvs))
        obj = created.add(bpy.data.objects, bpy.data.objects.new(oname, me))
        coll.objects.link(obj)
        obj["faceforge_part"] = piece.name
        obj["faceforge_vertex_ids"] = [int(piece.vertices[0]), int(piece.vertices[-1]) + 1]
        for m in _piece_material(created, subject, piece, images, mat_cache):
            me.materials.append(m)
        if piece.material == "head":
            me.polygons.foreach_set("material_index", piece.slots)
            if "albedo" in images or "normal" in images:
                img = images.get("albedo") or images["normal"]
                w, h = img.size[:]
                scale = np.array([h / w if w else 1.0, 1.0])
                baked = me.uv_layers.new(name=materials.BAKED_UV)
                baked.data.foreach_set("uv", (uvs[piece.loop_uv] * scale).astype(np.float32).ravel())
                # Active too: Workbench's Texture colour reads the active layer. "UVMap" keeps ICT's own UDIM
                # layout for textures made elsewhere.
                baked.active_render = True
                me.uv_layers.active = baked
        mesh.add_groups(obj, piece.weights)
        if piece.shapes:
            mesh.add_shape_keys(obj, V[piece.vertices], piece.shapes)
            rig_mod.drive_shape_keys(obj, rig)
        rig_mod.skin(obj, rig)
        objects[piece.name] = obj

    rig_mod.add_jaw_driver(rig, geo.jaw_angle)
    rig_mod.add_eye_drivers(rig)

    cams = [make_view_camera(created, coll, subject, i, view, bundle.view_images[i], bundle.names, rig)
            for i, view in enumerate(bundle.views)]
    coll["faceforge_rig"] = rig  # ID pointers, not names: renaming objects keeps the links intact
    lights = []
    head = objects.get("head")
    if setup_scene:
        world.ensure_world(scene, created)
        if head is not None:
            lights = world.add_lights(created, coll, subject, world.head_centre(head))
        world.render_settings(scene)
    anim = None
    if bundle.doc.get("animation"):
        anim = animation.import_animation(created, coll, bundle, rig, scene)
        coll["faceforge_video_camera"] = anim["camera"]
    if cams:
        index = apply_view_index if apply_view_index is not None and 0 <= apply_view_index < len(cams) else 0
        apply_view(rig, cams[index], scene, expression=apply_view_index is not None)
    if anim is not None:
        # A video result opens on its first frame, seen through the video camera.
        apply_view(rig, anim["camera"], scene, expression=False)
        scene.frame_set(anim["frame_start"])
    context.view_layer.update()
    return {"collection": coll, "head": head, "objects": objects,
            "eyes": [objects[f"eye.{s}"] for s in ("L", "R") if f"eye.{s}" in objects],
            "shells": [objects[f"eye_shell.{s}"] for s in ("L", "R") if f"eye_shell.{s}" in objects],
            "teeth": [objects[k] for k in ("teeth_upper", "teeth_lower") if k in objects],
            "tongue": objects.get("tongue"), "rig": rig, "cameras": cams, "lights": lights, "animation": anim,
            "geometry": geo}


def pack_images(imported: dict) -> int:
    """Pack every image the import uses (textures and photo backgrounds) into the .blend; returns how many."""
    n = 0
    imgs = [img for o in imported["objects"].values() for img in materials.images_of(o)]
    imgs += [bg.image for cam in imported["cameras"] for bg in cam.data.background_images if bg.image]
    for img in dict.fromkeys(imgs):
        if not img.packed_file:
            img.pack()
            n += 1
    return n
