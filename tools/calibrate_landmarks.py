"""Calibrate the MediaPipe->ICT landmark map on rendered faces (bench/landmark_calibration.py says how and why) and
write weights/mediapipe_to_ict.npz, the map the fitter uses.

    python tools/calibrate_landmarks.py [--single 400] [--triples 100] [--seed 10000] [--check N]
    python tools/calibrate_landmarks.py --tune-only [--single 300]   # the last two steps on the stored map

Steps: the map itself (where MediaPipe puts each point on the surface, its noise per view yaw, the face oval's
table), then with the product's fit settings: how far to trust MediaPipe's own expression scores
(tune_blendshape_sigma) and how far its points move per shape (tune_expression_gain).

Scenes come from bench/gt_scenes.py (cached under .cache/gt/): `--single` one-photo scenes (yaw within +-35 deg,
like most photos) and `--triples` three-photo scenes (yaw out to +-70 deg, for the face oval's table), with seeds
from --seed up; the benchmark (python -m bench.real) uses other seeds. --check N recalibrates from the first N
single-photo scenes only and compares with the stored file: the fixed landmarks must land within sampling noise.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend import paths  # noqa: E402
from backend.correspondence import load_correspondence  # noqa: E402
from backend.face_model import load_face_model  # noqa: E402
from bench import gt_scenes  # noqa: E402
from bench.landmark_calibration import calibrate, tune_blendshape_sigma, tune_expression_gain  # noqa: E402

TRIPLE_SEED_OFFSET = 10000  # three-photo scenes use seeds from --seed + this


def _progress(label):
    t0 = time.perf_counter()

    def report(i, n):
        if i % 25 == 0 or i == n:
            print(f"  {label}: {i}/{n} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return report


def calibrated_map(model, n_single, n_triples, seed):
    base = load_correspondence(paths.MP_TO_ICT_GEOMETRIC)
    scenes = gt_scenes.scenes(model, range(seed, seed + n_single), 1, progress=_progress("single photos"))
    scenes += gt_scenes.scenes(model, range(seed + TRIPLE_SEED_OFFSET, seed + TRIPLE_SEED_OFFSET + n_triples), 3,
                               progress=_progress("three-photo sets"))
    contour = np.flatnonzero(base["contour"])
    return calibrate(model, scenes, base, contour, progress=_progress("material hits"))


def record_checksum(path: Path) -> None:
    """weights/checksums.json is what `python -m backend check` verifies: a rewritten weight file updates it."""
    import hashlib
    import json

    sums_path = paths.WEIGHTS_DIR / "checksums.json"
    sums = json.loads(sums_path.read_text())
    sums[path.relative_to(paths.WEIGHTS_DIR).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    sums_path.write_text(json.dumps(dict(sorted(sums.items())), indent=1) + "\n")


def drift_mm(model, a, b) -> np.ndarray:
    """Per fixed landmark: distance (mm) on the neutral face between two maps' points."""
    def pos(c):
        return (model.neutral[c["tri_vertex_ids"]] * c["bary"][..., None]).sum(1)

    return np.linalg.norm(pos(a) - pos(b), axis=1) * 10


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=400)
    ap.add_argument("--triples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=10000)
    ap.add_argument("--check", type=int, metavar="N", help="recalibrate from N single photos and compare")
    ap.add_argument("--tune-only", action="store_true",
                    help="keep the stored map; redo the blendshape spreads and the expression gains")
    args = ap.parse_args(argv)
    model = load_face_model()
    if args.check:
        fresh = calibrated_map(model, args.check, 0, args.seed)
        stored = load_correspondence(paths.MP_TO_ICT)
        fixed = ~stored["contour"] & (np.arange(478) < 468)
        d = drift_mm(model, fresh, stored)[fixed]
        ok = np.median(d) < 0.6 and np.percentile(d, 90) < 1.5
        print(f"calibration reproducible from {args.check} photos: {ok} (fixed landmarks: drift median "
              f"{np.median(d):.2f} mm, 90th {np.percentile(d, 90):.2f} mm)")
        return 0 if ok else 1
    if args.tune_only:
        out = dict(np.load(paths.MP_TO_ICT))
    else:
        out = calibrated_map(model, args.single, args.triples, args.seed)
        out["calibration_seeds"] = np.array([args.seed, args.single, args.triples])
        out["blendshape_sigma_measured"] = out["blendshape_sigma"]
        np.savez_compressed(paths.MP_TO_ICT, **out)
        record_checksum(paths.MP_TO_ICT)
        print(f"wrote {paths.MP_TO_ICT} from {int(out['calibration_photos'])} detected photos")
    tune(model, out, gt_scenes.scenes(model, range(args.seed, args.seed + args.single), 1,
                                      progress=_progress("single photos")))
    return 0


def tune(model, out: dict, scenes) -> None:
    """The product's single-photo fit on rendered photos: MediaPipe score spreads, then the expression gains."""
    from dataclasses import replace

    from backend.fit import landmark_spec
    from backend.fit.presets import product_config

    out.pop("expression_gain", None)
    np.savez_compressed(paths.MP_TO_ICT, **out)
    record_checksum(paths.MP_TO_ICT)
    spec = landmark_spec("mediapipe478", model)
    cfg = product_config("mediapipe478", 1)
    if "blendshape_sigma_measured" in out:
        spec.blendshape_sigma = out["blendshape_sigma_measured"].astype(np.float64)
    show = lambda r, n, *f: print(f"  round {r}/{n}: {f}", flush=True)  # noqa: E731
    out["blendshape_sigma"] = tune_blendshape_sigma(model, spec, scenes, cfg, progress=show)
    spec.blendshape_sigma = out["blendshape_sigma"]
    np.savez_compressed(paths.MP_TO_ICT, **out)
    out["expression_gain"] = tune_expression_gain(model, spec, scenes, replace(cfg), progress=show)
    np.savez_compressed(paths.MP_TO_ICT, **out)
    record_checksum(paths.MP_TO_ICT)
    names = model.expression_names
    print("expression gains: " + ", ".join(f"{names[i]} {g:.2f}" for i, g in enumerate(out["expression_gain"])
                                            if g != 1.0), flush=True)


if __name__ == "__main__":
    sys.exit(main())
