"""The fit settings the product uses, per detector: FitConfig's defaults suit exact landmarks (the synthetic
benchmark); real detectors need what was measured on rendered faces seen through them (python -m bench.real,
docs/benchmarks.md "Real detector"; tools/calibrate_landmarks.py for the landmark map these go with)."""
from __future__ import annotations

from dataclasses import replace

from .adjuster import FitConfig


def identity_modes(n_views: int) -> int:
    """How many identity modes a job of n photos fits. MediaPipe's points do not carry a face's finer shape: on
    rendered faces of known shape a one-photo fit with all 100 modes lands further from the truth than the mean
    face, and photos of one person spread as widely as different people's do; the top modes are what the photos
    agree on (real photos, identity ratio same / different person: 0.82 -> 0.57 from single photos, 0.63 -> 0.36
    from pairs with 8 modes). More photos pin down more."""
    return 8 if n_views <= 2 else 30 if n_views <= 4 else 60


def product_config(landmark_format: str, n_views: int, base: FitConfig | None = None) -> FitConfig:
    """Settings for a job of n_views photos with this detector's landmarks, on top of `base`.

    Any detector: antagonist shapes kept apart (a face cannot do both, measured: 45 pairs above 0.3 on 20 real
    photos without it, 0 with it), and the focal drawn towards a real camera (45 mm equivalent, the middle of
    24-85 mm; weight 7.5 = a spread of 0.37 in log focal) where EXIF gives none.
    MediaPipe-478 (calibrated): its own blendshape scores as a prior (spreads tuned on rendered photos), an
    identity prior of 3 (its points carry structured, photo-specific errors that iid noise understates) and the
    identity modes the number of photos supports."""
    cfg = replace(base or FitConfig(), antagonist_weight=10.0, focal_prior_equiv_mm=45.0, focal_prior=7.5)
    if landmark_format == "mediapipe478":
        cfg = replace(cfg, blendshape_prior=3.0, blendshape_sigma_cap=0.2, identity_prior=3.0,
                      n_identity=identity_modes(n_views))
    return cfg
