"""Reading a result bundle without Blender (no bpy here): the bundle and its paths (bundle.py), the OBJ mesh
(obj.py), the model-to-Blender axes and cameras (cameras.py), the ARKit names (arkit.py) and the rig's
geometry and per-object shapes (rig_geometry.py). The Blender side (../scene/) turns these into datablocks;
everything here is testable in plain Python, as io_scene_gltf2 keeps its io/ apart from Blender.
"""
