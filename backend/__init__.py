"""FaceForge compute backend: photos -> fitted ICT-FaceKit head -> result bundle.

Pure Python (numpy, torch, opencv, mediapipe, scipy); never imports bpy.
"""
__version__ = "0.1.0"
