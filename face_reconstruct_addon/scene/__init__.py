"""Blender datablocks from the bpy-free reading in ../io/: meshes and shape keys (mesh.py), materials
(materials.py), the armature, its controls and drivers (rig.py), cameras and view switching (cameras.py), world,
lights and render settings (world.py). Every datablock made goes through a Created list so a failed import
removes what it made (created.py)."""
