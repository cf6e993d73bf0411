"""View3D > Sidebar > Face."""
from __future__ import annotations

import bpy

from . import compat, importer, jobs
from .operators import VIDEO_EXTS


class FACEFORGE_UL_photos(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        name = bpy.path.basename(item.filepath)
        is_video = any(name.lower().endswith(e) for e in VIDEO_EXTS)
        layout.label(text=name or "(empty)", icon="FILE_MOVIE" if is_video else "IMAGE_DATA")


class FACEFORGE_PT_reconstruct(bpy.types.Panel):
    bl_label = "Face Reconstruction"
    bl_idname = "FACEFORGE_PT_reconstruct"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face"

    def draw(self, context):
        s = context.scene.faceforge
        # `running` is saved with the scene; only a live job in this session counts.
        running = s.running and jobs.ACTIVE["runner"] is not None
        layout = self.layout
        row = layout.row()
        row.template_list("FACEFORGE_UL_photos", "", s, "photos", s, "active_photo", rows=3)
        col = row.column(align=True)
        col.operator("faceforge.photo_add", icon="ADD", text="")
        col.operator("faceforge.photo_remove", icon="REMOVE", text="")
        col.operator("faceforge.photo_add_folder", icon="FILE_FOLDER", text="")
        col.operator("faceforge.video_choose", icon="FILE_MOVIE", text="")
        col.operator("faceforge.photo_clear", icon="X", text="")

        col = layout.column()
        col.enabled = not running
        col.prop(s, "landmarks")
        col.prop(s, "device")
        col.prop(s, "texture_size")
        col.prop(s, "subject")
        col.prop(s, "output_dir")
        col.prop(s, "pack_textures")

        if running:
            compat.draw_progress(layout, s.progress, s.stage or "Working")
            layout.operator("faceforge.cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.4
            row.operator("faceforge.reconstruct", icon="USER")
            if s.last_error:
                box = layout.box()
                box.label(text=s.last_error, icon="ERROR")
            elif s.stage:
                layout.label(text=s.stage)


class FACEFORGE_PT_views(bpy.types.Panel):
    bl_label = "Fitted Views"
    bl_idname = "FACEFORGE_PT_views"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face"

    @classmethod
    def poll(cls, context):
        return importer.find_rig(context.active_object) is not None

    def draw(self, context):
        rig = importer.find_rig(context.active_object)
        layout = self.layout
        layout.label(text=rig.name, icon="ARMATURE_DATA")
        for cam in importer.view_cameras(rig):
            row = layout.row(align=True)
            op = row.operator("faceforge.apply_view", text=cam.name, icon="CAMERA_DATA")
            op.rig, op.camera = rig.name, cam.name
            err = cam.get("faceforge_reprojection_median_px")
            if err is not None:
                row.label(text=f"{err:.1f} px")
        layout.operator("faceforge.reset_expression").rig = rig.name
        info = rig.get("faceforge_animation")
        if info:
            layout.label(text=f"Video: frames {info['frame_start']}-{info['frame_end']} at "
                              f"{info['video_fps']:.3g} fps", icon="FILE_MOVIE")


class FACEFORGE_PT_transfer(bpy.types.Panel):
    bl_label = "Expression Transfer & Export"
    bl_idname = "FACEFORGE_PT_transfer"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.faceforge
        layout = self.layout
        col = layout.column()
        col.prop(s, "transfer_source_type")
        if s.transfer_source_type == "CSV":
            col.prop(s, "transfer_csv")
        else:
            col.prop(s, "transfer_source")
            row = col.row(align=True)
            row.prop(s, "transfer_mode", expand=True)
            if s.transfer_mode == "VIEW":
                col.prop(s, "transfer_view")
        col.prop(s, "transfer_target")
        if s.transfer_target is None and context.active_object is not None:
            col.label(text=f"Target: {context.active_object.name} (active)", icon="INFO")
        layout.operator("faceforge.transfer_expression", icon="FORWARD")
        rig = importer.find_rig(context.active_object)
        row = layout.row(align=True)
        sub = row.row(align=True)
        sub.enabled = rig is not None
        op = sub.operator("faceforge.export_livelink_csv", text="Export CSV", icon="EXPORT")
        if rig is not None:
            op.rig = rig.name
        sub = row.row(align=True)
        sub.enabled = rig is not None
        op = sub.operator("faceforge.export_glb", text="glTF", icon="EXPORT")
        if rig is not None:
            op.rig = rig.name
        op = sub.operator("faceforge.export_fbx", text="FBX", icon="EXPORT")
        if rig is not None:
            op.rig = rig.name
        layout.operator("faceforge.import_livelink_csv", text="Import CSV onto Active", icon="IMPORT")


classes = (FACEFORGE_UL_photos, FACEFORGE_PT_reconstruct, FACEFORGE_PT_views, FACEFORGE_PT_transfer)


def register():
    for c in classes:
        bpy.utils.register_class(c)


def unregister():
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
