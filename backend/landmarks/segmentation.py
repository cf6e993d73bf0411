"""Person against background: MediaPipe's selfie segmenter (Tasks API ImageSegmenter, offline model).

The model sees the photo at 256x256 and returns one confidence mask (person = 1), which
MediaPipe resizes back to the photo's size. Its edges are soft and a few pixels loose (it
also takes a shadow on a plain wall for the person now and then), so the texture baker uses
it as one cue among several (skin colour, the fitted mesh, the landmarks' face oval), never
alone.
"""
from __future__ import annotations

import numpy as np

from .. import paths
from .mediapipe_detector import MediaPipeTask


class PersonSegmenter(MediaPipeTask):
    def __init__(self, model_path=None):
        def make(vision, base):
            return vision.ImageSegmenter.create_from_options(vision.ImageSegmenterOptions(
                base_options=base, running_mode=vision.RunningMode.IMAGE, output_confidence_masks=True,
                output_category_mask=False))

        self._start("MediaPipe selfie segmentation model", model_path or paths.MEDIAPIPE_SEGMENTER, make)

    def person_probability(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 in [0, 1]: confidence that the pixel shows the person (hair and clothes included)."""
        import mediapipe as mp

        img = np.asarray(image_rgb)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, 2)
        img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
        h, w = img.shape[:2]
        res = self._run(self._task.segment, mp.Image(image_format=mp.ImageFormat.SRGB, data=img))
        mask = np.array(res.confidence_masks[0].numpy_view(), np.float32).reshape(h, w)
        return np.clip(mask, 0.0, 1.0)
