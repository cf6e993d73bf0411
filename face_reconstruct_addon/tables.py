"""Expression-name tables of the rig (pure Python). The 52 ARKit names are the backend's own
(backend/contract.py, loaded by path: Blender's Python cannot import the backend package)."""
from __future__ import annotations

import re

from .shared import contract

ARKIT_52 = list(contract.ARKIT_52)


def control_map(shape_names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Armature properties to create and, for each shape key, the properties that drive it.

    One property per shape key (same name), plus each standard ARKit name that is not itself a
    shape key: ICT splits browInnerUp and cheekPuff into Left/Right halves, so the combined ARKit
    property drives both halves (summed with the half's own property). tongueOut has no shape in
    ICT; its property exists so ARKit-driven tools find all 52 names, and drives nothing.
    """
    props = list(shape_names)
    extras = [a for a in ARKIT_52 if a not in shape_names]
    props += extras
    drivers = {}
    for n in shape_names:
        base = re.sub(r"(Left|Right)$", "", n)
        drivers[n] = [n] + ([base] if base != n and base in extras else [])
    return props, drivers


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
