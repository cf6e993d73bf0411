"""FaceForge: photos of a face -> rigged ICT-FaceKit head in Blender.

Blender 4.2+ extension (manifest: blender_manifest.toml, added at the zip root by
tools/package_extension.py). The heavy lifting runs in the backend's own Python as a subprocess;
this package only talks to it (client.py) and builds Blender data from its result (importer.py:
io/ reads the bundle without bpy, scene/ builds the datablocks).
All Blender-version differences live in compat.py.
"""
from __future__ import annotations

try:
    import bpy
except ImportError:  # plain Python: only the bpy-free parts (io/, livelink_csv, client) can be used
    bpy = None

# Ignored by 4.2+ extensions (the manifest wins); lets the folder also work as a legacy add-on.
bl_info = {
    "name": "FaceForge Face Reconstruction",
    "author": "FaceForge",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "View3D > Sidebar > Face; File > Import > Face reconstruction result",
    "description": "Reconstruct a rigged 3D head from photos",
    "category": "Import-Export",
}

if bpy is not None:
    from . import client, jobs, operators, props, ui

    _modules = (props, operators, ui)

    @bpy.app.handlers.persistent
    def _stop_job_on_load(*_args):
        # A job belongs to the scene it was started in; loading another file ends it (and its process). The warm
        # backend stays: it belongs to the session, not the file.
        jobs.abort_active()

    def register():
        for m in _modules:
            m.register()
        bpy.app.handlers.load_pre.append(_stop_job_on_load)

    def unregister():
        jobs.abort_active()
        client.shutdown_warm()  # the warm backend ends with the add-on (and with Blender: client's atexit)
        if _stop_job_on_load in bpy.app.handlers.load_pre:
            bpy.app.handlers.load_pre.remove(_stop_job_on_load)
        for m in reversed(_modules):
            m.unregister()
