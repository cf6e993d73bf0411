"""Figures behind backend/fit/identity_check.py's thresholds: the leave-one-out ratios of the test photos.

    .venv/bin/python tools/measure_identity_check.py

Prints, for the subject's own three mvfnet views and for each of three strangers added to them, every view's
ratio (error with the other views' identity / error fitted alone) and the extra error in % of eye distance.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import pipeline
from backend.fit import identity_check  # noqa: E402

DATA = ROOT / "tests" / "data"
OWN = [DATA / "multiview-mvfnet" / n for n in ("front.jpg", "left.jpg", "right.jpg")]
STRANGERS = [DATA / "multiview-hrn" / "5932.jpg", DATA / "single-300w" / "image_0010.png",
             DATA / "single-300w" / "astronaut.png"]


def main() -> None:
    print(f"RATIO_WARN {identity_check.RATIO_WARN}, MIN_EXTRA {100 * identity_check.MIN_EXTRA:.2f} % of eye distance")
    for extra in [None, *STRANGERS]:
        views, _ = pipeline.detect_views(OWN + ([extra] if extra else []))
        model, spec, _ = pipeline.fit_views(views)
        s = identity_check.identity_scores(views, model, spec)
        flagged = identity_check.identity_warnings(views, model, spec)
        print(f"{extra.name if extra else 'own views only':16s} ratio {np.round(s['ratio'], 3)} "
              f"extra % {np.round(100 * (s['others'] - s['alone']), 3)} flagged: {[w.split(':')[0] for w in flagged]}")


if __name__ == "__main__":
    main()
