"""Figures behind backend/landmarks/mediapipe_detector.py's face search (MIN_TILE, SMALL_FACE, the no-face hint).

    .venv/bin/python tools/measure_face_search.py

Faces are the sample photos' faces (tests/data), cropped square around MediaPipe's landmarks (crop side 1.6x the
landmark extent, the hair and chin a real photo has around a face) and pasted on a grey canvas. Prints:
  1. the whole-image pass: how many of the 8 faces are found at each face size relative to the image;
  2. the tiled search (find_faces): the smallest face found in a 4000x3000 photo, and the time;
  3. a group photo of 27 faces (9x3, 300 px cells): faces found by one pass and by the tiled search.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.landmarks.mediapipe_detector import MediaPipeDetector, _extent  # noqa: E402

DATA = ROOT / "tests" / "data"
SOURCES = [DATA / "multiview-mvfnet" / n for n in ("front.jpg", "left.jpg", "right.jpg")] + \
          [DATA / "multiview-hrn" / n for n in ("10078.jpg", "21650.jpg", "5932.jpg")] + \
          [DATA / "single-300w" / n for n in ("astronaut.png", "image_0010.png")]


def face_crops(mp: MediaPipeDetector, size: int = 256) -> list[tuple[np.ndarray, float]]:
    """(square crop resized to `size`, landmark extent / crop side) of each sample face."""
    out = []
    for src in SOURCES:
        im = np.asarray(Image.open(src).convert("RGB"))
        f = max(mp.detect_all(im), key=_extent)
        x0, y0, x1, y1 = f.box
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * _extent(f)
        a, b = int(max(0, cx - r)), int(max(0, cy - r))
        crop = im[b:int(min(im.shape[0], cy + r)), a:int(min(im.shape[1], cx + r))]
        out.append((np.asarray(Image.fromarray(crop).resize((size, size), Image.LANCZOS)), _extent(f) / crop.shape[1]))
    return out


def paste(canvas: np.ndarray, crop: np.ndarray, side: int, x: int, y: int) -> None:
    canvas[y:y + side, x:x + side] = np.asarray(Image.fromarray(crop).resize((side, side), Image.LANCZOS))


def group_photo(crops, n: int = 27, cols: int = 9, cell: int = 300) -> np.ndarray:
    """n faces in a grid, the samples repeated (mirrored on the second round)."""
    rows = (n + cols - 1) // cols
    canvas = np.full((rows * cell, cols * cell, 3), 120, np.uint8)
    side = int(0.9 * cell)
    for k in range(n):
        c = crops[k % len(crops)][0]
        if (k // len(crops)) % 2:
            c = c[:, ::-1]
        r, q = divmod(k, cols)
        paste(canvas, c, side, q * cell + (cell - side) // 2, r * cell + (cell - side) // 2)
    return canvas


def main() -> None:
    mp = MediaPipeDetector()
    crops = face_crops(mp)
    ratio = float(np.mean([r for _, r in crops]))
    print(f"landmark extent / crop side: {ratio:.2f} (mean of {len(crops)} faces)")
    print("1. whole-image pass: faces found (of 8) by face extent / image side")
    for C in (500, 1000, 2000, 4000):
        row = []
        for frac in (0.25, 0.16, 0.125, 0.1, 0.09, 0.075, 0.06):
            side = int(C * frac / ratio)
            hits = 0
            for c, _ in crops:
                canvas = np.full((C, C, 3), 120, np.uint8)
                paste(canvas, c, side, (C - side) // 3, (C - side) // 3)
                hits += len(mp.detect_all(canvas)) > 0
            row.append(f"1/{1 / frac:.0f}:{hits}")
        print(f"   {C} px image: " + " ".join(row))
    print("2. tiled search in a 4000x3000 photo: faces found (of 8) by face extent in px, and time per photo")
    for extent in (96, 64, 56, 48, 40, 32):
        side, hits, t = int(extent / ratio), 0, 0.0
        for k, (c, _) in enumerate(crops):
            canvas = np.full((3000, 4000, 3), 120, np.uint8)
            paste(canvas, c, side, 1234 + 97 * k, 777 + 61 * k)
            t0 = time.perf_counter()
            hits += len(mp.find_faces(canvas)) > 0
            t += time.perf_counter() - t0
        print(f"   {extent:3d} px: {hits}/8 found, {t / len(crops):.2f} s per photo")
    g = group_photo(crops)
    t0 = time.perf_counter()
    one = len(mp.detect_all(g))
    t1 = time.perf_counter()
    tiled = len(mp.find_faces(g))
    t2 = time.perf_counter()
    print(f"3. group photo {g.shape[1]}x{g.shape[0]}, 27 faces of ~{int(0.9 * 300 * ratio)} px: one pass finds {one} "
          f"({t1 - t0:.2f} s), tiled search {tiled} ({t2 - t1:.2f} s)")
    mp.close()


if __name__ == "__main__":
    main()
