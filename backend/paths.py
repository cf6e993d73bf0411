"""Where the backend finds its bundled weights."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = Path(os.environ.get("FACEFORGE_WEIGHTS", REPO_ROOT / "weights"))
ICT_MODEL = WEIGHTS_DIR / "ict-facekit" / "ict_face_model.npz"
ICT_VERTEX_INDICES = WEIGHTS_DIR / "ict-facekit" / "vertex_indices.json"
MEDIAPIPE_TASK = WEIGHTS_DIR / "mediapipe" / "face_landmarker.task"
MP_TO_ICT = WEIGHTS_DIR / "mediapipe_to_ict.npz"  # calibrated on rendered faces (tools/calibrate_landmarks.py)
# the map from the two models' geometry alone: the calibration's starting point (tools/build_mp_correspondence.py)
MP_TO_ICT_GEOMETRIC = WEIGHTS_DIR / "mediapipe_to_ict_geometric.npz"
MEDIAPIPE_SEGMENTER = WEIGHTS_DIR / "mediapipe" / "selfie_segmentation.tflite"
