"""Materials: Principled BSDF set-ups that render in Cycles and EEVEE and export to glTF / FBX."""
from __future__ import annotations

import bpy

from .. import compat

# The baked images hold the skin's UDIM tiles side by side (1001 face, 1002 scalp/neck): an image W wide and
# H high covers u in [0, W/H]. A second UV layer with u scaled by H/W samples them as-is in every engine
# (Workbench and glTF ignore Mapping nodes; Workbench samples the active UV layer).
BAKED_UV = "UVMap_baked"
COLORS = {"skin": (0.8, 0.62, 0.52, 1.0), "mouth": (0.55, 0.2, 0.2, 1.0), "teeth": (0.9, 0.88, 0.8, 1.0),
          "eye_wet": (1.0, 1.0, 1.0, 0.0), "eyelashes": (0.05, 0.04, 0.03, 1.0), "tongue": (0.62, 0.27, 0.28, 1.0),
          "eye": (0.92, 0.92, 0.9, 1.0), "eye_shell": (1.0, 1.0, 1.0, 0.0)}
ROUGHNESS = {"teeth": 0.3, "tongue": 0.4, "eye": 0.35, "eye_shell": 0.0, "mouth": 0.5, "eye_wet": 0.1}
CORNEA_IOR = 1.376


def _bsdf(mat):
    nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
        nt.links.new(bsdf.outputs[0], out.inputs[0])
    return bsdf


def _texture(nt, image, uv_map, location):
    uvn = nt.nodes.new("ShaderNodeUVMap")
    uvn.uv_map = uv_map
    uvn.location = (location[0] - 250, location[1])
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.extension = "EXTEND"
    tex.location = location
    nt.links.new(uvn.outputs["UV"], tex.inputs["Vector"])
    return tex


def material(created, name: str, role: str, images: dict | None = None):
    """A material for `role` (a COLORS key). images: {"albedo", "normal"} for skin (BAKED_UV layer),
    {"albedo"} for the eyeball and the shell (their own UVMap)."""
    color = COLORS[role]
    mat = created.add(bpy.data.materials, compat.new_material_node_tree(name))
    mat.diffuse_color = color  # Workbench / solid view colour
    nt = mat.node_tree
    bsdf = _bsdf(mat)
    base = compat.principled_input(bsdf, "Base Color")
    base.default_value = color
    compat.principled_input(bsdf, "Roughness").default_value = ROUGHNESS.get(role, 0.55)
    images = images or {}
    if role == "eye_wet":
        compat.principled_input(bsdf, "Alpha").default_value = 0.0
        compat.set_blended(mat)
    if role == "eye_shell" and "albedo" not in images:
        # Clear cornea and sclera cover: the inner ball's iris and sclera show through it, with the highlights
        # of a wet surface. Transmission in Cycles / EEVEE / glTF (KHR_materials_transmission); the alpha 0 of
        # the solid-view colour lets Workbench see through it too.
        compat.principled_input(bsdf, "Transmission Weight", "Transmission").default_value = 1.0
        compat.principled_input(bsdf, "IOR").default_value = CORNEA_IOR
        base.default_value = (1.0, 1.0, 1.0, 1.0)
        compat.set_blended(mat)
    uv = BAKED_UV if role == "skin" else "UVMap"
    if "albedo" in images:
        tex = _texture(nt, images["albedo"], uv, (-400, 200))
        nt.links.new(tex.outputs["Color"], base)
    if "normal" in images:
        tex = _texture(nt, images["normal"], uv, (-600, -200))
        nm = nt.nodes.new("ShaderNodeNormalMap")
        nm.location = (-300, -200)
        nm.uv_map = uv
        nt.links.new(tex.outputs["Color"], nm.inputs["Color"])
        nt.links.new(nm.outputs["Normal"], compat.principled_input(bsdf, "Normal"))
    return mat


def images_of(obj) -> list:
    return [n.image for m in obj.data.materials if m and m.node_tree for n in m.node_tree.nodes
            if n.type == "TEX_IMAGE" and n.image is not None]
