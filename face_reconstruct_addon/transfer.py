"""Expression transfer: weights from a FaceForge head (one view, or its animation) or a Live Link Face
CSV onto another FaceForge head (its rig controls) or any mesh with ARKit-named shape keys.

Name matching (io.arkit.match_key / name_candidates): case, spaces, '_' and '-' are ignored, so
'jawOpen', 'JawOpen', 'jaw_open' and 'Jaw Open' are one name; 'eyeBlink_L' / 'eyeBlink.R' mean
...Left / ...Right; a namespace prefix ('blendShape1.jawOpen', 'ARKit:jawOpen') is dropped when the
whole name does not match. ARKit's combined browInnerUp / cheekPuff and ICT's Left/Right halves
stand in for each other: a half takes the combined value, a combined shape the mean of the halves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import animation, compat, livelink_csv
from .io.arkit import name_candidates
from .scene.cameras import view_cameras
from .scene.rig import find_rig

ACTION_MODE, VIEW_MODE = "ACTION", "VIEW"


class TransferError(Exception):
    """One line for the user."""


@dataclass
class Source:
    """Weights per frame under the source's names (`values[name]` has len(frames) entries) and, from
    an animated FaceForge head, the head bone's motion per frame (armature space)."""
    label: str
    frames: list[float]
    values: dict[str, np.ndarray]
    motion: list | None = None
    keyed: bool = True  # False: one static pose (a view), applied without keys
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for n in self.values:
            self._index.setdefault(name_candidates(n)[0], n)

    def lookup(self, target_name: str):
        """(source name or description, values) for a target name, or None."""
        for key in name_candidates(target_name):
            if key in self._index:
                n = self._index[key]
                return n, self.values[n]
            side = re.match(r"^(.*)(left|right)$", key)
            if side and side.group(1) in self._index:  # a half from the combined shape
                n = self._index[side.group(1)]
                return n, self.values[n]
            halves = [self._index.get(key + s) for s in ("left", "right")]
            if all(halves):  # a combined shape from the halves
                return f"mean({halves[0]}, {halves[1]})", (self.values[halves[0]] + self.values[halves[1]]) / 2
        return None


# -- sources --------------------------------------------------------------------------------------
def source_from_head(obj, mode: str = ACTION_MODE, view_index: int = 0, scene=None) -> Source:
    scene = scene or bpy.context.scene
    rig = find_rig(obj)
    if rig is None:
        raise TransferError(f"{obj.name}: not part of a FaceForge import")
    controls = animation.rig_controls(rig)
    if mode == VIEW_MODE:
        cams = view_cameras(rig)
        cam = obj if obj in cams else (cams[view_index] if 0 <= view_index < len(cams) else None)
        if cam is None:
            raise TransferError(f"{rig.name}: has no view {view_index} (it has {len(cams)})")
        expr = cam.get("faceforge_expression") or {}
        vals = {p: np.array([float(expr.get(p, 0.0))]) for p in controls}
        return Source(f"{cam.name}", [float(scene.frame_current)], animation.effective_weights(controls, vals),
                      keyed=False)
    frames = animation.rig_key_frames(rig)
    if not frames:
        raise TransferError(f"{rig.name}: has no expression animation (import a video result, or transfer a view)")
    vals = animation.rig_controls_at(rig, frames)
    return Source(f"{rig.name} animation", frames, animation.effective_weights(controls, vals),
                  motion=animation.head_motion_at(rig, frames))


def source_from_csv(path, scene=None, frame_start: int | None = None) -> Source:
    """A Live Link Face take, one key per row at scene frame frame_start + round(time * scene fps)."""
    scene = scene or bpy.context.scene
    fps = animation.scene_fps(scene)
    try:
        take = livelink_csv.read(path, rate_hint=fps)
    except livelink_csv.CSVFormatError as e:
        raise TransferError(str(e)) from e
    start = scene.frame_start if frame_start is None else frame_start
    frames = [start + round(t * fps) for t in take.times_s]
    # Rows closer together than a scene frame land on one frame: the last one wins.
    last = {}
    for i, f in enumerate(frames):
        last[f] = i
    keep = sorted(last.values())
    values = {n: np.array(v, np.float64)[keep] for n, v in take.shapes.items()}
    return Source(Path(path).name, [float(frames[i]) for i in keep], values)


# -- targets --------------------------------------------------------------------------------------
def _shape_key_names(obj) -> list[str]:
    keys = obj.data.shape_keys.key_blocks if obj.type == "MESH" and obj.data.shape_keys else []
    ref = obj.data.shape_keys.reference_key.name if keys else None
    return [k.name for k in keys if k.name != ref]


def transfer(source: Source, target, scene=None, include_head: bool = True) -> dict:
    """Apply `source` to `target` (any object of a FaceForge import -> its rig; else a mesh with shape
    keys). Returns {"target", "matched": {target name: source name}, "unmatched": [target names],
    "unused": [source names], "frames": n, "action"}."""
    scene = scene or bpy.context.scene
    rig = find_rig(target)
    if rig is not None:
        return _to_rig(source, rig, scene, include_head)
    if target.type != "MESH" or not _shape_key_names(target):
        raise TransferError(f"{target.name}: neither a FaceForge head nor a mesh with shape keys")
    return _to_mesh(source, target, scene)


def _match(source: Source, names: list[str]) -> tuple[dict, dict, list, list]:
    matched, values, unmatched = {}, {}, []
    for n in names:
        hit = source.lookup(n)
        if hit is None:
            unmatched.append(n)
        else:
            matched[n], values[n] = hit
    used = {m for m in matched.values()}
    used |= {h for m in used if m.startswith("mean(") for h in m[5:-1].split(", ")}
    return matched, values, unmatched, sorted(n for n in source.values if n not in used)


def _to_mesh(source: Source, obj, scene) -> dict:
    names = _shape_key_names(obj)
    matched, values, unmatched, unused = _match(source, names)
    if not matched:
        raise TransferError(f"{obj.name}: no shape key matches an ARKit / FaceForge expression name")
    key = obj.data.shape_keys
    action = None
    if source.keyed:
        _keep(key)
        action = bpy.data.actions.new(f"{obj.name} <- {source.label}")
        slot = compat.assign_action(key, action)
        for n, v in values.items():
            fc = compat.new_fcurve(action, slot, f'key_blocks["{bpy.utils.escape_identifier(n)}"].value', 0,
                                   "Shape keys")
            compat.set_keys(fc, source.frames, np.clip(v, 0.0, 1.0))
        _extend_range(scene, source.frames)
    else:
        for n, v in values.items():
            key.key_blocks[n].value = float(np.clip(v[0], 0.0, 1.0))
    return {"target": obj, "matched": matched, "unmatched": unmatched, "unused": unused,
            "frames": len(source.frames), "action": action}


def _to_rig(source: Source, rig, scene, include_head: bool) -> dict:
    controls = animation.rig_controls(rig)
    matched, values, unmatched, unused = _match(source, controls)
    if not matched:
        raise TransferError(f"{rig.name}: no expression name of the source matches")
    action = None
    if source.keyed:
        old = compat.id_fcurves(rig)
        _keep(rig)
        action = bpy.data.actions.new(f"{rig.name} <- {source.label}")
        slot = compat.assign_action(rig, action)
        if old:
            # Keep the target's own non-expression channels (its head motion) unless replaced below.
            for fc in old:
                if fc.data_path.startswith('["'):
                    continue
                nfc = compat.new_fcurve(action, slot, fc.data_path, fc.array_index,
                                        fc.group.name if fc.group else "")
                co = [0.0] * (2 * len(fc.keyframe_points))
                fc.keyframe_points.foreach_get("co", co)
                compat.set_keys(nfc, co[0::2], co[1::2])
        for c in controls:
            v = values.get(c)
            if v is None:
                continue
            fc = compat.new_fcurve(action, slot, f'["{c}"]', 0, animation.ACTION_GROUP_EXPR)
            compat.set_keys(fc, source.frames, np.clip(v, 0.0, 1.0))
        if include_head and source.motion is not None:
            animation.key_head_motion(rig, action, slot, source.frames, source.motion)
        _extend_range(scene, source.frames)
    else:
        for c in controls:
            if c in values:
                rig[c] = float(np.clip(values[c][0], 0.0, 1.0))
        rig.update_tag()
    return {"target": rig, "matched": matched, "unmatched": unmatched, "unused": unused,
            "frames": len(source.frames), "action": action}


def _keep(id_data) -> None:
    # The action being replaced (e.g. the tracked video) would have no users and vanish on save.
    ad = id_data.animation_data
    if ad is not None and ad.action is not None:
        ad.action.use_fake_user = True


def _extend_range(scene, frames) -> None:
    if frames:
        scene.frame_start = min(scene.frame_start, int(np.floor(frames[0])))
        scene.frame_end = max(scene.frame_end, int(np.ceil(frames[-1])))


def summary(result: dict) -> str:
    m, u = result["matched"], result["unmatched"]
    text = f"{result['target'].name}: {len(m)} matched"
    if u:
        text += f", {len(u)} unmatched ({', '.join(u[:8])}{', ...' if len(u) > 8 else ''})"
    return text + f"; {result['frames']} frame(s)"
