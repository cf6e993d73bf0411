"""Texture-baking report.

  python -m bench.texture_report BUNDLE_DIR [--size 1024] [--no-delight] [--save DIR]
      bake from a result bundle's fitted cameras and print per-view PSNR / SSIM of the
      re-rendered textured head against each photo, inside the face mask
  python -m bench.texture_report --timing [--size 2048] [--views 3]
      bake time for N synthetic views on this machine
  python -m bench.texture_report --synthetic [--size 1024]
      texture error against a known procedural texture (rendered, then baked back)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from backend.face_model import load_face_model
from backend.texture.bake import bake_textures, to_srgb
from backend.texture.metrics import psnr


def views_from_bundle(bundle: str | Path, model=None) -> tuple[np.ndarray, list[dict]]:
    """(identity, views) for bake_textures from a result bundle's result.json and images/."""
    bundle = Path(bundle)
    model = model or load_face_model()
    doc = json.loads((bundle / "result.json").read_text())
    identity = np.asarray(doc["identity"], np.float32)
    views = []
    for v in doc["views"]:
        img = cv2.imread(str(bundle / v["image"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(bundle / v["image"])
        cam = v["camera"]
        expr = np.array([v["expression"].get(n, 0.0) for n in model.expression_names], np.float32)
        views.append({"name": v["name"], "image": img[..., ::-1].copy(), "expression": expr,
                      "landmarks": np.asarray(v["landmarks_2d"], np.float64) if v.get("landmarks_2d") else None,
                      "R": np.asarray(cam["R"]), "t": np.asarray(cam["t"]),
                      "fx": cam["fx"], "fy": cam["fy"], "cx": cam["cx"], "cy": cam["cy"]})
    return identity, views


def synthetic_case(size: int = 1024, image_size: int = 512, n_views: int = 3, seed: int = 1, lighting=None):
    """(model, identity, true texture (linear), views): a random head, procedural texture."""
    from .texture_synthetic import make_views, procedural_texture

    model = load_face_model()
    rng = np.random.default_rng(seed)
    identity = (0.7 * rng.standard_normal(model.n_identity)).astype(np.float32)
    tex = procedural_texture(size, seed=seed)
    yaws = [0.0, -40.0, 40.0, -70.0, 70.0][:n_views]
    views = make_views(model, identity, tex, yaws=yaws, size=image_size, L=lighting, seed=seed)
    return model, identity, tex, views


def texture_error(baked_u8: np.ndarray, true_lin: np.ndarray, seen: np.ndarray, region: np.ndarray,
                  min_seen: float | None = None) -> dict:
    """PSNR (dB) and mean absolute error (0..255) of the baked texture on the texels the
    cameras saw with full confidence (seen >= FULL_SEEN: below it the baker deliberately
    mixes in the mirror image / skin fill)."""
    from backend.texture.bake import FULL_SEEN

    min_seen = FULL_SEEN if min_seen is None else min_seen
    true = to_srgb(cv2.resize(true_lin, (baked_u8.shape[1], baked_u8.shape[0]), interpolation=cv2.INTER_AREA))
    m = (seen > min_seen) & region
    d = np.abs(baked_u8.astype(np.float32) - true.astype(np.float32))[m]
    return {"psnr_db": round(psnr(true, baked_u8, m), 3), "mae": round(float(d.mean()), 3),
            "texels": int(m.sum()), "fraction_of_skin": round(float(m.sum() / max(region.sum(), 1)), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.texture_report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="result bundle folder (needs result.json, images/)")
    ap.add_argument("--size", type=int, default=None, help="texture size (rows; the image is 2*size wide)")
    ap.add_argument("--timing", action="store_true", help="time a bake of synthetic views")
    ap.add_argument("--synthetic", action="store_true", help="texture error on a synthetic head")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--no-delight", action="store_true")
    ap.add_argument("--no-detail", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save", help="write albedo.png, normal.png and render_<view>.png here")
    a = ap.parse_args(argv)
    if not (a.bundle or a.timing or a.synthetic):
        ap.error("give a BUNDLE_DIR, --timing or --synthetic")

    if a.timing or a.synthetic:
        size = a.size or (2048 if a.timing else 1024)
        model, identity, tex, views = synthetic_case(size=size, n_views=a.views)
        t0 = time.perf_counter()
        out = bake_textures(model, identity, views, size=size, device=a.device, delight=not a.no_delight,
                            detail=not a.no_detail)
        wall = time.perf_counter() - t0
        if a.timing:
            print(f"bake time, {len(views)} views of {views[0]['image'].shape[1]}x{views[0]['image'].shape[0]} "
                  f"-> {2 * size}x{size} texture (tiles 1001+1002 at {size}px): {wall:.2f} s wall")
            print("stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in out["timings_s"].items()))
        if a.synthetic:
            from .atlas import get_atlas

            at = get_atlas(model, size)
            err = texture_error(out["albedo"], tex, out["seen"], at.skin)
            print(f"synthetic texture error on confidently seen skin texels: PSNR {err['psnr_db']:.2f} dB, "
                  f"MAE {err['mae']:.2f}/255, {100 * err['fraction_of_skin']:.1f}% of skin texels")
        _print_views(out, [f"synthetic{i}" for i in range(len(views))])
        _save(a.save, out, [f"synthetic{i}" for i in range(len(views))])
        return 0

    model = load_face_model()
    identity, views = views_from_bundle(a.bundle, model)
    size = a.size or 1024
    out = bake_textures(model, identity, views, size=size, device=a.device, delight=not a.no_delight,
                        detail=not a.no_detail)
    print(f"bundle {a.bundle}: {len(views)} views, texture {2 * size}x{size}, "
          f"skin coverage {100 * out['coverage']:.1f}%, bake {out['timings_s']['total']:.2f} s")
    _print_views(out, [v["name"] for v in views])
    _save(a.save, out, [v["name"] for v in views])
    return 0


def _print_views(out, names):
    print(f"{'view':<16} {'PSNR dB':>8} {'SSIM':>7} {'mask px':>8}")
    for n, m in zip(names, out["metrics"]):
        print(f"{n:<16} {m['psnr_db']:8.2f} {m['ssim']:7.4f} {m['mask_pixels']:8d}")


def _save(folder, out, names):
    if not folder:
        return
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(d / "albedo.png"), out["albedo"][..., ::-1])
    if out["normal"] is not None:
        cv2.imwrite(str(d / "normal.png"), out["normal"][..., ::-1])
    for n, r in zip(names, out["renders"]):
        cv2.imwrite(str(d / f"render_{n}.png"), r[..., ::-1])


if __name__ == "__main__":
    sys.exit(main())
