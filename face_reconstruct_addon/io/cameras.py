"""Model space and OpenCV cameras -> Blender's axes and camera parameters, as numpy (no bpy, no mathutils).

Model space: cm, +Y up, +Z out of the face. Blender: m, +Z up, the face looking down -Y.
"""
from __future__ import annotations

import math

import numpy as np

AXIS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SCALE = 0.01
SENSOR_WIDTH_MM = 36.0


def to_blender(points_cm) -> np.ndarray:
    return (np.asarray(points_cm, np.float64) @ AXIS.T) * SCALE


def camera_world(R, t) -> np.ndarray:
    """OpenCV extrinsics (x_cam = R X + t, cm) -> 4x4 Blender camera world matrix (camera looks down -Z)."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    m = np.eye(4)
    m[:3, :3] = AXIS @ R.T @ np.diag([1.0, -1.0, -1.0])
    m[:3, 3] = AXIS @ (-R.T @ t) * SCALE
    return m


def lens_and_shift(camera: dict, width: int, height: int) -> dict:
    """Focal length and principal point in pixels -> Blender lens (mm on a 36 mm sensor, sensor fit AUTO) and
    shift. Blender maps the larger image side to the sensor width; OpenCV pixel (0, 0) is the centre of the
    top-left pixel, hence the +0.5. A positive shift moves the frame (not the scene) right/up."""
    big = max(width, height)
    return {"sensor_width": SENSOR_WIDTH_MM, "lens": float(camera["fx"]) * SENSOR_WIDTH_MM / big,
            "shift_x": (width / 2.0 - float(camera["cx"]) - 0.5) / big,
            "shift_y": (float(camera["cy"]) + 0.5 - height / 2.0) / big}


def clip_range(t_cm) -> tuple[float, float]:
    dist = float(np.linalg.norm(t_cm)) * SCALE
    return max(0.001, dist * 0.05), max(10.0, dist * 20)


def render_size(width: int, height: int, min_long_side: int = 1080) -> tuple[int, int]:
    """Render resolution for a photo: its own aspect (so the camera background lines up) and size, scaled by a
    whole factor until the long side reaches `min_long_side` (a 224 px photo renders at 1120 px, not 224)."""
    k = max(1, math.ceil(min_long_side / max(width, height, 1)))
    return int(width) * k, int(height) * k


def head_motion(R_ref, t_ref, R_k, t_k) -> np.ndarray:
    """4x4 rigid motion of video frame k in Blender space: model X -> R_ref^T (R_k X + t_k - t_ref) (cm, model
    axes, docs/result-bundle.md), conjugated by the axis change and scaled to metres."""
    m = np.eye(4)
    m[:3, :3] = AXIS @ R_ref.T @ R_k @ AXIS.T
    m[:3, 3] = AXIS @ (R_ref.T @ (t_k - t_ref)) * SCALE
    return m


def head_angles(rotation_blender) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians of a head rotation given in Blender axes, read in model axes (+Y up, +Z
    out of the face, +X the subject's left), R = Ry(yaw) Rx(pitch) Rz(roll): yaw > 0 turns the face towards the
    subject's left, pitch > 0 tilts it down, roll > 0 lifts the subject's left side."""
    rm = AXIS.T @ np.asarray(rotation_blender, np.float64)[:3, :3] @ AXIS
    pitch = math.asin(max(-1.0, min(1.0, -rm[1, 2])))
    yaw = math.atan2(rm[0, 2], rm[2, 2])
    roll = math.atan2(rm[1, 0], rm[1, 1])
    return yaw, pitch, roll
