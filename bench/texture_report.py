"""Texture-baking report and benchmark.

  python -m bench.texture_report BUNDLE_DIR [--size 2048] [--hair remove|keep] [--save DIR]
      bake from a result bundle's fitted cameras and print per-view PSNR / SSIM of the
      re-rendered textured head against each photo (over the photo's skin) and the stage times
  python -m bench.texture_report --bench [--out docs] [--pictures docs] [--before-root DIR]
      the benchmark: rendered scenes with known albedo, background, shirt and hair
      (contamination, albedo PSNR, re-render PSNR/SSIM, hair mask), the real 3-photo job
      (bake time, peak memory of the whole job in a subprocess), and the pictures of docs/.
      --out writes the '## Texture' section of DIR/benchmarks.md (the other sections stay);
      --before-root: a checkout of an earlier backend (e.g. `git archive 0090f3b backend weights |
      tar -x -C DIR`), whose albedos go beside ours in the before/after picture
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from backend.face_model import load_face_model
from backend.texture.bake import bake_textures, to_linear, to_srgb
from backend.texture.metrics import psnr

from .report import write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Texture"
HRN = ROOT / "tests" / "data" / "multiview-hrn"
SAMPLE = ROOT / "tests" / "data" / "same-person" / "kit_harington"


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


def segment(views: list[dict]) -> None:
    """Add the selfie segmenter's person probability to each view, as the pipeline does."""
    from backend.landmarks.segmentation import PersonSegmenter

    with PersonSegmenter() as seg:
        for v in views:
            v["person"] = seg.person_probability(v["image"])


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


# ---- rendered scenes

SCENES = {
    "green wall, blue shirt, dark hair": dict(background=(40, 170, 70), shirt=(40, 70, 180), hair=(60, 38, 25)),
    "beige wall, white shirt, dark hair": dict(background=(196, 170, 140), shirt=(235, 235, 230), hair=(45, 30, 22)),
    "white studio, red shirt, blond hair": dict(background=(245, 245, 245), shirt=(170, 30, 35), hair=(190, 150, 90)),
}


def scene_run(name: str, seed: int, size: int = 1024, image_size: int = 512, hair: str = "remove") -> dict:
    from backend.texture.atlas import get_atlas

    from .texture_synthetic import Scene, hair_region, make_views, scene_texture, skin_texture

    model = load_face_model()
    rng = np.random.default_rng(seed)
    identity = (0.7 * rng.standard_normal(model.n_identity)).astype(np.float32)
    skin = skin_texture(model, size, seed=seed, tone_srgb=((205, 150, 125), (160, 110, 85), (225, 180, 160))[seed % 3])
    scene = Scene(**SCENES[name])
    tex, label = scene_texture(model, skin, scene, seed=seed)
    L = np.zeros((9, 3), np.float32)
    L[0], L[1], L[2], L[3] = [2.6, 2.5, 2.4], 0.6, 0.4, 0.3 * (1 if seed % 2 else -1)
    views = make_views(model, identity, tex, yaws=(0.0, -40.0, 40.0), size=image_size, L=L, seed=seed, scene=scene,
                       label_uv=label)
    segment(views)
    t0, c0 = time.perf_counter(), time.process_time()
    out = bake_textures(model, identity, views, size=size, hair=hair, probes=[v["nonskin"] for v in views])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    work = out["work_size"]
    at = get_atlas(model, work)
    lab_w = cv2.resize(label, (2 * work, work), interpolation=cv2.INTER_NEAREST)
    used = out["seen"] > 0.02
    share = out["probe"][used]
    # albedo on the texels baked from the photos alone, against the true skin (one gain per channel:
    # the albedo / light scale ambiguity)
    obs = (out["conf"] > 0.99) & (lab_w == 0) & at.skin
    a = out["albedo_linear"][obs]
    t = cv2.resize(skin, (2 * work, work), interpolation=cv2.INTER_AREA)[obs]
    g = (a * t).sum(0) / np.maximum((a * a).sum(0), 1e-12)
    alb_psnr = psnr(to_srgb(t), to_srgb(np.clip(a * g, 0, 1)))
    hair_gt = hair_region(model, size, scene)
    hm = out["hair_mask"] > 127
    front = hair_gt & (cv2.resize(_neutral_z(model, size), (2 * size, size)) > -2.0)
    face_skin = get_atlas(model, size).face & (label == 0)
    return {"scene": name, "seed": seed, "views": views, "out": out, "skin": skin, "label": label,
            "row": [name, seed, f"{100 * float((share > 0.05).mean()):.3f}", f"{100 * float(share.mean()):.3f}",
                    f"{alb_psnr:.2f}", f"{100 * float(obs.sum() / at.skin.sum()):.1f}",
                    f"{np.mean([m['psnr_db'] for m in out['metrics']]):.2f}",
                    f"{np.mean([m['ssim'] for m in out['metrics']]):.3f}",
                    f"{100 * float(hm[front].mean()):.1f}", f"{100 * float(hm[hair_gt].mean()):.1f}",
                    f"{100 * float(hm[face_skin].mean()):.2f}", f"{wall:.2f}", f"{cpu:.2f}"]}


def _neutral_z(model, size):
    from backend.texture.atlas import get_atlas

    _, pos = get_atlas(model, size).full(model.neutral)
    return pos[..., 2]


# ---- real photos

def fit_bundle(photos, out: Path) -> Path:
    from backend.pipeline import reconstruct

    reconstruct([str(p) for p in photos], str(out), texture=False, device="cpu")
    return out


def timed_bakes(model, identity, views, size=2048, repeats=3, **kw) -> tuple[dict, list, list]:
    """Bake `repeats` times (the first is cold: atlas and regions built); (last output, walls, cpus)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = bake_textures(model, identity, views, size=size, **kw)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return out, walls, cpus


JOB_CODE = """
import sys, json, time, resource
from backend.__main__ import main
t0 = time.perf_counter()
rc = main(["reconstruct", *sys.argv[2:], "-o", sys.argv[1], "-q"])
wall = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter survives fork+exec and would report the parent's own peak
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({"rc": rc, "wall": wall, "peak_mb": int(hwm) / 1024,
                  "timings": json.load(open(sys.argv[1] + '/result.json'))["timings_s"],
                  "texture": json.load(open(sys.argv[1] + '/result.json'))["texture"]["timings_s"]}))
"""


def job_in_subprocess(photos, root: Path = ROOT, extra_args=()) -> dict:
    """The whole CLI job in a fresh interpreter: its peak resident memory and stage times."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "b"
        res = subprocess.run([sys.executable, "-c", JOB_CODE, str(out), *map(str, photos), *extra_args], cwd=root,
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        return json.loads(res.stdout.strip().splitlines()[-1])


def before_albedo(root: Path, photos, size: int) -> np.ndarray | None:
    """Albedo from an earlier backend checkout (subprocess), for the before/after picture."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "b"
        res = subprocess.run([sys.executable, "-m", "backend", "reconstruct", *map(str, photos), "-o", str(out), "-q",
                              "--texture-size", str(size)], cwd=root, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHONPATH": str(root)})
        img = cv2.imread(str(out / "albedo.png"))
        return None if img is None else img[..., ::-1]


# ---- seams

def seam_steps(model, albedo_u8: np.ndarray) -> np.ndarray:
    """Colour step (sRGB levels, max over channels) across every UV cut of the skin: for each mesh
    edge whose two triangles lie in different places of the layout, the albedo's tone (blurred to
    ~1 mm) just inside either side, at three points along the edge."""
    from backend.texture.atlas import SKIN_PARTS, tri_part_mask

    tris, tuv = model.triangles(), model.triangle_uvs()
    sk = np.nonzero(tri_part_mask(model, SKIN_PARTS))[0]
    sides = {}
    for t in sk:
        for a, b in ((0, 1), (1, 2), (2, 0)):
            va, vb = tris[t, a], tris[t, b]
            ua, ub = (tuv[t, a], tuv[t, b]) if va < vb else (tuv[t, b], tuv[t, a])
            sides.setdefault((min(va, vb), max(va, vb)), []).append((ua, ub, tuv[t, 3 - a - b]))
    pairs = [v for v in sides.values() if len(v) == 2 and (v[0][0] != v[1][0] or v[0][1] != v[1][1])]
    size = albedo_u8.shape[0]
    img = cv2.GaussianBlur(albedo_u8.astype(np.float32), (0, 0), size / 512)

    def inside(side):
        uv = model.uv[np.array(side)]  # (n, 3, 2): edge ends, opposite corner
        pts = []
        for f in (0.25, 0.5, 0.75):
            p = uv[:, 0] * (1 - f) + uv[:, 1] * f
            d = uv[:, 2] - p
            pts.append(p + d / np.linalg.norm(d, axis=1, keepdims=True) * (3.0 / 2048))
        p = np.stack(pts, 1)
        x = (p[..., 0] * size - 0.5).astype(np.float32).reshape(1, -1)
        y = ((1 - p[..., 1]) * size - 0.5).astype(np.float32).reshape(1, -1)
        return cv2.remap(img, x, y, cv2.INTER_LINEAR).reshape(len(uv), 3, 3)

    a = inside([p[0] for p in pairs])
    b = inside([p[1] for p in pairs])
    return np.abs(a - b).max(-1).mean(1)


# ---- report

class Report:
    def __init__(self):
        self.lines = []

    def __call__(self, s=""):
        self.lines.append(s)
        print(s, flush=True)

    def table(self, head, rows):
        self("| " + " | ".join(head) + " |")
        self("|" + "|".join("---:" for _ in head) + "|")
        for r in rows:
            self("| " + " | ".join(str(x) for x in r) + " |")


def bench(out_dir: Path | None, pictures: Path | None, before_root: Path | None, quick: bool = False) -> list[str]:
    from .accuracy import machine_info

    t_all = time.perf_counter()
    rep = Report()
    rep(SECTION)
    rep()
    rep("Command: `python -m bench.texture_report --bench --out docs --pictures docs` (CPU). Machine:")
    rep()
    for line in machine_info():
        rep(line)
    rep()
    model = load_face_model()

    # 1. rendered scenes
    rep("### Rendered scenes: known albedo, coloured background, shirt and hair")
    rep()
    rep("A random ICT head with a skin-like albedo (tone, mottling, lips, brows; `bench/texture_synthetic.py`) is "
        "rendered under SH light from yaw 0 and +-40 deg (512 px photos, true cameras), with hair over the scalp "
        "(above a hairline at the brows' height in front, the ear tops at the sides and the nape at the back), a "
        "shirt over the neck below the collar and as a torso, and a coloured background; MediaPipe's selfie "
        "segmenter runs on the renders as in the pipeline; texture 1024. Contamination: skin texels that took "
        "photo colour (summed weight > 0.02) whose colour is more than 5 % background, shirt, hair or eye "
        "(the per-photo 'not skin' label image baked with the albedo's own weights). Albedo PSNR: texels baked "
        "from the photos alone (confidence 1) against the true skin, after one gain per channel (the albedo / "
        "light scale ambiguity). Re-render: the textured head in each photo at the head-box scale, over the "
        "photo's skin, mean over views. Hair: rendered hair texels with hair_mask > 0.5, on the front half of "
        "the head (seen) and on all of it (the back is seen by no camera: completed), and face skin marked hair.")
    rep()
    rows, cases = [], []
    seeds = (1,) if quick else (1, 2)
    for name in SCENES:
        for seed in seeds:
            c = scene_run(name, seed)
            rows.append(c["row"])
            cases.append(c)
    rep.table(["scene", "seed", "contaminated texels %", "mean non-skin share %", "albedo PSNR dB", "baked from "
               "photos % of skin", "re-render PSNR dB", "re-render SSIM", "hair found, front %", "hair found, all %",
               "face marked hair %", "bake wall s", "bake CPU s"], rows)
    worst = max(float(r[2]) for r in rows)
    rep()
    rep(f"- target contamination < 1 %: worst {worst:.3f} % -> {'PASS' if worst < 1 else 'FAIL'}")
    rep()

    # 2. real photos
    rep("### Real photos: tests/data/multiview-hrn (3 photos, 1024 px) -> 2048 texture")
    rep()
    with tempfile.TemporaryDirectory() as d:
        bundle = fit_bundle(sorted(HRN.glob("*.jpg")), Path(d) / "hrn")
        identity, views = views_from_bundle(bundle, model)
    segment(views)
    out, walls, cpus = timed_bakes(model, identity, views, size=2048, repeats=2 if quick else 4)
    warm_w, warm_c = float(np.median(walls[1:])), float(np.median(cpus[1:]))
    rep(f"`bake_textures` in process, photos segmented beforehand (the selfie segmenter takes ~10 ms a photo): cold "
        f"(atlas and UV regions built) {walls[0]:.2f} s wall / {cpus[0]:.2f} s CPU; warm (median of {len(walls) - 1}) "
        f"{warm_w:.2f} s wall / {warm_c:.2f} s CPU. Work size {out['work_size']} (see below), written at 2048. "
        f"Stages of the last run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in out["timings_s"].items()) + ".")
    rep()
    rep.table(["view", "re-render PSNR dB", "SSIM", "mean-colour PSNR dB", "pixels"],
              [[v["name"], m["psnr_db"], m["ssim"], m["flat_psnr_db"], m["mask_pixels"]]
               for v, m in zip(views, out["metrics"])])
    rep()
    e = out["eyes"]
    rep(f"Eyes: iris {e['iris_px_max']} px across at most, iris from {e['source']}, sclera from {e['sclera']}; "
        f"skin coverage (texels taking photo colour) {100 * out['coverage']:.1f} %.")
    rep()
    st = seam_steps(model, out["albedo"])
    before = {}
    if before_root is not None:
        before["multiview-hrn"] = before_albedo(before_root, sorted(HRN.glob("*.jpg")), 2048)
    bs = None if before.get("multiview-hrn") is None else seam_steps(model, before["multiview-hrn"])
    rep(f"Seams: colour step of the albedo's tone across the layout's {len(st)} UV cuts of the skin (face/scalp, "
        f"ears, under the chin, the lips' inner rim), sRGB levels: median {np.median(st):.1f}, 90th percentile "
        f"{np.percentile(st, 90):.1f}" + ("" if bs is None else f"; the earlier baker (`--before-root`) on the same "
                                           f"photos: median {np.median(bs):.1f}, 90th percentile "
                                           f"{np.percentile(bs, 90):.1f}") + ".")
    rep()
    # the work size: the same bake at the full 2048
    from backend.texture import bake as bake_mod

    keep = bake_mod.TEXELS_PER_PHOTO_PX
    try:
        bake_mod.TEXELS_PER_PHOTO_PX = 1e9  # forces work size = size
        full = bake_textures(model, identity, views, size=2048, detail=False, eyes=False, metrics=False)
    finally:
        bake_mod.TEXELS_PER_PHOTO_PX = keep
    conf = full["conf"] > 0.99
    d_ws = psnr(full["albedo"], out["albedo"], conf)
    down_up = cv2.resize(cv2.resize(full["albedo"], (2048, 1024), interpolation=cv2.INTER_AREA), (4096, 2048),
                         interpolation=cv2.INTER_LINEAR)
    rep(f"Work size: the bake runs at the smallest of 2048, 1024, 512 with >= {keep} texels per photo pixel on the "
        f"face of the sharpest photo, then is resampled to 2048. Here: {out['work_size']}. Against a bake at the full "
        f"2048 (texels baked from the photos alone): PSNR {d_ws:.1f} dB; the full bake against its own 1024 "
        f"down-and-up copy: {psnr(full['albedo'], down_up, conf):.1f} dB (the photos hold no detail finer than "
        "that).")
    rep()

    # 3. the whole job, peak memory
    job = job_in_subprocess(sorted(HRN.glob("*.jpg")))
    t = job["timings"]
    rep(f"Whole job (`python -m backend reconstruct tests/data/multiview-hrn/*.jpg -o OUT`, fresh interpreter): peak "
        f"resident memory (VmHWM) **{job['peak_mb']:.0f} MiB**; stages (s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in t.items()) + f"; of the texture stage, bake {job['texture']['total']:.2f} s "
        f"and PNG encoding {job['texture'].get('png', 0):.2f} s (5 images, 2 threads).")
    rep()
    rep(f"- target bake < 2 s (3 photos -> 2048): warm {warm_w:.2f} s wall ({warm_c:.2f} s CPU) -> "
        f"{'PASS' if warm_w < 2 else 'check on a quiet machine' if warm_c < 2.5 else 'FAIL'}")
    rep(f"- target job peak < 1.5 GB: {job['peak_mb']:.0f} MiB -> {'PASS' if job['peak_mb'] < 1536 else 'FAIL'}")
    rep("- before this work (FINDINGS.md, commit 29d838f): texture 14.8 s of an 18.5 s job, peak 4.3 GB; white "
        "background on 2.1 % of the albedo of a studio pair")
    rep()

    if pictures is not None:
        _pictures(pictures, model, out, views, cases, before_root, before, rep)
    rep(f"Benchmark wall time {time.perf_counter() - t_all:.0f} s; load average at the end: %.2f / %.2f / %.2f "
        "(timings are wall clock on a shared machine: the CPU-time column is the steadier figure)." % os.getloadavg())
    if out_dir is not None:
        write_section(Path(out_dir) / "benchmarks.md", rep.lines)
    return rep.lines


def _pictures(folder: Path, model, hrn_out, hrn_views, cases, before_root, before, rep):
    folder.mkdir(parents=True, exist_ok=True)
    w = 1024

    def small(img, width=w):
        return cv2.resize(img, (width, width * img.shape[0] // img.shape[1]), interpolation=cv2.INTER_AREA)

    def grey(m):
        return np.repeat(m[..., None], 3, 2)

    def label(img, text):
        img = img.copy()
        cv2.putText(img, text, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(img, text, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
        return img

    # albedo and hair mask of the sample heads, before / after
    with tempfile.TemporaryDirectory() as d:
        kit_b = fit_bundle(sorted(p for p in SAMPLE.iterdir() if p.suffix.lower() in (".jpg", ".png")), Path(d) / "k")
        kid, kviews = views_from_bundle(kit_b, model)
    segment(kviews)
    kit = bake_textures(model, kid, kviews, size=2048, metrics=False)
    rows = []
    for name, out, photos in (("multiview-hrn", hrn_out, sorted(HRN.glob("*.jpg"))),
                              ("same-person/kit_harington", kit, sorted(SAMPLE.iterdir()))):
        after = label(small(out["albedo"]), f"{name}: albedo (hair removed)")
        row = [after, label(small(grey(out["hair_mask"])), "hair_mask.png")]
        if before_root is not None:
            b = before.get(name)
            if b is None:
                b = before_albedo(before_root, [p for p in photos if p.suffix.lower() in (".jpg", ".png")], 1024)
            if b is not None:
                row.insert(0, label(small(b), f"{name}: before (commit 0090f3b)"))
        rows.append(np.hstack(row))
    cv2.imwrite(str(folder / "texture_albedo.png"), np.vstack(rows)[..., ::-1])
    rep("![albedo and hair mask of sample heads, before and after](texture_albedo.png)")
    rep()
    # eyes
    eye = np.hstack([label(small(hrn_out["eye_albedo"], 384), "eye_albedo.png (inner ball)"),
                     label(small(hrn_out["eye_shell_albedo"], 384), "eye_shell_albedo.png"),
                     label(small(kit["eye_albedo"], 384), "eye_albedo.png (kit)")])
    cv2.imwrite(str(folder / "texture_eyes.png"), eye[..., ::-1])
    rep("![eye textures: the inner ball (iris plane and sclera, behind a clear cornea) and the outer shell](texture_eyes.png)")
    rep()
    # re-renders of the real photos
    rr = [label(small(r, 320), v["name"]) for v, r in zip(hrn_views, hrn_out["renders"])]
    rr = [cv2.copyMakeBorder(r, 0, max(x.shape[0] for x in rr) - r.shape[0], 0, 0, cv2.BORDER_CONSTANT) for r in rr]
    cv2.imwrite(str(folder / "texture_rerender.png"), np.hstack(rr)[..., ::-1])
    rep("![the textured face re-rendered into the photos (hair removed, by design)](texture_rerender.png)")
    rep()
    # a rendered scene: photo, true albedo, baked albedo, true hair vs mask
    from .texture_synthetic import hair_region

    c = cases[0]
    size = c["skin"].shape[0]
    photos = np.hstack([label(cv2.resize(v["image"], (512, 512)), "rendered photo") for v in c["views"][1:3]])
    truth = label(small(to_srgb(c["skin"]), 1024), "true skin albedo")
    baked = label(small(c["out"]["albedo"], 1024), "baked albedo")
    gt = hair_region(model, size, _scene(c["scene"]))
    hm = np.stack([c["out"]["hair_mask"], (gt * 255).astype(np.uint8), np.zeros_like(c["out"]["hair_mask"])], -1)
    hm = label(small(hm, 1024), "hair: mask red, rendered green, both yellow")
    grid = np.vstack([np.hstack([truth, baked]), np.hstack([hm, photos])])
    cv2.imwrite(str(folder / "texture_synthetic.png"), small(grid, 1600)[..., ::-1])
    rep("![rendered scene: true and baked albedo, hair mask against the rendered hair](texture_synthetic.png)")
    rep()
    # detail normal map of the sample
    if hrn_out.get("normal") is not None:
        cv2.imwrite(str(folder / "texture_normal.png"), small(hrn_out["normal"])[..., ::-1])


def _scene(name):
    from .texture_synthetic import Scene

    return Scene(**SCENES[name])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.texture_report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="result bundle folder (needs result.json, images/)")
    ap.add_argument("--size", type=int, default=2048, help="texture size (rows; the image is 2*size wide)")
    ap.add_argument("--hair", choices=["remove", "keep"], default="remove")
    ap.add_argument("--bench", action="store_true", help="the texture benchmark (scenes, real photos, memory)")
    ap.add_argument("--quick", action="store_true", help="with --bench: one seed per scene, fewer timing runs")
    ap.add_argument("--out", help="with --bench: folder whose benchmarks.md gets the '## Texture' section")
    ap.add_argument("--pictures", help="with --bench: folder for the texture pictures (docs)")
    ap.add_argument("--before-root", help="with --pictures: checkout of an earlier backend for the before picture")
    ap.add_argument("--no-delight", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save", help="write albedo.png, hair_mask.png, eye_albedo.png and render_<view>.png here")
    a = ap.parse_args(argv)
    if a.bench:
        bench(Path(a.out) if a.out else None, Path(a.pictures) if a.pictures else None,
              Path(a.before_root).resolve() if a.before_root else None, quick=a.quick)
        return 0
    if not a.bundle:
        ap.error("give a BUNDLE_DIR or --bench")
    model = load_face_model()
    identity, views = views_from_bundle(a.bundle, model)
    segment(views)
    out = bake_textures(model, identity, views, size=a.size, device=a.device, delight=not a.no_delight, hair=a.hair)
    print(f"bundle {a.bundle}: {len(views)} views, texture {2 * a.size}x{a.size} (work size {out['work_size']}), "
          f"skin coverage {100 * out['coverage']:.1f}%, bake {out['timings_s']['total']:.2f} s")
    print("stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in out["timings_s"].items()))
    print(f"{'view':<16} {'PSNR dB':>8} {'SSIM':>7} {'flat dB':>8} {'mask px':>8}")
    for v, m in zip(views, out["metrics"]):
        print(f"{v['name']:<16} {m['psnr_db']:8.2f} {m['ssim']:7.4f} {m['flat_psnr_db']:8.2f} {m['mask_pixels']:8d}")
    print("eyes:", out["eyes"])
    if a.save:
        d = Path(a.save)
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / "albedo.png"), out["albedo"][..., ::-1])
        cv2.imwrite(str(d / "hair_mask.png"), out["hair_mask"])
        cv2.imwrite(str(d / "eye_albedo.png"), out["eye_albedo"][..., ::-1])
        if out["normal"] is not None:
            cv2.imwrite(str(d / "normal.png"), out["normal"][..., ::-1])
        for v, r in zip(views, out["renders"]):
            cv2.imwrite(str(d / f"render_{v['name']}.png"), r[..., ::-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
