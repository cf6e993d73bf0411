"""One camera per photo (its photo as background) and the video camera; switching the rig between views."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .. import compat
from ..io.bundle import view_arkit
from ..io.cameras import camera_world, clip_range, lens_and_shift, render_size
from .rig import set_controls


def set_intrinsics(data, camera: dict, width: int, height: int) -> None:
    p = lens_and_shift(camera, width, height)
    data.sensor_fit = "AUTO"
    data.sensor_width = p["sensor_width"]
    data.lens = p["lens"]
    data.shift_x, data.shift_y = p["shift_x"], p["shift_y"]


def _camera(created, coll, name, R, t):
    data = created.add(bpy.data.cameras, bpy.data.cameras.new(name))
    data.clip_start, data.clip_end = clip_range(t)
    obj = created.add(bpy.data.objects, bpy.data.objects.new(name, data))
    coll.objects.link(obj)
    obj.matrix_world = Matrix(camera_world(R, t).tolist())
    return obj


def _background(data, image=None, clip=None):
    bg = data.background_images.new()
    if clip is not None:
        bg.source = "MOVIE_CLIP"
        bg.clip = clip
        bg.use_camera_clip = False
    else:
        bg.image = image
    bg.frame_method = "STRETCH"
    bg.alpha = 1.0
    data.show_background_images = True


def make_view_camera(created, coll, subject, i, view, image_path: Path | None, names, rig):
    cam = view["camera"]
    w, h = int(view["width"]), int(view["height"])
    obj = _camera(created, coll, f"{subject}_cam_{view.get('name', i)}", cam["R"], cam["t"])
    set_intrinsics(obj.data, cam, w, h)
    if image_path is not None:
        _background(obj.data, image=created.add(bpy.data.images, compat.load_image(image_path)))
    obj["faceforge_view_index"] = i
    obj["faceforge_rig"] = rig
    obj["faceforge_size"] = [w, h]
    obj["faceforge_fx_fy_cx_cy"] = [float(cam["fx"]), float(cam["fy"]), float(cam["cx"]), float(cam["cy"])]
    obj["faceforge_expression"] = view_arkit(view, names)  # the 52 rig controls this view was fitted with
    obj["faceforge_model_expression"] = {str(k): float(v) for k, v in (view.get("expression") or {}).items()}
    err = view.get("reprojection_error_px") or {}
    if "median" in err:
        obj["faceforge_reprojection_median_px"] = float(err["median"])
    if abs(float(cam["fx"]) - float(cam["fy"])) > 1e-3 * float(cam["fx"]):
        # Blender has one focal length per camera; non-square pixels go into the pixel aspect.
        obj["faceforge_pixel_aspect"] = float(cam["fy"]) / float(cam["fx"])
    return obj


def make_video_camera(created, coll, rig, anim, R_ref, t_ref, warnings):
    cam = anim.get("camera") or {}
    w, h = int(anim.get("width") or 0), int(anim.get("height") or 0)
    obj = _camera(created, coll, f"{coll.name}_cam_video", R_ref, t_ref)
    if cam and w and h:
        set_intrinsics(obj.data, cam, w, h)
    # Not "faceforge_rig": that marks photo-view cameras (view_cameras / apply_view).
    obj["faceforge_video_rig"] = rig
    obj["faceforge_size"] = [w, h]
    src = str(anim.get("source_path") or "")
    obj["faceforge_video"] = src
    clip = None
    if not src or not Path(src).is_file():
        warnings.append(f"{src or '(no path)'}: video not found; the video camera has no background")
    else:
        try:
            clip = created.add(bpy.data.movieclips, bpy.data.movieclips.load(src, check_existing=False))
        except RuntimeError as e:
            warnings.append(f"{src}: cannot open the video ({str(e).strip().splitlines()[-1]}); "
                            "the video camera has no background")
    if clip is not None:
        clip.frame_start = 1  # clip frame f (1-based) = source frame f-1 = scene frame f (animation.py)
        _background(obj.data, clip=clip)
    return obj


def view_cameras(rig):
    cams = [o for o in bpy.data.objects if o.type == "CAMERA" and o.get("faceforge_rig") == rig]
    return sorted(cams, key=lambda o: o.get("faceforge_view_index", 0))


def video_camera(rig):
    return next((o for o in bpy.data.objects if o.type == "CAMERA" and o.get("faceforge_video_rig") == rig), None)


def look_through(cam_obj, scene) -> None:
    """Make the camera active with the render size of its photo (so the camera background lines up)."""
    scene.camera = cam_obj
    w, h = cam_obj.get("faceforge_size", (0, 0))
    if w and h:
        scene.render.resolution_x, scene.render.resolution_y = render_size(int(w), int(h))
        scene.render.resolution_percentage = 100


def apply_view(rig, cam_obj, scene=None, expression: bool = True) -> None:
    """Look through the view's camera and (expression=True) pose the rig with the expression fitted to it."""
    if expression:
        set_controls(rig, cam_obj.get("faceforge_expression") or {})
    look_through(cam_obj, scene or bpy.context.scene)


def reset_expression(rig) -> None:
    set_controls(rig, {})


def camera_distance(cam_obj) -> float:
    return float(np.linalg.norm(np.array(cam_obj.matrix_world.translation)))
