"""The 52 ARKit blendshape names (the one table the add-on uses) and the conversions from the model's own 53.

The names and the eye angles are the backend's own (backend/contract.py, loaded by path through shared.py:
Blender's Python cannot import the backend package). ICT-FaceKit splits browInnerUp and cheekPuff into Left/Right
halves and has no tongueOut: the imported head carries the 52 ARKit names exactly, the two whole shapes built from
the halves (rig_geometry.arkit_deltas), tongueOut made for the tongue object. tests/test_addon_io.py compares the
list with Apple's.
"""
from __future__ import annotations

import re

import numpy as np

from ..shared import contract

ARKIT_52 = list(contract.ARKIT_52)


# ARKit names ICT splits into halves: the whole shape is the sum of the halves' deltas, its weight the mean of
# the halves' weights (so a symmetric pose is reproduced exactly; backend.face_model.shape_names_to_arkit).
SPLIT = ("browInnerUp", "cheekPuff")
# Eye rotation at eyeLook* weight 1, degrees (docs/result-bundle.md): the eye bones turn as the fit reads gaze.
EYE_LOOK_RANGE_DEG = dict(contract.EYE_LOOK_RANGE_DEG)


def arkit_matrix(names: list[str]) -> np.ndarray:
    """(52, len(names)) matrix W with arkit_weights = W @ model_weights: identity for shared names, 0.5 per half
    for the split shapes, a zero row for tongueOut."""
    W = np.zeros((len(ARKIT_52), len(names)))
    index = {n: i for i, n in enumerate(names)}
    for r, a in enumerate(ARKIT_52):
        if a in index:
            W[r, index[a]] = 1.0
        elif a in SPLIT:
            for side in ("Left", "Right"):
                if a + side in index:
                    W[r, index[a + side]] = 0.5
    return W


def to_arkit(names: list[str], weights) -> np.ndarray:
    """Model weights (..., len(names)) -> the 52 ARKit weights (..., 52)."""
    return np.asarray(weights, np.float64) @ arkit_matrix(names).T


def eye_look_weights(yaw_deg: float, pitch_deg: float) -> dict[str, float]:
    """eyeLook* weights of one eye's gaze (yaw > 0 towards the subject's left, pitch > 0 up) as
    {"Out"|"In"|"Up"|"Down": weight} for the LEFT eye; the right eye's In/Out swap (see gaze_controls)."""
    h, up, down = (EYE_LOOK_RANGE_DEG[k] for k in ("horizontal", "up", "down"))
    clip = lambda x: min(max(x, 0.0), 1.0)  # noqa: E731
    return {"Out": clip(yaw_deg / h), "In": clip(-yaw_deg / h), "Up": clip(pitch_deg / up),
            "Down": clip(-pitch_deg / down)}


def gaze_controls(left: tuple[float, float], right: tuple[float, float]) -> dict[str, float]:
    """The eight eyeLook* ARKit weights that turn the eyes by `left` / `right` = (yaw, pitch) degrees
    (backend.face_model.eye_look_weights, the inverse of gaze_angles)."""
    out = {}
    for side, (yaw, pitch) in (("Left", left), ("Right", right)):
        w = eye_look_weights(yaw if side == "Left" else -yaw, pitch)
        out.update({f"eyeLook{k}{side}": v for k, v in w.items()})
    return out


def match_key(name: str) -> str:
    """Name-matching key for expression names from other tools: case and separators are ignored
    ('jawOpen', 'JawOpen', 'jaw_open', 'Jaw Open' all give 'jawopen'), and a side letter after a
    separator ('eyeBlink_L', 'eyeBlink.R', ICT's own style) means Left/Right."""
    m = re.match(r"^(.*?)[\s_.\-]+([LlRr])$", name)
    if m:
        name = m.group(1) + ("left" if m.group(2) in "Ll" else "right")
    return re.sub(r"[^0-9a-z]", "", name.lower())


def name_candidates(name: str) -> list[str]:
    """Keys to try for a target name: the whole name, then without a namespace prefix
    ('blendShape1.jawOpen', 'ARKit:jawOpen', as Maya/FBX exports write them)."""
    keys = [match_key(name)]
    for sep in (":", "."):
        if sep in name:
            tail = name.rsplit(sep, 1)[1]
            if len(tail) > 1:  # 'eyeBlink.L' is a side suffix, not a namespace
                keys.append(match_key(tail))
    return list(dict.fromkeys(keys))
