"""Rebuild weights/mediapipe_to_ict.npz from the two models' geometry (see backend/correspondence.py).

    python scripts/build_mp_correspondence.py [--check]

--check rebuilds in memory and fails if the stored file differs (reproducibility).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend import paths  # noqa: E402
from backend.correspondence import build  # noqa: E402
from backend.face_model import load_face_model  # noqa: E402
from backend.mp_canonical import load_canonical_mesh  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    contour = sorted({c.start for c in C.FACE_LANDMARKS_FACE_OVAL} | {c.end for c in C.FACE_LANDMARKS_FACE_OVAL})
    v, _, tris = load_canonical_mesh()
    data = build(load_face_model(), v, tris, contour)
    if args.check:
        with np.load(paths.MP_TO_ICT) as old:
            same = all(np.allclose(old[k], data[k], atol=1e-4, equal_nan=True) for k in ("tri_vertex_ids", "bary"))
        print("correspondence reproducible:", same)
        sys.exit(0 if same else 1)
    np.savez_compressed(paths.MP_TO_ICT, **data)
    print(f"wrote {paths.MP_TO_ICT}")


if __name__ == "__main__":
    main()
