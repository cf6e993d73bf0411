"""MediaPipe Face Landmarker (Tasks API, offline model bundle): 478 points + 52 ARKit scores."""
from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref

import numpy as np

from .. import paths
from ..errors import NoFaceError, SetupError
from .base import Detection, pick_by_size


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration.

    MediaPipe's C++ side (absl/glog, TFLite) writes "Logging before InitGoogle()", W0000... and
    "Created TensorFlow Lite XNNPACK delegate" lines straight to fd 2 while the graph is built;
    GLOG_minloglevel does not stop them. They are not addressed to the user and would surround the
    CLI's one-line error. Only fd 2 is touched, and only around graph creation and the first
    inference; FACEFORGE_MEDIAPIPE_LOGS=1 keeps them (debugging the graph itself).
    """
    if os.environ.get("FACEFORGE_MEDIAPIPE_LOGS"):
        yield
        return
    try:
        sys.stderr.flush()  # what Python already wrote must not end up in /dev/null
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (pythonw, closed stderr): nothing to protect
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Detectors nobody closed: closed at exit while the runtime still exists, else mediapipe's own
# __del__ prints an "Exception ignored ... TypeError" traceback during interpreter shutdown.
_LIVE: "weakref.WeakSet[MediaPipeTask]" = weakref.WeakSet()


@atexit.register
def _close_all():
    for d in list(_LIVE):
        try:
            d.close()
        except Exception:
            pass


class MediaPipeTask:
    """What the MediaPipe tasks here share: one graph (not reentrant), a first inference whose native
    chatter is silenced, and a close that runs once, also at exit while the runtime still exists."""

    _task = None

    def _start(self, what: str, model_path, make) -> None:
        """make(vision, base_options) -> the task; `what` names the model in the one-line errors."""
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:
            raise SetupError(f"mediapipe is not installed in the backend Python ({e}); run `python build.py setup`")
        if not model_path.is_file():
            raise SetupError(f"{what} is missing; restore weights/mediapipe/", model_path)
        try:
            with native_stderr_silenced():
                task = make(vision, BaseOptions(model_asset_path=str(model_path)))
        except Exception as e:  # the C++ side refuses a damaged model
            raise SetupError(f"{what} could not be loaded ({e})", model_path) from e
        self._task = task
        self._lock = threading.Lock()
        self._first = True
        _LIVE.add(self)

    def _run(self, fn, *args):
        with self._lock:
            if self._first:  # XNNPACK / TFLite may announce themselves on the first inference
                self._first = False
                with native_stderr_silenced():
                    return fn(*args)
            return fn(*args)

    def close(self):
        task, self._task = self._task, None
        if task is not None:
            task.close()

    def __del__(self):
        # mediapipe's own __del__ fails noisily at interpreter exit; close while the runtime still exists
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MediaPipeDetector(MediaPipeTask):
    max_faces = 8

    def __init__(self, model_path=None):
        def make(vision, base):
            return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=base, running_mode=vision.RunningMode.IMAGE, num_faces=self.max_faces,
                min_face_detection_confidence=0.4, min_face_presence_confidence=0.4, output_face_blendshapes=True))

        self._start("MediaPipe model bundle", model_path or paths.MEDIAPIPE_TASK, make)

    def detect_all(self, image_rgb: np.ndarray) -> list[Detection]:
        import mediapipe as mp

        h, w = image_rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        res = self._run(self._task.detect, image)
        out = []
        for i, lms in enumerate(res.face_landmarks):
            # MediaPipe normalises by image size with 0 at the pixel edge; we use pixel centres.
            pts = np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in lms])
            box = (*pts.min(0), *pts.max(0))
            bs = None
            if res.face_blendshapes:
                bs = {c.category_name: float(c.score) for c in res.face_blendshapes[i] if c.category_name != "_neutral"}
            out.append(Detection(points=pts, format="mediapipe478", box=tuple(float(x) for x in box), blendshapes=bs))
        return out

    def detect(self, image_rgb: np.ndarray, path=None, face_index: int | None = None) -> Detection:
        faces = self.detect_all(image_rgb)
        if not faces:
            raise NoFaceError("no face found", path)
        det = pick_by_size(faces, face_index)
        det.n_faces = len(faces)
        if len(faces) > 1:
            det.warnings.append(f"{len(faces)} faces found; using the {'largest' if face_index is None else f'#{face_index}'}"
                                " (choose another with --face-index)")
        return det
