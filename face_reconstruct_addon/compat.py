"""Every Blender API difference between 4.2 and 5.x that the add-on touches lives here.

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


def draw_progress(layout, factor: float, text: str) -> None:
    """`UILayout.progress` exists from 4.0; older builds get a text row."""
    if "progress" in bpy.types.UILayout.bl_rna.functions:
        layout.progress(factor=max(0.0, min(1.0, factor)), type="BAR", text=text)
    else:  # pragma: no cover
        layout.label(text=f"{text} ({factor * 100:.0f}%)")


def export_glb(filepath: str) -> None:
    """glTF binary with shape keys and skin. Option names in io_scene_gltf2 churn between releases,
    so only pass the ones this build knows."""
    props = bpy.ops.export_scene.gltf.get_rna_type().properties.keys()
    wanted = {"export_format": "GLB", "export_morph": True, "export_skins": True, "export_cameras": True,
              "export_yup": True, "export_apply": False, "export_animations": False}
    kwargs = {k: v for k, v in wanted.items() if k in props}
    result = bpy.ops.export_scene.gltf(filepath=str(filepath), **kwargs)
    if "FINISHED" not in result:
        raise RuntimeError(f"glTF export failed ({result})")


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
