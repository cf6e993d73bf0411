"""Person against background: MediaPipe's selfie segmenter (Tasks API ImageSegmenter, offline model).

The model sees the photo at 256x256 and returns one confidence mask (person = 1), which
MediaPipe resizes back to the photo's size. Its edges are soft and a few pixels loose (it
also takes a shadow on a plain wall for the person now and then), so the texture baker uses
it as one cue among several (skin colour, the fitted mesh, the landmarks' face oval), never
alone.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import paths
from ..errors import SetupError
from .mediapipe_detector import _LIVE, native_stderr_silenced


class PersonSegmenter:
    def __init__(self, model_path=None):
        model_path = model_path or paths.MEDIAPIPE_SEGMENTER
        self._seg = None
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:
            raise SetupError(f"mediapipe is not installed in the backend Python ({e}); run `python build.py setup`")
        if not model_path.is_file():
            raise SetupError("MediaPipe selfie segmentation model is missing; restore weights/mediapipe/", model_path)
        opts = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        try:
            with native_stderr_silenced():
                self._seg = vision.ImageSegmenter.create_from_options(opts)
        except Exception as e:  # the C++ side refuses a damaged model
            raise SetupError(f"MediaPipe selfie segmentation model could not be loaded ({e})", model_path) from e
        self._lock = threading.Lock()
        self._first = True
        _LIVE.add(self)  # closed at exit while the runtime still exists (see mediapipe_detector)

    def close(self):
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def person_probability(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 in [0, 1]: confidence that the pixel shows the person (hair and clothes included)."""
        import mediapipe as mp

        img = np.asarray(image_rgb)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, 2)
        img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
        h, w = img.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=img)
        with self._lock:
            if self._first:  # XNNPACK announces itself on the first inference
                self._first = False
                with native_stderr_silenced():
                    res = self._seg.segment(image)
            else:
                res = self._seg.segment(image)
        mask = np.array(res.confidence_masks[0].numpy_view(), np.float32).reshape(h, w)
        return np.clip(mask, 0.0, 1.0)
