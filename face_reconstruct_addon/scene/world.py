"""What a saved scene needs to render on F12: a World, lights around the head, a render engine that runs
everywhere, standard colour management. The render size comes from the active view's photo (cameras.py)."""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Vector

from .. import compat

WORLD_COLOR = (0.42, 0.44, 0.47)   # soft grey studio ambient
WORLD_STRENGTH = 0.5
# Three-point lighting around the face (Blender axes: the face looks down -Y, the subject's left is +X), as
# (direction from the head, distance m, power W, area size m). Powers are for Cycles' Standard view transform.
LIGHTS = {"key": ((0.55, -0.85, 0.45), 1.1, 90.0, 0.7),
          "fill": ((-0.8, -0.55, 0.05), 1.2, 30.0, 1.0),
          "rim": ((-0.2, 0.85, 0.6), 1.0, 60.0, 0.5)}
RENDER_SAMPLES = 64


def ensure_world(scene, created):
    """The scene's world, made when it has none (a user's own world is kept)."""
    if scene.world is not None:
        return scene.world
    world = created.add(bpy.data.worlds, compat.new_world("FaceForge World"))
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    bg.inputs["Color"].default_value = (*WORLD_COLOR, 1.0)
    bg.inputs["Strength"].default_value = WORLD_STRENGTH
    world.color = WORLD_COLOR  # Workbench's world colour
    scene.world = world
    return world


def add_lights(created, coll, subject: str, centre) -> list:
    out = []
    c = Vector(centre)
    for name, (direction, dist, power, size) in LIGHTS.items():
        data = created.add(bpy.data.lights, bpy.data.lights.new(f"{subject}_{name}", "AREA"))
        data.energy = power
        data.size = size
        obj = created.add(bpy.data.objects, bpy.data.objects.new(f"{subject}_{name}", data))
        d = Vector(direction).normalized()
        obj.location = c + d * dist
        # An area light shines down its local -Z: point it at the head.
        obj.rotation_euler = (-d).to_track_quat("-Z", "Y").to_euler()
        coll.objects.link(obj)
        obj["faceforge_light"] = name
        out.append(obj)
    return out


def render_settings(scene) -> None:
    """Cycles on the CPU (renders in background mode and without a GPU; EEVEE needs an OpenGL context) with a
    modest sample count, and the Standard view transform so photos and baked textures show as they are."""
    scene.render.engine = "CYCLES"
    cy = scene.cycles
    cy.samples = RENDER_SAMPLES
    cy.use_adaptive_sampling = True
    compat.enable_denoising(scene)
    scene.render.film_transparent = False
    vs = scene.view_settings
    vs.view_transform = "Standard"
    vs.look = "None"
    vs.exposure = 0.0
    vs.gamma = 1.0


def head_centre(obj) -> np.ndarray:
    co = np.zeros(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    m = np.array(obj.matrix_world)
    co = co @ m[:3, :3].T + m[:3, 3]
    return (co.min(0) + co.max(0)) / 2
