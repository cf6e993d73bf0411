"""Scene settings and add-on preferences.

No `from __future__ import annotations` here: Blender reads the property annotations at class
registration and older releases (4.2) expect evaluated objects, not strings.
"""
import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from . import backend_paths, compat

ADDON_ID = __package__


class FACEFORGE_PG_photo(bpy.types.PropertyGroup):
    filepath: StringProperty(name="Photo", subtype="FILE_PATH")


class FACEFORGE_PG_settings(bpy.types.PropertyGroup):
    photos: CollectionProperty(type=FACEFORGE_PG_photo)
    active_photo: IntProperty(name="Active photo", default=0)
    landmarks: EnumProperty(
        name="Landmarks", default="mediapipe",
        items=[("mediapipe", "MediaPipe (478)", "MediaPipe Face Landmarker, dense 478 points"),
               ("fan", "FAN (68)", "face-alignment network, iBUG 68 points")])
    device: EnumProperty(
        name="Device", default="auto",
        items=[("auto", "Auto", "CUDA when available, else CPU"), ("cpu", "CPU", "Force CPU"),
               ("cuda", "CUDA", "Force an NVIDIA GPU")])
    texture_size: EnumProperty(
        name="Texture", default="2048",
        items=[("0", "None", "Do not bake textures"), ("512", "512", ""), ("1024", "1024", ""),
               ("2048", "2048", ""), ("4096", "4096", "")])
    output_dir: StringProperty(
        name="Result folder", subtype="DIR_PATH", default="",
        description="Where the result bundle is written; empty: a new temporary folder (images are then "
                    "packed into the .blend)")
    subject: StringProperty(name="Name", default="", description="Collection name; empty: from the photos")
    pack_textures: BoolProperty(
        name="Pack Textures", default=True,
        description="Pack the textures and photos into the .blend (it then no longer needs the result folder); "
                    "off: keep them as paths into the result folder")
    # Expression transfer (operators.FACEFORGE_OT_transfer_expression reads these from the panel).
    transfer_source_type: EnumProperty(
        name="From", default="HEAD",
        items=[("HEAD", "FaceForge head", "A reconstructed head (a view or its video animation)"),
               ("CSV", "Live Link CSV", "A Live Link Face CSV take")])
    transfer_source: PointerProperty(name="Source", type=bpy.types.Object,
                                     description="Any object of the source FaceForge import")
    transfer_csv: StringProperty(name="CSV", subtype="FILE_PATH", default="")
    transfer_mode: EnumProperty(
        name="What", default="ACTION",
        items=[("ACTION", "Animation", "Every keyed frame of the source's animation"),
               ("VIEW", "View", "The expression fitted to one photo")])
    transfer_view: IntProperty(name="View", default=0, min=0)
    transfer_target: PointerProperty(name="Target", type=bpy.types.Object,
                                     description="A FaceForge head or any mesh with ARKit-named shape keys "
                                                 "(empty: the active object)")
    # Live job state (written by the running job, read by the panel).
    running: BoolProperty(default=False, options={"SKIP_SAVE"})
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, options={"SKIP_SAVE"})
    stage: StringProperty(default="", options={"SKIP_SAVE"})
    last_error: StringProperty(default="", options={"SKIP_SAVE"})


class FACEFORGE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Python of the backend's virtualenv; empty: FACEFORGE_PYTHON, else <backend folder>/.venv")
    backend_root: StringProperty(
        name="Backend folder", subtype="DIR_PATH", default="",
        description="Folder that contains backend/; empty: FACEFORGE_ROOT, else the checkout holding the add-on")
    keep_backend_running: BoolProperty(
        name="Keep Backend Running", default=True,
        description="Keep the backend process (with torch and the models loaded) between reconstructions; it ends "
                    "with Blender or when the add-on is disabled")
    check_report: StringProperty(default="", options={"SKIP_SAVE"})
    install_progress: FloatProperty(default=0.0, min=0.0, max=1.0, options={"SKIP_SAVE"})
    install_status: StringProperty(default="", options={"SKIP_SAVE"})
    install_running: BoolProperty(default=False, options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_path")
        layout.prop(self, "backend_root")
        layout.prop(self, "keep_backend_running")
        py, root, notes = backend_paths.resolve(self.python_path, self.backend_root, default_venv_dir())
        col = layout.column(align=True)
        col.label(text=f"Using Python: {py}")
        col.label(text=f"Using backend: {root}")
        for n in notes:
            col.label(text=n, icon="INFO")
        row = layout.row()
        if self.install_running:
            compat.draw_progress(row, self.install_progress, self.install_status or "Installing")
        else:
            row.operator("faceforge.install_backend", icon="IMPORT")
            row.operator("faceforge.check_backend", icon="CHECKMARK")
            if self.install_status:
                layout.label(text=self.install_status, icon="ERROR" if self.install_status.startswith("!") else "INFO")
        for line in self.check_report.splitlines():
            layout.label(text=line, icon="ERROR" if line.startswith("!") else "NONE")


def default_venv_dir() -> str | None:
    """Where "Install backend" puts the shipped backend's environment: the extension's own user folder."""
    return compat.extension_user_dir(ADDON_ID, "venv")


def resolve_backend(context) -> tuple[str, str]:
    prefs = compat.addon_preferences(context, ADDON_ID)
    py, root, _ = backend_paths.resolve(prefs.python_path if prefs else "", prefs.backend_root if prefs else "",
                                        default_venv_dir())
    return py, root


classes = (FACEFORGE_PG_photo, FACEFORGE_PG_settings, FACEFORGE_AP_preferences)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Scene.faceforge = PointerProperty(type=FACEFORGE_PG_settings)


def unregister():
    del bpy.types.Scene.faceforge
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
