"""User-supplied 2D landmarks (`--landmarks-file`, README "Fitting your own landmarks"), checked at the door.

Every problem is one InputError naming the file and the field, e.g.
`lm.json: images[1].points[17]: not a finite number`, raised before any fitting: a NaN, a string or a point
far outside the image would otherwise surface minutes later as an internal error, or as a fit that
"succeeds" with the camera hundreds of metres away. A relative `image` is read from the JSON's folder.
"""
from __future__ import annotations

import errno
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .images import LoadedImage, load_image, missing_reason
from .landmarks.base import EYE_CORNERS, FORMATS

MAX_SIDE_PX = 100_000  # no camera makes more; larger numbers are typos or garbage
# Points may lie outside the image (a chin cut off by the frame) by at most this share of its size;
# farther out they are in another image's pixels, or in some other unit.
OUTSIDE_MARGIN = 0.5
MIN_EYE_DISTANCE_PX = 4.0  # below this the points are not pixels of a photo (normalised 0..1 coordinates?)
FOCAL_RANGE = (0.2, 20.0)  # x the long side: 2.9 to 136 degrees across the long side, as images.py allows EXIF


@dataclass
class LandmarkEntry:
    """One checked entry of a landmarks file; `points` are in the pixels of `image` when there is one."""
    index: int
    name: str | None
    points: np.ndarray  # (L, 2) float64
    width: int
    height: int
    focal_px: float | None
    image_path: Path | None = None  # resolved against the landmarks file's folder
    image: LoadedImage | None = None
    warnings: list = field(default_factory=list)


def read_landmarks_file(path) -> tuple[str, list[LandmarkEntry]]:
    """(format, entries) of the landmarks file at `path`; InputError(path) on the first problem."""
    path = Path(path)
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise InputError("landmarks file must hold a JSON object with \"format\" and \"images\"", path)
    fmt = doc.get("format")
    if fmt not in FORMATS:
        raise InputError(f"format: must be one of {sorted(FORMATS)} (got {_show(fmt)})", path)
    images = doc.get("images")
    if not isinstance(images, list):
        raise InputError(f"images: must be a list of images (got {_show(images)})", path)
    if not images:
        raise InputError("images: the list is empty", path)
    return fmt, [_entry(path, fmt, i, e) for i, e in enumerate(images)]


def _read_json(path: Path):
    try:
        text = path.read_bytes()
    except IsADirectoryError:
        raise InputError("is a folder, not a landmarks file", path) from None
    except PermissionError:
        raise InputError("cannot read the landmarks file: permission denied", path) from None
    except OSError as e:
        if isinstance(e, FileNotFoundError) or e.errno == errno.ELOOP:
            raise InputError(f"landmarks file: {missing_reason(path)}", path) from None
        raise InputError(f"cannot read the landmarks file ({e.strerror or e})", path) from None
    try:
        return json.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(f"landmarks file is not UTF-8 text (byte {e.start})", path) from None
    except ValueError as e:
        raise InputError(f"landmarks file is not valid JSON ({e})", path) from None
    except RecursionError:
        raise InputError("landmarks file is not valid JSON (nested too deeply)", path) from None


def _show(v) -> str:
    text = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(v) -> float | None:
    """A finite JSON number as float; None for anything else (strings, booleans, NaN, Infinity, 1e400)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _whole_px(where: str, v, path: Path) -> int | None:
    if v is None:
        return None
    f = _number(v)
    if f is None or f != int(f) or not 1 <= f <= MAX_SIDE_PX:
        raise InputError(f"{where}: must be a whole number of pixels from 1 to {MAX_SIDE_PX} (got {_show(v)})", path)
    return int(f)


def _points(where: str, raw, n: int, path: Path) -> np.ndarray:
    if not isinstance(raw, list):
        raise InputError(f"{where}: must be a list of {n} [u, v] pairs (got {_show(raw)})", path)
    if len(raw) != n:
        raise InputError(f"{where}: expected {n} points, got {len(raw)}", path)
    pts = np.empty((n, 2))
    for k, p in enumerate(raw):
        if not isinstance(p, list) or len(p) != 2:
            raise InputError(f"{where}[{k}]: must be a [u, v] pair of numbers (got {_show(p)})", path)
        for j, c in enumerate(p):
            f = _number(c)
            if f is None:
                kind = "not a finite number" if isinstance(c, (int, float)) and not isinstance(c, bool) \
                    else f"not a number (got {_show(c)})"
                raise InputError(f"{where}[{k}]: {kind}", path)
            pts[k, j] = f
    return pts


def _entry(path: Path, fmt: str, i: int, e) -> LandmarkEntry:
    at = f"images[{i}]"
    if not isinstance(e, dict):
        raise InputError(f"{at}: must be an object with \"points\" (got {_show(e)})", path)
    name = e.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{at}.name: must be a string (got {_show(name)})", path)
    pts = _points(f"{at}.points", e.get("points"), FORMATS[fmt], path)
    w, h = _whole_px(f"{at}.width", e.get("width"), path), _whole_px(f"{at}.height", e.get("height"), path)
    focal = e.get("focal_px")
    if focal is not None and _number(focal) is None:
        raise InputError(f"{at}.focal_px: not a number (got {_show(focal)})", path)

    entry = LandmarkEntry(index=i, name=name or None, points=pts, width=0, height=0, focal_px=None)
    img = e.get("image")
    if img is not None and not isinstance(img, str):
        raise InputError(f"{at}.image: must be a file name (got {_show(img)})", path)
    if img:
        p = Path(img).expanduser()
        p = p if p.is_absolute() else path.parent / p  # next to the JSON, wherever the program was started
        if not p.is_file():
            raise InputError(f"{at}.image: {missing_reason(p)} ({p})", path)
        li = load_image(p)
        if (w or h) and (w, h) != tuple(li.original_size):
            raise InputError(f"{at}: width x height {w}x{h} differ from the image {p.name} "
                             f"({li.original_size[0]}x{li.original_size[1]} px, upright)", path)
        w, h = li.original_size
        entry.image_path, entry.image, entry.warnings = p, li, [f"{p.name}: {m}" for m in li.warnings]
    elif not (w and h):
        raise InputError(f"{at}: give \"width\" and \"height\" (or an \"image\")", path)

    for k, (u, v) in enumerate(pts):
        if not (-OUTSIDE_MARGIN * w <= u <= (1 + OUTSIDE_MARGIN) * w
                and -OUTSIDE_MARGIN * h <= v <= (1 + OUTSIDE_MARGIN) * h):
            raise InputError(f"{at}.points[{k}]: ({u:g}, {v:g}) is far outside the {w}x{h} image "
                             "(points are pixel coordinates in that image)", path)
    a, b = EYE_CORNERS[fmt]
    if np.linalg.norm(pts[a] - pts[b]) < MIN_EYE_DISTANCE_PX:
        raise InputError(f"{at}.points: the eye corners {a} and {b} are {np.linalg.norm(pts[a] - pts[b]):.2g} px "
                         "apart; points must be pixel coordinates, not 0..1", path)
    if focal is not None:
        f, lo, hi = float(focal), FOCAL_RANGE[0] * max(w, h), FOCAL_RANGE[1] * max(w, h)
        if not lo <= f <= hi:
            raise InputError(f"{at}.focal_px: {f:g} px is implausible for a {w}x{h} image "
                             f"(expected {lo:.0f} to {hi:.0f})", path)
        entry.focal_px = f
    if entry.image is not None and entry.image.scale != 1.0:  # the loader shrank a huge photo
        entry.points = pts * entry.image.scale
        if entry.focal_px is not None:
            entry.focal_px *= entry.image.scale
        w, h = entry.image.rgb.shape[1], entry.image.rgb.shape[0]
    entry.width, entry.height = int(w), int(h)
    return entry
