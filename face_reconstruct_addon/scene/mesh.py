"""Mesh objects with UVs, shape keys and vertex groups."""
from __future__ import annotations

import bpy
import numpy as np

from .. import compat
from ..io.cameras import to_blender


class MeshError(Exception):
    """Mesh data Blender had to repair; str() names the object."""


def make_mesh(name, verts_bl, sizes, loop_vertex, loop_uv, uvs, uv_name="UVMap"):
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts_bl))
    me.vertices.foreach_set("co", np.asarray(verts_bl, np.float32).ravel())
    me.loops.add(len(loop_vertex))
    me.loops.foreach_set("vertex_index", np.asarray(loop_vertex, np.int32))
    me.polygons.add(len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    me.polygons.foreach_set("loop_start", starts)
    if len(uvs) and (loop_uv >= 0).all():
        layer = me.uv_layers.new(name=uv_name)
        layer.data.foreach_set("uv", uvs[loop_uv].astype(np.float32).ravel())
    me.update(calc_edges=True)
    if me.validate(verbose=False):
        # validate() returns True when it had to fix something: the OBJ was inconsistent.
        bpy.data.meshes.remove(me)
        raise MeshError(f"{name}: mesh data was invalid and had to be repaired")
    compat.set_smooth(me)
    return me


def add_shape_keys(obj, base_cm, shapes: dict) -> None:
    """Basis plus one key per entry of `shapes` (name -> (n, 3) delta in cm), sliders 0..1."""
    obj.shape_key_add(name="Basis", from_mix=False)
    base = to_blender(base_cm)
    for n, d in shapes.items():
        sk = obj.shape_key_add(name=n, from_mix=False)
        sk.data.foreach_set("co", (base + to_blender(d)).astype(np.float32).ravel())
        sk.slider_min, sk.slider_max = 0.0, 1.0
    obj.data.shape_keys.use_relative = True
    obj.active_shape_key_index = 0


def add_groups(obj, weights: dict) -> None:
    """One vertex group per bone with its weights (levels rounded to 1e-3, one add() per level)."""
    for gname, w in weights.items():
        vg = obj.vertex_groups.new(name=gname)
        level = np.round(w, 3)
        for lv in np.unique(level):
            if lv <= 0:
                continue
            vg.add(np.nonzero(level == lv)[0].tolist(), float(lv), "REPLACE")
