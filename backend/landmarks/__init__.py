"""Landmark detectors: MediaPipe (478 points, default) and face-alignment FAN (iBUG 68)."""
from .base import FORMATS, Detection


def make_detector(name: str = "mediapipe", device: str = "cpu"):
    if name == "mediapipe":
        from .mediapipe_detector import MediaPipeDetector
        return MediaPipeDetector()
    if name == "fan":
        from .fan import FanDetector
        return FanDetector(device=device)
    raise ValueError(f"unknown landmark detector {name!r} (choose mediapipe or fan)")


__all__ = ["Detection", "FORMATS", "make_detector"]
