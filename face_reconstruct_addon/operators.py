"""Operators: photo list / video, Reconstruct (modal), Cancel, Import result, view expressions, backend
check, expression transfer, Live Link Face CSV import / export, glTF export."""
from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import animation, backend_paths, compat, importer, installer, jobs, transfer
from .client import BackendError, check_backend
from .props import ADDON_ID, resolve_backend
from .shared import check_bundle, contract


class FACEFORGE_OT_photo_add(bpy.types.Operator, ImportHelper):
    """Add photos of the face"""

    bl_idname = "faceforge.photo_add"
    bl_label = "Add Photos"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=contract.file_filter(contract.IMAGE_EXTENSIONS), options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        settings = context.scene.faceforge
        names = [f.name for f in self.files if f.name] or [Path(self.filepath).name]
        folder = Path(self.directory or Path(self.filepath).parent)
        added = _add_photos(settings, [folder / n for n in names])
        self.report({"INFO"}, f"Added {added} photo(s)")
        return {"FINISHED"}


class FACEFORGE_OT_photo_add_folder(bpy.types.Operator):
    """Add every image in a folder"""

    bl_idname = "faceforge.photo_add_folder"
    bl_label = "Add Folder"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(subtype="DIR_PATH")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.directory))
        if not folder.is_dir():
            self.report({"ERROR"}, f"{folder}: not a folder")
            return {"CANCELLED"}
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in jobs.IMAGE_EXTS)
        if not files:
            self.report({"ERROR"}, f"{folder}: no images ({', '.join(sorted(e[1:] for e in jobs.IMAGE_EXTS))}) "
                                   "in this folder")
            return {"CANCELLED"}
        added = _add_photos(context.scene.faceforge, files)
        self.report({"INFO"}, f"Added {added} photo(s)")
        return {"FINISHED"}


def _add_photos(settings, paths) -> int:
    have = {p.filepath for p in settings.photos}
    n = 0
    for p in paths:
        s = str(p)
        if s not in have and Path(s).suffix.lower() in jobs.IMAGE_EXTS:
            settings.photos.add().filepath = s
            have.add(s)
            n += 1
    settings.active_photo = len(settings.photos) - 1
    return n


VIDEO_EXTS = contract.VIDEO_EXTENSIONS


class FACEFORGE_OT_video_choose(bpy.types.Operator, ImportHelper):
    """Reconstruct from a video instead of photos (replaces the photo list; the backend tracks every
    frame and the result imports as an animated head)"""

    bl_idname = "faceforge.video_choose"
    bl_label = "Choose Video"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=contract.file_filter(VIDEO_EXTS), options={"HIDDEN"})

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() not in VIDEO_EXTS or not path.is_file():
            self.report({"ERROR"}, f"{path}: not a video file ({', '.join(sorted(VIDEO_EXTS))})")
            return {"CANCELLED"}
        s = context.scene.faceforge
        # The client sends the list as the job's inputs; a video is one input on its own.
        s.photos.clear()
        s.photos.add().filepath = str(path)
        s.active_photo = 0
        self.report({"INFO"}, f"Video: {path.name}")
        return {"FINISHED"}


class FACEFORGE_OT_photo_remove(bpy.types.Operator):
    """Remove the selected photo from the list"""

    bl_idname = "faceforge.photo_remove"
    bl_label = "Remove Photo"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return len(context.scene.faceforge.photos) > 0

    def execute(self, context):
        s = context.scene.faceforge
        if 0 <= s.active_photo < len(s.photos):
            s.photos.remove(s.active_photo)
            s.active_photo = min(s.active_photo, len(s.photos) - 1)
        return {"FINISHED"}


class FACEFORGE_OT_photo_clear(bpy.types.Operator):
    """Remove all photos from the list"""

    bl_idname = "faceforge.photo_clear"
    bl_label = "Clear Photos"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.faceforge.photos.clear()
        return {"FINISHED"}


class FACEFORGE_OT_reconstruct(bpy.types.Operator):
    """Reconstruct a rigged 3D head from the photos (runs the backend in a separate process)"""

    bl_idname = "faceforge.reconstruct"
    bl_label = "Reconstruct"
    bl_options = {"REGISTER"}

    _timer = None
    _runner = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and jobs.ACTIVE["runner"] is None

    def invoke(self, context, event):
        if compat.is_background() or context.window is None:
            return self.execute(context)
        runner = jobs.Runner()
        try:
            runner.start(context)
        except BackendError as e:
            self.report({"ERROR"}, f"FaceForge: {e}")
            return {"CANCELLED"}
        self._runner = runner
        wm = context.window_manager
        # A timer, not a blocking wait: the backend runs for seconds to minutes and Blender's UI must
        # stay responsive; each tick only drains already-received events.
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        compat.status_text(context, jobs.status_line(context.scene.faceforge))
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._runner.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":  # Event has no timer id; any timer tick just polls (cheap, no blocking)
            return {"PASS_THROUGH"}
        state = self._runner.tick(context)
        compat.tag_redraw_all(context)
        if state == jobs.RUNNING:
            compat.status_text(context, jobs.status_line(context.scene.faceforge))
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        compat.status_text(context, None)
        return self._report_end(state)

    def cancel(self, context):
        # Blender calls this when the modal handler is torn down (window closed, file loaded).
        if self._runner is not None:
            self._runner.abort()
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)

    def execute(self, context):
        runner = jobs.Runner()
        try:
            runner.start(context)
        except BackendError as e:
            self.report({"ERROR"}, f"FaceForge: {e}")
            return {"CANCELLED"}
        self._runner = runner

        def progress(stage, fraction, message):
            print(f"FaceForge: {stage} {fraction * 100:3.0f}% {message}", flush=True)

        state = runner.run_blocking(context, on_progress=progress)
        return self._report_end(state)

    def _report_end(self, state):
        r = self._runner
        if state == jobs.FINISHED:
            self.report({"INFO"}, f"FaceForge: imported {r.imported['collection'].name}")
            return {"FINISHED"}
        if state == jobs.CANCELLED:
            kept = not r.temporary and r.output is not None and (r.output / "result.json").is_file()
            self.report({"WARNING"}, f"FaceForge: cancelled; the earlier result in {r.output} is unchanged"
                        if kept else "FaceForge: cancelled")
            return {"CANCELLED"}
        self.report({"ERROR"}, f"FaceForge: {r.error}")
        return {"CANCELLED"}


class FACEFORGE_OT_cancel(bpy.types.Operator):
    """Cancel the running reconstruction"""

    bl_idname = "faceforge.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return jobs.ACTIVE["runner"] is not None

    def execute(self, context):
        if not jobs.cancel_active():
            return {"CANCELLED"}
        return {"FINISHED"}


class FACEFORGE_OT_import_result(bpy.types.Operator, ImportHelper):
    """Import a FaceForge result folder (result.json, head.obj, blendshapes.npz)"""

    bl_idname = "faceforge.import_result"
    bl_label = "Import Face Reconstruction"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="result.json", options={"HIDDEN"})
    apply_view: IntProperty(name="Apply view", default=-1, min=-1,
                            description="Pose the head with this view's fitted expression (-1: neutral; each view "
                                        "stays one click away in Fitted Views)")
    pack_textures: BoolProperty(name="Pack Textures", default=True,
                                description="Pack textures and photos into the .blend; off: keep paths into the "
                                            "result folder")
    setup_scene: BoolProperty(name="Lights and Render Settings", default=True,
                              description="Add lights (and a World when the scene has none), Cycles and Standard "
                                          "colour management, so F12 renders the head")

    def execute(self, context):
        p = Path(bpy.path.abspath(self.filepath)).absolute()
        bundle = p if p.is_dir() else p.parent
        try:
            check_bundle(bundle)
            out = importer.import_bundle(bundle, context,
                                         apply_view_index=None if self.apply_view < 0 else self.apply_view,
                                         pack_textures=self.pack_textures, setup_scene=self.setup_scene)
        except (importer.BundleError, contract.ResultSchemaError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for w in (out.get("animation") or {}).get("warnings", []):
            self.report({"WARNING"}, w)
        self.report({"INFO"}, f"Imported {out['collection'].name}")
        return {"FINISHED"}


def _rig_from_context(context, rig_name=""):
    if rig_name and rig_name in bpy.data.objects:
        return bpy.data.objects[rig_name]
    return importer.find_rig(context.active_object)


class FACEFORGE_OT_apply_view(bpy.types.Operator):
    """Pose the head with the expression fitted to this photo and look through its camera"""

    bl_idname = "faceforge.apply_view"
    bl_label = "Apply View Expression"
    bl_options = {"REGISTER", "UNDO"}

    rig: StringProperty(default="", options={"HIDDEN"})
    camera: StringProperty(default="", options={"HIDDEN"})

    def execute(self, context):
        rig = _rig_from_context(context, self.rig)
        cam = bpy.data.objects.get(self.camera) if self.camera else context.active_object
        if rig is None or cam is None or "faceforge_expression" not in cam:
            self.report({"ERROR"}, "select a FaceForge camera (or pass rig and camera)")
            return {"CANCELLED"}
        importer.apply_view(rig, cam, context.scene)
        for area in (context.screen.areas if context.screen else ()):
            if area.type == "VIEW_3D":
                area.spaces.active.region_3d.view_perspective = "CAMERA"
        return {"FINISHED"}


class FACEFORGE_OT_reset_expression(bpy.types.Operator):
    """Set every expression control of the rig to 0"""

    bl_idname = "faceforge.reset_expression"
    bl_label = "Neutral Expression"
    bl_options = {"REGISTER", "UNDO"}

    rig: StringProperty(default="", options={"HIDDEN"})

    def execute(self, context):
        rig = _rig_from_context(context, self.rig)
        if rig is None:
            self.report({"ERROR"}, "select an object of a FaceForge import")
            return {"CANCELLED"}
        importer.reset_expression(rig)
        return {"FINISHED"}


class FACEFORGE_OT_install_backend(bpy.types.Operator):
    """Create the backend's Python environment (torch, MediaPipe, ...; a few GB from PyPI) with the same set-up as
    `python build.py setup`"""

    bl_idname = "faceforge.install_backend"
    bl_label = "Install Backend"

    _timer = None
    _install = None

    def _start(self, context):
        python, root = resolve_backend(context)
        prefs = compat.addon_preferences(context, ADDON_ID)
        inst = installer.Install(root, backend_paths.venv_of(python))
        if compat.online_access():
            inst.start()
        else:
            # The set-up downloads torch, MediaPipe, ... from PyPI: Blender's rule for extensions is to ask first.
            inst.state, inst.error = "error", (
                f"{inst.venv_dir}: not installed: online access is off (Preferences > System > Network > Allow "
                "Online Access); the set-up downloads its packages from PyPI")
        if prefs is not None:
            prefs.install_running, prefs.install_progress = inst.state == "running", 0.0
            prefs.install_status = f"Installing into {inst.venv_dir}"
        return inst, prefs

    def _finish(self, inst, prefs):
        ok = inst.state == "done"
        msg = inst.message if ok else f"FaceForge install: {inst.error}"
        if prefs is not None:
            prefs.install_running = False
            prefs.install_progress = 1.0 if ok else prefs.install_progress
            prefs.install_status = msg if ok else "! " + inst.error
        self.report({"INFO"} if ok else {"ERROR"}, msg)
        return {"FINISHED"} if ok else {"CANCELLED"}

    def invoke(self, context, event):
        if compat.is_background() or context.window is None:
            return self.execute(context)
        self._install, prefs = self._start(context)
        if self._install.state != "running":
            return self._finish(self._install, prefs)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._install.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        prefs = compat.addon_preferences(context, ADDON_ID)
        state = self._install.poll()
        if prefs is not None:
            prefs.install_progress, prefs.install_status = self._install.fraction, self._install.message
        compat.tag_redraw_all(context)
        for area in (context.screen.areas if context.screen else ()):
            if area.type == "PREFERENCES":
                area.tag_redraw()
        if state == "running":
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(self._install, prefs)

    def execute(self, context):
        inst, prefs = self._start(context)
        if inst.state == "running":
            import time

            while inst.poll() == "running":
                time.sleep(0.2)
        return self._finish(inst, prefs)


class FACEFORGE_OT_check_backend(bpy.types.Operator):
    """Check that the backend Python has torch and mediapipe and that the weights are installed"""

    bl_idname = "faceforge.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        python, root = resolve_backend(context)
        prefs = compat.addon_preferences(context, ADDON_ID)
        try:
            info = check_backend(python, root)
        except BackendError as e:
            msg = str(e)
            if prefs:
                prefs.check_report = "! " + msg
            self.report({"ERROR"}, f"FaceForge backend: {msg}")
            return {"CANCELLED"}
        lines = [f"Python: {info.get('python')}", f"torch: {info.get('torch') or '! missing'}",
                 f"mediapipe: {info.get('mediapipe') or '! missing'}"]
        lines += [f"{k}: {'found' if v else '! missing'}" for k, v in (info.get("weights") or {}).items()]
        lines += ["! " + p for p in info.get("problems", [])]
        if prefs:
            prefs.check_report = "\n".join(lines)
        if info.get("ok"):
            self.report({"INFO"}, f"FaceForge backend OK: torch {info['torch']}, mediapipe {info['mediapipe']}, "
                                  "weights found")
            return {"FINISHED"}
        self.report({"ERROR"}, "FaceForge backend: " + "; ".join(info.get("problems", [])))
        return {"CANCELLED"}


def _object(name):
    return bpy.data.objects.get(name) if name else None


def _report_transfer(op, result):
    op.report({"INFO"}, "FaceForge transfer: " + transfer.summary(result))
    if result["unmatched"]:
        print("FaceForge transfer: unmatched target names:", ", ".join(result["unmatched"]))
    print("FaceForge transfer: matched", ", ".join(f"{k} <- {v}" for k, v in result["matched"].items()))


class FACEFORGE_OT_transfer_expression(bpy.types.Operator):
    """Copy expression weights (one view, or the animation) from a FaceForge head or a Live Link Face CSV
    onto another FaceForge head or any mesh with ARKit-named shape keys"""

    bl_idname = "faceforge.transfer_expression"
    bl_label = "Transfer Expression"
    bl_options = {"REGISTER", "UNDO"}

    source_type: EnumProperty(name="From", items=[("HEAD", "FaceForge head", "A reconstructed head"),
                                                  ("CSV", "Live Link CSV", "A Live Link Face CSV take")],
                              default="HEAD")
    source: StringProperty(name="Source", default="", options={"SKIP_SAVE"},
                           description="Object of the source head (empty: panel setting)")
    filepath: StringProperty(name="CSV", subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    mode: EnumProperty(name="What", items=[("ACTION", "Animation", "Every keyed frame"),
                                           ("VIEW", "View", "The expression fitted to one photo")], default="ACTION")
    view_index: IntProperty(name="View", default=0, min=0)
    target: StringProperty(name="Target", default="", options={"SKIP_SAVE"},
                           description="Target object (empty: panel setting, else the active object)")
    include_head: BoolProperty(name="Head motion", default=True,
                               description="Also copy the head motion when both are FaceForge heads")
    use_panel: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"},
                            description="Fill empty arguments from the panel's settings")

    def execute(self, context):
        s = context.scene.faceforge
        panel = self.use_panel and not (self.source or self.filepath or self.target)
        source_type = s.transfer_source_type if panel else self.source_type
        mode = s.transfer_mode if panel else self.mode
        view = s.transfer_view if panel else self.view_index
        target = _object(self.target) or (s.transfer_target if panel else None) or context.active_object
        try:
            if source_type == "CSV":
                path = bpy.path.abspath(self.filepath or (s.transfer_csv if panel else ""))
                if not path:
                    raise transfer.TransferError("choose a Live Link Face CSV file")
                src = transfer.source_from_csv(path, context.scene)
            else:
                obj = _object(self.source) or (s.transfer_source if panel else None)
                if obj is None:
                    raise transfer.TransferError("choose a source head")
                src = transfer.source_from_head(obj, mode, view, context.scene)
            if target is None:
                raise transfer.TransferError("choose a target object")
            if source_type == "HEAD" and importer.find_rig(target) is not None and \
                    importer.find_rig(target) == importer.find_rig(obj):
                raise transfer.TransferError("source and target are the same head")
            result = transfer.transfer(src, target, context.scene, include_head=self.include_head)
        except transfer.TransferError as e:
            self.report({"ERROR"}, f"FaceForge transfer: {e}")
            return {"CANCELLED"}
        _report_transfer(self, result)
        return {"FINISHED"}


class FACEFORGE_OT_import_livelink_csv(bpy.types.Operator, ImportHelper):
    """Key a Live Link Face CSV take onto the active object (a FaceForge head or a mesh with ARKit shape keys)"""

    bl_idname = "faceforge.import_livelink_csv"
    bl_label = "Import Live Link Face CSV"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})
    target: StringProperty(default="", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def execute(self, context):
        target = _object(self.target) or context.active_object
        if target is None:
            self.report({"ERROR"}, "select the object to animate")
            return {"CANCELLED"}
        try:
            src = transfer.source_from_csv(bpy.path.abspath(self.filepath), context.scene)
            result = transfer.transfer(src, target, context.scene)
        except transfer.TransferError as e:
            self.report({"ERROR"}, f"FaceForge: {e}")
            return {"CANCELLED"}
        _report_transfer(self, result)
        return {"FINISHED"}


class FACEFORGE_OT_export_livelink_csv(bpy.types.Operator, ExportHelper):
    """Write the head's expression animation (or its current expression) as a Live Link Face CSV"""

    bl_idname = "faceforge.export_livelink_csv"
    bl_label = "Export Live Link Face CSV"

    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})
    rig: StringProperty(default="", options={"HIDDEN"})

    def execute(self, context):
        rig = _rig_from_context(context, self.rig)
        if rig is None:
            self.report({"ERROR"}, "select an object of a FaceForge import")
            return {"CANCELLED"}
        try:
            n = animation.export_csv(rig, bpy.path.abspath(self.filepath), context.scene)
        except OSError as e:
            self.report({"ERROR"}, f"{self.filepath}: cannot write ({e.strerror or e})")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {n} frame(s) to {Path(self.filepath).name}")
        return {"FINISHED"}


def _export_head(op, context, kind: str, write) -> set:
    """Shared body of the export operators: the head of the selection (or the active object), written by
    write(path, rig) -> bytes written; one line on failure naming the file."""
    rig = _rig_from_context(context, op.rig)
    if rig is None:
        op.report({"ERROR"}, "select an object of a FaceForge import (the head to export)")
        return {"CANCELLED"}
    path = Path(bpy.path.abspath(op.filepath)).absolute()
    try:
        size = write(path, rig)
    except (RuntimeError, OSError) as e:
        op.report({"ERROR"}, f"{path}: {kind} export failed: {str(e).strip().splitlines()[-1]}")
        return {"CANCELLED"}
    op.report({"INFO"}, f"Wrote {path} ({size / 1e6:.1f} MB)")
    return {"FINISHED"}


class FACEFORGE_OT_export_glb(bpy.types.Operator, ExportHelper):
    """Export the selected FaceForge head (or the active one) as binary glTF: its 52 ARKit morph targets, skin and
    animation (driven shape keys baked for the export)"""

    bl_idname = "faceforge.export_glb"
    bl_label = "Export Head as glTF (.glb)"

    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
    animations: BoolProperty(name="Animation", default=True)
    compression: EnumProperty(name="Morph Targets", default="SPARSE",
                              items=[("NONE", "Dense", "Every morph target stores every vertex"),
                                     ("SPARSE", "Sparse", "Morph targets store only the vertices they move"),
                                     ("DRACO", "Draco", "Sparse morph targets and Draco-compressed base meshes "
                                                        "(Blender's Draco encoder leaves morph targets out; needs a "
                                                        "Draco decoder in the viewer)")])
    rig: StringProperty(default="", options={"HIDDEN"})

    def execute(self, context):
        return _export_head(self, context, "glTF", lambda path, rig: animation.export_glb(
            path, context.scene, animations=self.animations, rig=rig, draco=self.compression == "DRACO",
            sparse=self.compression in ("SPARSE", "DRACO")))


class FACEFORGE_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Export the selected FaceForge head (or the active one) as FBX for Unreal / Unity: armature, meshes and the 52
    ARKit-named blend shapes"""

    bl_idname = "faceforge.export_fbx"
    bl_label = "Export Head as FBX (.fbx)"

    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})
    animations: BoolProperty(name="Animation", default=True)
    rig: StringProperty(default="", options={"HIDDEN"})

    def execute(self, context):
        return _export_head(self, context, "FBX", lambda path, rig: animation.export_fbx(
            path, context.scene, rig, animations=self.animations))


def menu_import(self, context):
    self.layout.operator(FACEFORGE_OT_import_result.bl_idname, text="Face reconstruction result (.json)")
    self.layout.operator(FACEFORGE_OT_import_livelink_csv.bl_idname, text="Live Link Face CSV (.csv)")


def menu_export(self, context):
    self.layout.operator(FACEFORGE_OT_export_livelink_csv.bl_idname, text="Live Link Face CSV (.csv)")
    self.layout.operator(FACEFORGE_OT_export_glb.bl_idname, text="FaceForge head glTF (.glb)")
    self.layout.operator(FACEFORGE_OT_export_fbx.bl_idname, text="FaceForge head FBX (.fbx)")


classes = (FACEFORGE_OT_photo_add, FACEFORGE_OT_photo_add_folder, FACEFORGE_OT_video_choose,
           FACEFORGE_OT_photo_remove, FACEFORGE_OT_photo_clear, FACEFORGE_OT_reconstruct, FACEFORGE_OT_cancel,
           FACEFORGE_OT_import_result, FACEFORGE_OT_apply_view, FACEFORGE_OT_reset_expression,
           FACEFORGE_OT_install_backend, FACEFORGE_OT_check_backend, FACEFORGE_OT_transfer_expression, FACEFORGE_OT_import_livelink_csv,
           FACEFORGE_OT_export_livelink_csv, FACEFORGE_OT_export_glb, FACEFORGE_OT_export_fbx)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister():
    jobs.abort_active()
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    for c in reversed(classes):
        bpy.utils.unregister_class(c)

