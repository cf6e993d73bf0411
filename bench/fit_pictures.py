"""Before/after pictures of the fit on real photos: each photo beside the fitted head drawn in its camera.

    python -m bench.fit_pictures [--out docs/real_before_after.png] [PHOTO ...]

Columns: the photo (cropped to the face), the fit before the real-detector work (bench.real.baseline_fit: the
geometric MediaPipe->ICT map, no antagonist penalty or score prior), and the product's fit (pipeline.fit_views).
The heads are drawn by bench/render_gt with a plain grey skin and dark irises, so the fitted lids, gaze and mouth
read at a glance: wide-open "zombie" eyes on a photo with relaxed lids are what this picture exists to catch.
Default photos: the first of each person in tests/data/same-person.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .real import DATA, baseline_fit, product_fit

CELL = 320  # px per picture cell


def _draw(model, res, j, crop, light):
    """The fitted head of view j drawn in its camera, cropped like the photo."""
    from . import render_gt as rg

    x0, y0, side = crop
    s = CELL / side  # render only the crop, at the cell's resolution: shift the principal point, scale the focal
    ident = np.zeros(model.n_identity)
    ident[: res.identity.shape[-1]] = res.identity[0]
    albedo = np.full((64, 128, 3), 0.32, np.float32) * np.array([1.0, 0.82, 0.72], np.float32)
    subject = rg.Subject(identity=ident, albedo=albedo, iris=np.array([0.06, 0.035, 0.02]), pupil_cm=0.2, seed=0)
    f = float(res.focal[0, j]) * s
    # render_gt puts the principal point at the image centre: move the camera so the crop's centre is there
    cx, cy = float(res.cx[0, j]), float(res.cy[0, j])
    du, dv = (x0 + side / 2 - 0.5) - cx, (y0 + side / 2 - 0.5) - cy
    R, t = res.R[0, j].astype(np.float64), res.t[0, j].astype(np.float64)
    # a pixel offset (du, dv) at depth z is a translation of -(du, dv) z / f in the camera frame
    z = (R @ np.array([0.0, 0.0, 5.0]) + t)[2]
    t = t - np.array([du * z / float(res.focal[0, j]), dv * z / float(res.focal[0, j]), 0.0])
    bg = np.full((CELL * 2, CELL * 2, 3), 0.18, np.float32)
    shot = rg.Shot(res.expression[0, j].astype(np.float64), R, t, f, (CELL, CELL), light, seed=1,
                   extra={"background": bg})
    return rg.render(model, subject, shot, supersample=2, jpeg_quality=0)


def picture(photos, out: Path) -> Path:
    import cv2

    from backend.face_model import load_face_model
    from backend.pipeline import detect_views

    model = load_face_model()
    light = np.zeros((9, 3), np.float32)
    light[0], light[1], light[2], light[3] = 1.7, 0.25, 0.55, 0.2
    rows = []
    for p in photos:
        views, _ = detect_views([p])
        v = views[0]
        pts = v.detection.points
        lo, hi = pts.min(0), pts.max(0)
        side = float((hi - lo).max() * 1.5)
        x0, y0 = (lo + hi) / 2 - side / 2
        crop = (float(x0), float(y0), side)
        img = v.image if v.image is not None else cv2.imread(str(p))[..., ::-1]
        M = np.array([[CELL / side, 0, -x0 * CELL / side], [0, CELL / side, -y0 * CELL / side]])
        cells = [cv2.warpAffine(np.ascontiguousarray(img), M, (CELL, CELL), flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_CONSTANT)]
        for fit in (baseline_fit, product_fit):
            _, res = fit([v])
            cells.append(_draw(model, res, 0, crop, light))
        rows.append(np.concatenate(cells, 1))
        print(f"{p.parent.name}/{p.name}", flush=True)
    grid = np.concatenate(rows, 0)
    head = np.full((36, grid.shape[1], 3), 255, np.uint8)
    for k, label in enumerate(["photo", "before (geometric map)", "after (calibrated fit)"]):
        cv2.putText(head, label, (k * CELL + 8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate([head, grid], 0)[..., ::-1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.fit_pictures", description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs") / "real_before_after.png")
    args = ap.parse_args(argv)
    photos = args.photos or [sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
                             for d in sorted((DATA / "same-person").iterdir()) if d.is_dir() and d.name != "video"]
    print(picture(photos, args.out))


if __name__ == "__main__":
    main()
