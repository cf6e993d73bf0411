"""face-alignment's FAN (2DFAN-4): 68 iBUG landmarks, the second landmark detector (--landmarks fan).

The package downloads its weights on first use from the author's site into
torch hub's cache (<torch hub dir>/checkpoints/). FaceForge may run offline,
so the cache is checked *before* the package is asked to build anything, and a
missing file becomes a SetupError that says which file, where, and from where.

FAN's own face detector (S3FD) needs a second download and is not used: the
caller passes the face box (the pipeline passes MediaPipe's), and only when it
does not, MediaPipe finds the face here. face_alignment is given its "folder"
detector, which loads nothing at construction; it is never called because the
boxes are always passed in. Its reference scale (195) is the same one S3FD uses.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import NoFaceError, SetupError
from .base import Detection

NETWORK = "2DFAN-4"
# Mirrors face_alignment 1.5.0's api.models_urls; read from the package when it is importable.
DEFAULT_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"

_hub_lock = threading.Lock()  # torch.hub's directory is process-wide; cache_dir swaps it briefly


def _weights_url() -> str:
    try:
        from face_alignment.api import models_urls
        return models_urls[NETWORK]
    except (ImportError, KeyError):
        return DEFAULT_URL


def weights_path(cache_dir=None) -> Path:
    """Where face_alignment looks for the FAN weights: <torch hub dir>/checkpoints/<file name of the URL>.

    cache_dir replaces the torch hub dir (default torch.hub.get_dir(), i.e. $TORCH_HOME/hub).
    """
    import torch.hub
    hub = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir())
    return hub / "checkpoints" / os.path.basename(_weights_url())


def _cache_numba_postprocessing() -> None:
    """face_alignment decodes heatmaps with numba functions compiled at first call without cache=True:
    ~12-17 s on every run on a 2-core machine. Turning on numba's on-disk cache for them (what cache=True
    does) makes that a one-time cost; numba picks a writable cache folder itself."""
    try:
        from face_alignment import utils
        for fn in (utils.transform_np, utils._get_preds_fromhm):
            if getattr(fn, "_cache", None) is None or type(fn._cache).__name__ == "NullCache":
                fn.enable_caching()
    except Exception:  # numba absent or NUMBA_DISABLE_JIT: plain Python functions, nothing to cache
        pass


def _resolve_device(device: str) -> str:
    if device in (None, "auto"):
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class FanDetector:
    """68 iBUG landmarks from face_alignment's FAN, in the given face box."""

    format = "ibug68"

    def __init__(self, device: str = "cpu", cache_dir=None):
        try:
            import face_alignment
            import torch.hub
        except ImportError as e:
            raise SetupError(f"face-alignment is not installed in the backend Python ({e}); "
                             "run `python build.py setup`") from e
        url = _weights_url()
        path = weights_path(cache_dir)
        if not path.is_file():
            raise SetupError(f"FAN landmark weights are missing: download {url} and save it as {path} "
                             "(or use the default --landmarks mediapipe)", path)
        self.device = _resolve_device(device)
        self.weights = path
        with _hub_lock:
            # restore torch's own setting (None = follow $TORCH_HOME), not the directory it resolved to
            previous = getattr(torch.hub, "_hub_dir", None)
            if cache_dir is not None:
                torch.hub.set_dir(str(cache_dir))
            try:
                self._fa = face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D, device=self.device, face_detector="folder",
                    flip_input=True,  # averages with the mirrored crop, as the package's published accuracy assumes
                    compile=False,  # torch.compile needs a C compiler and minutes on CPU; eager is fast enough
                )
            except (OSError, ConnectionError) as e:  # e.g. the file vanished and the package tried to download it
                raise SetupError(f"FAN landmark weights could not be fetched ({e}); download {url} and save it "
                                 f"as {path}", path) from e
            except Exception as e:
                # torch.load / load_state_dict on a partial download, an HTML error page or another network's
                # file fail with UnpicklingError, RuntimeError, EOFError, KeyError...: all mean "replace the file"
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise SetupError(f"FAN landmark weights are damaged ({first[:200]}); delete the file and "
                                 f"download it again from {url}", path) from e
            finally:
                if cache_dir is not None:
                    torch.hub._hub_dir = previous
        _cache_numba_postprocessing()
        self._lock = threading.Lock()
        self._box_finder = None

    def close(self):
        """Release the MediaPipe graph used to find boxes, if one was opened."""
        if self._box_finder is not None:
            self._box_finder.close()
            self._box_finder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _find_box(self, image_rgb: np.ndarray, path):
        """No box from the caller: let MediaPipe find the face (largest one), as the pipeline would."""
        if self._box_finder is None:
            if not (Path(__file__).parent / "mediapipe_detector.py").is_file():
                raise SetupError("FAN needs a face box and no face detector is available "
                                 "(backend/landmarks/mediapipe_detector.py is missing)")
            from .mediapipe_detector import MediaPipeDetector
            self._box_finder = MediaPipeDetector()
        det = self._box_finder.detect(image_rgb, path)  # raises NoFaceError itself
        return det.box, det.n_faces, list(det.warnings)

    def detect(self, image_rgb: np.ndarray, path=None, box=None) -> Detection:
        image_rgb = np.asarray(image_rgb)
        if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"FAN expects uint8 HxWx3 RGB, got {image_rgb.dtype} {image_rgb.shape}")
        warnings, n_faces = [], 1
        if box is None:
            box, n_faces, warnings = self._find_box(image_rgb, path)
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x1 > x0 and y1 > y0 and np.isfinite([x0, y0, x1, y1]).all()):
            raise ValueError(f"bad face box {box!r}")
        with self._lock:
            res = self._fa.get_landmarks_from_image(image_rgb, detected_faces=[np.array([x0, y0, x1, y1])])
        if not res:
            raise NoFaceError("FAN found no landmarks in the face box", path)
        pts = np.asarray(res[0], np.float64)[:, :2]
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise NoFaceError(f"FAN returned unusable landmarks (shape {pts.shape})", path)
        return Detection(points=pts, format="ibug68", box=(x0, y0, x1, y1), n_faces=n_faces, warnings=warnings)
