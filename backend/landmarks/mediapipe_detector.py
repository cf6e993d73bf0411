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


# MediaPipe's face detector (BlazeFace short range) sees the whole image shrunk to 128 px, so it finds a face
# only when the face box (landmark extent) is at least about 1/8 of the image's long side (tools/
# measure_face_search.py, 500-4000 px images: 7-8 of 8 sample faces at 1/8, at most 1 at 1/10, none at 1/11).
# Group photos and small faces are searched again in overlapping tiles, which the detector sees at their own scale.
MIN_TILE = 384  # smallest tile side: finds faces down to ~50 px across; below that a fit has too few pixels anyway
SMALL_FACE = 0.25  # a lone face smaller than this share of the long side may have company the first pass missed
CONFIRM_CROP = 2.5  # a candidate from a group or tile search is looked at again in a crop 2.5x its size


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
    max_faces = 32  # per detector call (the whole image or one tile); the tiled search adds up all tiles

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

    def find_faces(self, image_rgb: np.ndarray, everyone: bool = False) -> list[Detection]:
        """Every face in a photo. One pass over the whole image finds faces down to ~1/8 of its long side;
        when that finds none, several, or one small face (or `everyone`: the caller wants them all counted),
        overlapping tiles are searched too. A lone face filling the frame (the usual portrait) costs one pass."""
        faces = self.detect_all(image_rgb)
        h, w = image_rgb.shape[:2]
        lone_big = len(faces) == 1 and _extent(faces[0]) >= SMALL_FACE * max(h, w)
        if lone_big and not everyone:
            return faces
        return [f for f in _merge(faces, self._detect_tiles(image_rgb)) if self._confirmed(image_rgb, f)]

    def _confirmed(self, image_rgb: np.ndarray, face: Detection) -> bool:
        """The detector finds the same face again in a crop where it fills 40 % (CONFIRM_CROP), the scale it
        sees best. Background found as a face at a chance scale is not found again: on obama4.jpg the
        one-pass detector's "face" on the building behind and the tiles' "face" on the ear both fail this,
        while all 27 faces of the group photo and every small face of tools/measure_face_search.py pass."""
        h, w = image_rgb.shape[:2]
        cx, cy, r = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2, CONFIRM_CROP * _extent(face) / 2
        x0, y0 = int(max(0, cx - r)), int(max(0, cy - r))
        crop = np.ascontiguousarray(image_rgb[y0:int(min(h, cy + r)), x0:int(min(w, cx + r))])
        return any(_iou(face.box, (g.box[0] + x0, g.box[1] + y0, g.box[2] + x0, g.box[3] + y0)) > 0.5
                   for g in self.detect_all(crop))

    def _detect_tiles(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in square tiles of MIN_TILE, twice that, ... (below the long side), each level overlapping
        by half a tile so every face smaller than half a tile lies wholly inside one of them. A face cut by
        a tile's inner edge is dropped there: its hidden half would be made up."""
        h, w = image_rgb.shape[:2]
        out = []
        t = MIN_TILE
        levels = []
        while t < max(h, w):
            levels.append(t)
            t *= 2
        for t in reversed(levels):  # coarse to fine: _merge keeps the first find of each face
            margin = 0.02 * t
            for y0 in _starts(h, t):
                for x0 in _starts(w, t):
                    x1, y1 = min(x0 + t, w), min(y0 + t, h)
                    for d in self.detect_all(np.ascontiguousarray(image_rgb[y0:y1, x0:x1])):
                        bx0, by0, bx1, by1 = d.box
                        if (x0 > 0 and bx0 < margin) or (y0 > 0 and by0 < margin) or \
                                (x1 < w and bx1 > x1 - x0 - margin) or (y1 < h and by1 > y1 - y0 - margin):
                            continue
                        d.points = d.points + (x0, y0)
                        d.box = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
                        out.append(d)
        return out

    def detect(self, image_rgb: np.ndarray, path=None, face_index: int | None = None) -> Detection:
        faces = self.find_faces(image_rgb, everyone=face_index is not None)
        if not faces:
            raise NoFaceError(NO_FACE_HINT, path)
        det = pick_by_size(faces, face_index, path)
        det.n_faces = len(faces)
        if len(faces) > 1:
            det.warnings.append(f"{len(faces)} faces found; using the {'largest' if face_index is None else f'#{face_index}'}"
                                " (choose another with --face-index)")
        return det


# about MIN_TILE / 8: tools/measure_face_search.py finds 8/8 faces of 56 px, 7/8 of 48, 3/8 of 40
SMALL_FACE_HINT = ("faces smaller than about 50 px across, or turned far from the camera, are missed; "
                   "crop the photo around the face")
NO_FACE_HINT = f"no face found ({SMALL_FACE_HINT})"


def _extent(d: Detection) -> float:
    return max(d.box[2] - d.box[0], d.box[3] - d.box[1])


def _starts(n: int, t: int) -> list[int]:
    """Tile origins along a side of n px: stride t/2, the last tile flush with the far edge."""
    if n <= t:
        return [0]
    k = int(np.ceil((n - t) / (t / 2)))
    return sorted({int(round(i * (n - t) / k)) for i in range(k + 1)})


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-9)


def _merge(first: list[Detection], more: list[Detection]) -> list[Detection]:
    """One detection per face: the whole-image pass first, then the tiles from coarse to fine."""
    kept: list[Detection] = []
    for d in [*first, *more]:
        if all(_iou(d.box, k.box) < 0.3 for k in kept):
            kept.append(d)
    return kept
