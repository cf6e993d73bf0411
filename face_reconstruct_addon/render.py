"""Workbench (CPU-friendly) render of an imported head through one of its view cameras.

Used by run.py --render and for docs/render_front.png. The photo is a viewport-only camera
background, so for an overlay the head is rendered on a transparent film and composited over the
photo here with numpy.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import compat, importer


def _pixels(img) -> np.ndarray:
    a = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(a)
    return a.reshape(img.size[1], img.size[0], 4)


def render_view(rig, cam, filepath, scale: int = 3, overlay: bool = True, side_by_side: bool = True,
                opacity: float = 0.65) -> Path:
    """Render `cam`'s view of the import to a PNG; returns its path.

    overlay: head over the photo; side_by_side: [overlay | head alone] in one image.
    """
    scene = bpy.context.scene
    importer.apply_view(rig, cam, scene)
    r = scene.render
    r.engine = compat.workbench_engine()
    r.resolution_percentage = 100
    w, h = int(cam["faceforge_size"][0]) * scale, int(cam["faceforge_size"][1]) * scale
    r.resolution_x, r.resolution_y = w, h
    r.film_transparent = True
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "TEXTURE" if _has_texture(rig) else "MATERIAL"
    shading.show_cavity = True
    shading.show_object_outline = False
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    filepath = Path(filepath).resolve()
    filepath.parent.mkdir(parents=True, exist_ok=True)
    tmp = filepath.with_name(filepath.stem + ".head.png")
    r.filepath = str(tmp)
    bpy.ops.render.render(write_still=True)
    head_img = bpy.data.images.load(str(tmp), check_existing=False)
    try:
        head = _pixels(head_img)
        photo_img = next((bg.image for bg in cam.data.background_images if bg.image), None)
        panels = [head]
        if overlay and photo_img is not None:
            ph = photo_img.copy()
            try:
                ph.scale(w, h)
                photo = _pixels(ph)[..., :4]
            finally:
                bpy.data.images.remove(ph)
            a = head[..., 3:4] * opacity  # see-through, so the fit against the photo stays visible
            comp = photo.copy()
            comp[..., :3] = head[..., :3] * a + photo[..., :3] * (1 - a)
            comp[..., 3] = 1.0
            panels = [comp, _over_grey(head)] if side_by_side else [comp]
        else:
            panels = [_over_grey(head)]
        out = np.concatenate(panels, axis=1)
        res = bpy.data.images.new("faceforge_render", out.shape[1], out.shape[0], alpha=True)
        try:
            res.pixels.foreach_set(out.ravel())
            res.filepath_raw = str(filepath)
            res.file_format = "PNG"
            res.save()
        finally:
            bpy.data.images.remove(res)
    finally:
        bpy.data.images.remove(head_img)
        tmp.unlink(missing_ok=True)
    return filepath


def _over_grey(rgba: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    a = rgba[..., 3:4]
    out[..., :3] = rgba[..., :3] * a + 0.18 * (1 - a)
    out[..., 3] = 1.0
    return out


def _has_texture(rig) -> bool:
    for child in rig.children:
        if child.type == "MESH":
            for m in child.data.materials:
                if m and m.node_tree and any(n.type == "TEX_IMAGE" and n.image for n in m.node_tree.nodes):
                    return True
    return False
