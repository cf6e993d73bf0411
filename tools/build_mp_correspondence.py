"""Rebuild weights/mediapipe_to_ict_geometric.npz from the two models' geometry (bench/correspondence_build.py):
the starting point of tools/calibrate_landmarks.py, which writes the map the fitter uses.

    python tools/build_mp_correspondence.py [--check]

--check rebuilds in memory and fails if the stored file differs (reproducibility).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend import paths  # noqa: E402
from bench.correspondence_build import build, rebuild_drift_mm  # noqa: E402
from backend.face_model import load_face_model  # noqa: E402
from bench.mp_canonical import load_canonical_mesh  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    contour = sorted({c.start for c in C.FACE_LANDMARKS_FACE_OVAL} | {c.end for c in C.FACE_LANDMARKS_FACE_OVAL})
    v, _, tris = load_canonical_mesh()
    model = load_face_model()
    data = build(model, v, tris, contour)
    if args.check:
        with np.load(paths.MP_TO_ICT_GEOMETRIC) as old:
            drift = rebuild_drift_mm(model, {k: old[k] for k in old.files}, data)
        moved = np.flatnonzero(drift > 0.5)
        same = np.median(drift) < 0.15 and len(moved) <= 1
        print(f"correspondence reproducible: {same} (drift median {np.median(drift):.3f} mm, "
              f"max {drift.max():.2f} mm, points moved > 0.5 mm: {moved.tolist()})")
        sys.exit(0 if same else 1)
    np.savez_compressed(paths.MP_TO_ICT_GEOMETRIC, **data)
    from calibrate_landmarks import record_checksum

    record_checksum(paths.MP_TO_ICT_GEOMETRIC)
    print(f"wrote {paths.MP_TO_ICT_GEOMETRIC}")


if __name__ == "__main__":
    main()
