"""Rendered ground-truth scenes seen through the real detector: subjects, photo sets and MediaPipe's output.

A scene is one subject photographed V times with one camera (a photo session with one phone): the same
35 mm-equivalent focal (24-85 mm) and image size, distances 0.5-2 m, head turned to spread yaws, a fresh
expression and gaze per photo, a fresh light and background per photo. MediaPipe runs on every rendered photo;
its 478 points and 52 blendshape scores are what the fitter sees, exactly as for a real photo.

Rendering and detection cost ~1-2 s per photo, so scenes are cached by seed under .cache/gt/ (git-ignored);
`RENDER_VERSION` is part of the key and changes whenever the picture would.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.face_model import ANTAGONISTS, FaceModel, eye_look_weights

from . import render_gt as rg

RENDER_VERSION = "gt-2"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "gt"
IOD_RANGE_PX = (60.0, 260.0)  # eye-corner distance of the rendered faces: phone portraits to group-photo crops

# Expressions a photo set plausibly holds: none, or a few shapes at once, never an antagonist pair.
COMMON = [("mouthSmileLeft", "mouthSmileRight"), ("jawOpen",), ("eyeBlinkLeft", "eyeBlinkRight"),
          ("browInnerUpLeft", "browInnerUpRight"), ("mouthPucker",), ("eyeSquintLeft", "eyeSquintRight"),
          ("eyeWideLeft", "eyeWideRight"), ("browDownLeft", "browDownRight"), ("mouthFunnel",),
          ("browOuterUpLeft", "browOuterUpRight"), ("mouthFrownLeft", "mouthFrownRight"), ("mouthPressLeft", "mouthPressRight"),
          ("cheekSquintLeft", "cheekSquintRight"), ("mouthLeft",), ("mouthRight",), ("jawLeft",), ("jawRight",),
          ("mouthStretchLeft", "mouthStretchRight"), ("mouthRollLower", "mouthRollUpper"), ("noseSneerLeft", "noseSneerRight"),
          ("mouthUpperUpLeft", "mouthUpperUpRight"), ("mouthLowerDownLeft", "mouthLowerDownRight"), ("eyeBlinkLeft",),
          ("mouthSmileLeft",), ("mouthDimpleLeft", "mouthDimpleRight"), ("mouthShrugLower",), ("cheekPuffLeft", "cheekPuffRight")]
@dataclass
class Photo:
    expression: np.ndarray  # (E,) truth, eyeLook* included (they follow the gaze)
    gaze: tuple  # (yaw, pitch) deg
    R: np.ndarray
    t: np.ndarray
    focal: float
    size: tuple
    points: np.ndarray | None  # MediaPipe's 478 points, None when it found no face
    blendshapes: dict | None  # MediaPipe's scores
    n_faces: int = 0


@dataclass
class Scene:
    seed: int
    identity: np.ndarray
    equiv_mm: float
    photos: list = field(default_factory=list)

    @property
    def detected(self) -> list:
        return [p for p in self.photos if p.points is not None]


def sample_expression(rng: np.random.Generator, model: FaceModel, neutral_share: float = 0.3) -> np.ndarray:
    names = model.expression_names
    e = np.zeros(len(names))
    if rng.random() < neutral_share:
        return e
    for k in rng.choice(len(COMMON), rng.integers(1, 4), replace=False):
        w = rng.uniform(0.2, 0.9)
        for n in COMMON[k]:
            e[names.index(n)] = max(e[names.index(n)], w * rng.uniform(0.85, 1.0))
    for a, b in ANTAGONISTS:  # keep the truth free of what the fitter must never output
        ia, ib = names.index(a), names.index(b)
        if e[ia] > 0 and e[ib] > 0:
            e[ib if rng.random() < 0.5 else ia] = 0.0
    return e


def sample_gaze(rng) -> tuple:
    return float(rng.uniform(-20, 20)), float(rng.uniform(-15, 10))


def spread_yaws(rng, n: int, max_yaw: float = 60.0) -> list:
    if n == 1:
        return [float(rng.uniform(-35, 35))]
    base = np.linspace(-max_yaw, max_yaw, n) * rng.uniform(0.6, 1.0)
    return list(np.clip(base + rng.uniform(-8, 8, n), -70, 70))


def make_scene(model: FaceModel, seed: int, n_views: int, detector=None, identity_scale: float = 1.0,
               keep_images: bool = False, yaw: float | None = None, identity_seed: int | None = None
               ) -> tuple[Scene, list]:
    """Render one photo set and run MediaPipe on it. Returns (scene, images if keep_images else []).
    yaw: the head's yaw for a one-photo scene instead of a random one; identity_seed: whose face (default: seed),
    so several scenes can show one subject."""
    rng = np.random.default_rng(seed)
    sub = rg.make_subject(model, seed if identity_seed is None else identity_seed, identity_scale, size=512)
    size = [(1024, 768), (768, 1024), (1024, 1024)][rng.integers(3)]
    equiv = float(rng.uniform(24, 85))
    sc = Scene(seed=seed, identity=sub.identity, equiv_mm=equiv)
    images = []
    yaws = spread_yaws(rng, n_views)
    if yaw is not None:
        yaws = [float(yaw)] * n_views
    for k, yaw in enumerate(yaws):
        for _ in range(100):  # a distance in 0.5-2 m that frames the face like a real photo
            d = float(rng.uniform(0.5, 2.0))
            R, t, f = rg.camera_for(rng, size, equiv, d, yaw, rng.uniform(-15, 15), rng.uniform(-8, 8))
            if IOD_RANGE_PX[0] < rg.eye_distance_px(model, R, t, f, size) < IOD_RANGE_PX[1]:
                break
        gaze = sample_gaze(rng)
        e = sample_expression(rng, model)
        e += eye_look_weights(model.expression_names, *gaze)
        shot = rg.Shot(e, R, t, f, size, rg.random_light(rng), seed=seed * 101 + k)
        img = rg.render(model, sub, shot)
        faces = detector.detect_all(img) if detector is not None else []
        best = max(faces, key=lambda d: d.area) if faces else None
        sc.photos.append(Photo(expression=e, gaze=gaze, R=R, t=t, focal=f, size=size,
                               points=None if best is None else best.points,
                               blendshapes=None if best is None else best.blendshapes, n_faces=len(faces)))
        if keep_images:
            images.append(img)
    return sc, images


def _key(seed: int, n_views: int, identity_scale: float) -> str:
    raw = json.dumps([RENDER_VERSION, seed, n_views, identity_scale])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def scenes(model: FaceModel, seeds, n_views: int, identity_scale: float = 1.0, progress=None) -> list[Scene]:
    """Cached make_scene for each seed (rendered and detected once, then read back)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out, det = [], None
    try:
        for i, s in enumerate(seeds):
            path = CACHE / f"{_key(s, n_views, identity_scale)}.pkl"
            if path.is_file():
                out.append(pickle.loads(path.read_bytes()))
                continue
            if det is None:
                from backend.landmarks.mediapipe_detector import MediaPipeDetector

                det = MediaPipeDetector()
            sc, _ = make_scene(model, s, n_views, det, identity_scale)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(sc))
            tmp.replace(path)
            out.append(sc)
            if progress is not None:
                progress(i + 1, len(seeds))
    finally:
        if det is not None:
            det.close()
    return out
