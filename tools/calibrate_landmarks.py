"""Calibrate the MediaPipe->ICT landmark map on rendered faces (bench/landmark_calibration.py says how and why) and
write weights/mediapipe_to_ict.npz, the map the fitter uses.

    python tools/calibrate_landmarks.py [--single 400] [--triples 100] [--seed 10000] [--check N]

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
from bench.landmark_calibration import calibrate  # noqa: E402

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
    out = calibrated_map(model, args.single, args.triples, args.seed)
    out["calibration_seeds"] = np.array([args.seed, args.single, args.triples])
    np.savez_compressed(paths.MP_TO_ICT, **out)
    record_checksum(paths.MP_TO_ICT)
    print(f"wrote {paths.MP_TO_ICT} from {int(out['calibration_photos'])} detected photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
