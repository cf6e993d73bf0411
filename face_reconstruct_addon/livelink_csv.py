"""Read and write Epic's Live Link Face CSV take files. Standard library only (no bpy, no numpy), so
run.py, the tests and tools outside Blender can use it (load it by file path to skip the package's
bpy-importing __init__).

Format, as no official specification exists, pieced together from:
- the 61 value columns are Unreal's `EARFaceBlendShape` enum (52 ARKit shapes in PascalCase, then
  HeadYaw/HeadPitch/HeadRoll and Left/RightEye Yaw/Pitch/Roll): Unreal API reference,
  https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Runtime/AugmentedReality/EARFaceBlendShape
- the CSV's own column order differs from that enum in two places (JawRight before JawLeft,
  MouthRight before MouthLeft); every open importer we found copies the same header from real takes,
  e.g. the Blender LiveLinkFace add-on's LIVE_LINK_FACE_HEADER and a test asserting a real capture's
  header byte for byte (found with the code search corpus; header spelled "BlendShapeCount" by most,
  "BlendshapeCount" by that capture, so the reader ignores case).
- `Timecode` is `HH:MM:SS:FF.sss`: FF counts frames within the second at the app's rate (60 by
  default, 30 selectable) and `.sss` is the sub-frame fraction; times are wall-clock of the phone,
  so readers make them relative to the first row.
The app writes values as plain decimals; head and eye angles are not documented. We write ours in
radians (see animation.py for the axes) and read them back unchanged.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

# CSV order of the 52 shapes, PascalCase as the app writes them.
SHAPES = [
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
]
ANGLES = ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
          "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
HEADER = ["Timecode", "BlendShapeCount"] + SHAPES + ANGLES
STANDARD_RATES = (24, 25, 30, 48, 50, 60, 100, 120)
DEFAULT_RATE = 60.0  # the app's default capture rate


class CSVFormatError(ValueError):
    """A file that is not a Live Link Face CSV; str() names the file and the problem."""


@dataclass
class Take:
    """One take: `times_s[i]` (seconds from the first row) and `values[name][i]` for every column read
    (shape and angle columns, names as in the file)."""
    times_s: list[float]
    values: dict[str, list[float]] = field(default_factory=dict)
    rate: float = DEFAULT_RATE  # the timecode's frame rate (FF per second)

    @property
    def shapes(self) -> dict[str, list[float]]:
        return {k: v for k, v in self.values.items() if k not in ANGLES}

    def __len__(self) -> int:
        return len(self.times_s)


def format_timecode(seconds: float, rate: float) -> str:
    """`HH:MM:SS:FF.sss` for a time in seconds at a nominal timecode rate (29.97 counts as 30)."""
    nominal = max(1, int(round(rate)))
    total_frames = seconds * nominal
    whole = int(math.floor(total_frames + 1e-6))
    sub = max(0.0, total_frames - whole)
    millis = int(round(sub * 1000))
    if millis >= 1000:
        whole, millis = whole + 1, 0
    s, ff = divmod(whole, nominal)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{millis:03d}"


def parse_timecode(text: str) -> tuple[int, float]:
    """(whole seconds, frames within the second incl. sub-frame) from `HH:MM:SS:FF[.sss]`."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.sss")
    h, m, s = (int(p) for p in parts[:3])
    return h * 3600 + m * 60 + s, float(parts[3])


def _guess_rate(stamps: list[tuple[int, float]], hint: float | None) -> float:
    # FF resets every second, so once a take crosses a second boundary the largest FF seen tells the
    # rate; shorter takes fall back to the caller's hint (the scene rate) or the app default.
    if len({s for s, _ in stamps}) > 1:
        top = max(int(f) for _, f in stamps)
        for r in STANDARD_RATES:
            if top < r:
                return float(r)
        return float(top + 1)
    return float(hint or DEFAULT_RATE)


def read(path, rate_hint: float | None = None) -> Take:
    """Read a take. Columns are found by name (case-insensitive), so older app versions without the
    angle columns and files with extra columns read fine; unparsable numbers are an error."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise CSVFormatError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CSVFormatError(f"{path}: not a text CSV file") from e
    if not rows:
        raise CSVFormatError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    lower = {h.lower(): i for i, h in enumerate(header)}
    if "timecode" not in lower:
        raise CSVFormatError(f"{path}: no Timecode column (not a Live Link Face CSV)")
    known = {n.lower(): n for n in SHAPES + ANGLES}
    cols = {known[h.lower()]: i for h, i in ((h, i) for i, h in enumerate(header)) if h.lower() in known}
    if not any(n in cols for n in SHAPES):
        raise CSVFormatError(f"{path}: no blend shape columns (EyeBlinkLeft, JawOpen, ...)")
    tc = lower["timecode"]
    stamps, values = [], {n: [] for n in cols}
    for lineno, row in enumerate(rows[1:], start=2):
        try:
            stamps.append(parse_timecode(row[tc]))
            for n, i in cols.items():
                values[n].append(float(row[i]) if i < len(row) and row[i].strip() else 0.0)
        except (ValueError, IndexError) as e:
            raise CSVFormatError(f"{path}: line {lineno}: {e}") from e
    if not stamps:
        raise CSVFormatError(f"{path}: header only, no frames")
    rate = _guess_rate(stamps, rate_hint)
    t = [s + f / rate for s, f in stamps]
    # Wall-clock timecodes may pass midnight; unwrap so times keep increasing.
    for i in range(1, len(t)):
        while t[i] < t[i - 1] - 43200:
            t[i] += 86400
    t0 = t[0]
    return Take(times_s=[x - t0 for x in t], values=values, rate=rate)


def write(path, times_s, shapes: dict[str, list[float]], angles: dict[str, list[float]] | None = None,
          rate: float = DEFAULT_RATE, decimals: int = 8) -> None:
    """Write a take. `shapes` keys may be in any case style ('jawOpen', 'JawOpen'); missing shapes and
    angles are written as 0 so every row has all 61 values like the app's files."""
    by_lower = {k.lower(): v for k, v in shapes.items()}
    ang_lower = {k.lower(): v for k, v in (angles or {}).items()}
    n = len(times_s)
    for k, v in list(by_lower.items()) + list(ang_lower.items()):
        if len(v) != n:
            raise ValueError(f"column {k}: {len(v)} values for {n} times")
    zeros = [0.0] * n
    shape_cols = [by_lower.get(s.lower(), zeros) for s in SHAPES]
    angle_cols = [ang_lower.get(a.lower(), zeros) for a in ANGLES]
    fmt = f"{{:.{decimals}f}}"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for i in range(n):
            w.writerow([format_timecode(times_s[i], rate), len(SHAPES) + len(ANGLES)]
                       + [fmt.format(float(c[i])) for c in shape_cols]
                       + [fmt.format(float(c[i])) for c in angle_cols])
