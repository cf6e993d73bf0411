"""Materials: Principled BSDF set-ups that render in Cycles and EEVEE and export to glTF / FBX."""
from __future__ import annotations

import bpy
import numpy as np

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
# ICT's eyelashes are hair cards meant for an alpha texture (u runs along the lid; v < 0.5 lower lids); drawn
# opaque they are grey shelves over the eye opening (the saved scene's eyes did not read as eyes). The add-on draws
# its own strands: LASH_STRANDS dark columns of u per lid, covering LASH_COVER of the card.
LASH_STRANDS = 110
LASH_COVER = 0.3
LASH_RGB = (0.025, 0.02, 0.018)


def _bsdf(mat):
    nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
        nt.links.new(bsdf.outputs[0], out.inputs[0])
    return bsdf


def _texture(nt, image, uv_map, location, extension="EXTEND"):
    uvn = nt.nodes.new("ShaderNodeUVMap")
    uvn.uv_map = uv_map
    uvn.location = (location[0] - 250, location[1])
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.extension = extension
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
        # of a wet surface. Transmission in EEVEE / glTF (KHR_materials_transmission) / FBX; the alpha 0 of
        # the solid-view colour lets Workbench see through it too.
        compat.principled_input(bsdf, "Transmission Weight", "Transmission").default_value = 1.0
        compat.principled_input(bsdf, "IOR").default_value = CORNEA_IOR
        base.default_value = (1.0, 1.0, 1.0, 1.0)
        compat.set_blended(mat)
        _cycles_clear_coat(nt)
    if role == "eyelashes":
        images = {"albedo": eyelash_image(created)}
    uv = BAKED_UV if role == "skin" else "UVMap"
    if "albedo" in images:
        # The lash cards sit in UDIM tile 1007 (u 6..7): REPEAT brings them onto the one strand image.
        tex = _texture(nt, images["albedo"], uv, (-400, 200), "REPEAT" if role == "eyelashes" else "EXTEND")
        nt.links.new(tex.outputs["Color"], base)
        if role == "eyelashes":
            nt.links.new(tex.outputs["Alpha"], compat.principled_input(bsdf, "Alpha"))
            compat.set_blended(mat)
    if "normal" in images:
        tex = _texture(nt, images["normal"], uv, (-600, -200))
        nm = nt.nodes.new("ShaderNodeNormalMap")
        nm.location = (-300, -200)
        nm.uv_map = uv
        nt.links.new(tex.outputs["Color"], nm.inputs["Color"])
        nt.links.new(nm.outputs["Normal"], compat.principled_input(bsdf, "Normal"))
    return mat


def _cycles_clear_coat(nt) -> None:
    """The shell as Cycles should see it, through an output of its own (target CYCLES; EEVEE, glTF and FBX keep the
    Principled transmission). Cycles treats a refractive surface as opaque to shadow rays, so behind it the iris
    got light only through caustics: a dark, speckled eye at any sample count a scene would use. Here the shell is
    Transparent (rays pass straight on, light included) mixed by Fresnel (the cornea's IOR) with a sharp Glossy for
    the wet highlights."""
    principled_out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
    principled_out.target = "EEVEE"
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    out.target = "CYCLES"
    out.location = (principled_out.location[0], principled_out.location[1] - 300)
    fresnel = nt.nodes.new("ShaderNodeFresnel")
    fresnel.inputs["IOR"].default_value = CORNEA_IOR
    clear = nt.nodes.new("ShaderNodeBsdfTransparent")
    gloss = nt.nodes.new("ShaderNodeBsdfGlossy")
    gloss.inputs["Roughness"].default_value = 0.02
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(fresnel.outputs[0], mix.inputs[0])
    nt.links.new(clear.outputs[0], mix.inputs[1])
    nt.links.new(gloss.outputs[0], mix.inputs[2])
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    principled_out.is_active_output = True  # the one glTF's exporter follows


def _strands(n: int, w: int, rng) -> np.ndarray:
    """Alpha along u of `n` strands (jittered spacing and width), covering LASH_COVER of the width."""
    centres = (np.arange(n) + 0.5 + rng.uniform(-0.35, 0.35, n)) / n
    half = 0.5 * LASH_COVER / n * rng.uniform(0.7, 1.3, n)
    u = (np.arange(w) + 0.5) / w
    d = np.abs(u[:, None] - centres[None, :])
    d = np.minimum(d, 1.0 - d)  # wraps around: REPEAT
    # A flat core and a one-texel ramp either side, so the strands neither alias nor blur away at 1024 px.
    return np.clip((half[None, :] - d) * w + 0.5, 0.0, 1.0).max(axis=1)


def eyelash_image(created):
    """Dark strands across the lid (columns of u), RGBA, packed (it has no file to reload from). The cards of the
    lower lids hold v < 0.5 (measured on ICT's neutral: mean height 4.8 mm below the upper cards'), and lower lashes
    are fewer and finer, and the cards overlap (four deep in places: drawn like the upper ones they made a dark band
    under the eye): a third of the strands at 40 % opacity there."""
    w, h = 1024, 8
    rng = np.random.default_rng(7)  # the same lashes on every import
    px = np.empty((h, w, 4), np.float32)
    px[..., :3] = LASH_RGB
    px[h // 2:, :, 3] = _strands(LASH_STRANDS, w, rng)[None, :]        # rows from the bottom: v >= 0.5, upper
    px[:h // 2, :, 3] = 0.4 * _strands(LASH_STRANDS // 3, w, rng)[None, :]
    img = created.add(bpy.data.images, bpy.data.images.new("FaceForge eyelashes", w, h, alpha=True))
    img.pixels.foreach_set(px.ravel())
    img.pack()
    return img


def images_of(obj) -> list:
    return [n.image for m in obj.data.materials if m and m.node_tree for n in m.node_tree.nodes
            if n.type == "TEX_IMAGE" and n.image is not None]
