"""What a batch is made of: the SPEC (a folder of subjects, or a CSV / JSON manifest) -> a list of items.

Standard library only (the driver of a batch never needs torch). A problem with the manifest itself
(unknown column, bad option value, two items with one name) stops the batch before any work with one
line naming the manifest and the row; a problem with an item's *inputs* (missing photo, empty folder)
is that item's error at run time and does not stop the others.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# Same extensions as backend/images.py (which needs numpy and PIL; the spec reader must stay light).
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm"}

# Files the batch writes into DIR next to the bundles; no subject may take their names.
REPORT_JSON = "batch_report.json"
REPORT_CSV = "batch_report.csv"


def _choice(*allowed):
    def parse(v):
        v = str(v).strip().lower()
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return v
    return parse


def _int(lo, hi=None):
    def parse(v):
        try:
            n = int(str(v).strip()) if not isinstance(v, bool) else None
        except ValueError:
            n = None
        if n is None or n < lo or (hi is not None and n > hi):
            raise ValueError(f"must be a whole number from {lo}" + (f" to {hi}" if hi is not None else " up"))
        return n
    return parse


def _float(lo):
    def parse(v):
        try:
            x = float(str(v).strip()) if not isinstance(v, bool) else float("nan")
        except ValueError:
            x = float("nan")
        if not x >= lo or x == float("inf"):
            raise ValueError(f"must be a number >= {lo:g}")
        return x
    return parse


def _bool(v):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in {"1", "true", "yes", "y", "on"}:
        return True
    if s in {"0", "false", "no", "n", "off"}:
        return False
    raise ValueError("must be true or false")


# Per-item options: the keyword arguments of pipeline.reconstruct a manifest may set (CLI flags give the
# defaults). landmarks_file is a path, resolved like the inputs.
OPTIONS = {
    "landmarks": _choice("mediapipe", "fan"),
    "landmarks_file": str,
    "device": _choice("auto", "cpu", "cuda"),
    "texture": _bool,
    "texture_size": _int(64, 16384),
    "face_index": _int(0),
    "frame_step": _int(1),
    "max_frames": _int(1),
    "smoothing": _float(0.0),
}
# Options that change speed, not the result: left out of the resume fingerprint.
NOT_IN_FINGERPRINT = {"device"}


@dataclass
class Item:
    subject: str  # the bundle's folder name under DIR and the Blender collection name
    inputs: list[str]  # absolute paths: photos, folders of photos, or one video
    options: dict = field(default_factory=dict)  # reconstruct() keywords, defaults already merged in
    where: str = ""  # where the spec defines it, for messages
    problem: str | None = None  # known before running (e.g. a folder with several videos): reported as its error


def check_options(raw: dict, where: str) -> dict:
    """Validated reconstruct() options; an unknown name or a bad value is an InputError naming `where`."""
    out = {}
    for key, value in raw.items():
        name = key.strip().lower().replace("-", "_")
        if name not in OPTIONS:
            raise InputError(f"unknown option {key!r} (known: subject, inputs, {', '.join(OPTIONS)})", where)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty CSV cell: the default
        try:
            out[name] = OPTIONS[name](value)
        except ValueError as e:
            raise InputError(f"{name}: {value!r} {e}", where) from None
    return out


_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


def check_subject(name, where: str) -> str:
    name = "" if name is None else str(name).strip()
    if not name:
        raise InputError("item has no subject name", where)
    # a leading dot would put the bundle among the writer's hidden siblings (.NAME.tmp-*, .NAME.old-*)
    if _BAD_NAME.search(name) or name.startswith(".") or len(name) > 200:
        raise InputError(f"subject {name!r} cannot be a folder name (no '/', '\\', control characters or "
                         "leading '.', at most 200 characters)", where)
    return name


def load_spec(spec, defaults: dict | None = None) -> list[Item]:
    """Items of a batch. SPEC: a folder of subjects, or a .csv / .json manifest (see README "Batch")."""
    spec = Path(spec).expanduser().resolve()
    defaults = check_options(defaults or {}, "command line")
    if spec.is_dir():
        items = _from_folder(spec, defaults)
    elif not spec.exists():
        raise InputError("no such file or folder", spec)
    elif spec.suffix.lower() == ".csv":
        items = _from_csv(spec, defaults)
    elif spec.suffix.lower() == ".json":
        items = _from_json(spec, defaults)
    else:
        raise InputError("a batch spec is a folder of subjects, a .csv or a .json manifest", spec)
    if not items:
        raise InputError("lists no items", spec)
    seen = {}
    for it in items:
        key = it.subject.casefold()  # case-insensitive file systems would merge two such folders
        if key in seen or key in {REPORT_JSON, REPORT_CSV}:
            other = seen.get(key, "the batch report")
            raise InputError(f"subject {it.subject!r} is used twice ({other} and {it.where}); each item needs its "
                             "own output folder", spec)
        seen[key] = it.where
    return items


def _media_kind(p: Path) -> str | None:
    s = p.suffix.lower()
    return "image" if s in IMAGE_EXTENSIONS else "video" if s in VIDEO_EXTENSIONS else None


def _from_folder(spec: Path, defaults: dict) -> list[Item]:
    """Each sub-folder is a subject (its photos, or its one video); each photo or video lying directly in
    SPEC is a subject of its own (a folder of performance clips). Hidden entries and other files are ignored."""
    items = []
    for p in sorted(spec.iterdir(), key=lambda q: q.name.lower()):
        if p.name.startswith("."):
            continue
        where = str(p)
        if p.is_dir():
            files = [q for q in p.iterdir() if not q.name.startswith(".") and q.is_file()]
            images = [q for q in files if _media_kind(q) == "image"]
            videos = sorted(q for q in files if _media_kind(q) == "video")
            problem = None
            if not images and len(videos) == 1:
                inputs = [str(videos[0])]
            else:
                inputs = [str(p)]
                if not images and len(videos) > 1:
                    problem = (f"{p}: holds {len(videos)} videos and no photos; give each clip its own subject "
                               "folder (or put the clips directly in the spec folder)")
            items.append(Item(check_subject(p.name, where), inputs, dict(defaults), where, problem))
        elif _media_kind(p):
            items.append(Item(check_subject(p.stem, where), [str(p)], dict(defaults), where))
    return items


def _resolve(base: Path, raw: str) -> str:
    p = Path(raw.strip()).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _make_item(row: dict, base: Path, defaults: dict, where: str) -> Item:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    subject = check_subject(row.pop("subject", None), where)
    raw_inputs = row.pop("inputs", None)
    if isinstance(raw_inputs, str):
        raw_inputs = [s for s in raw_inputs.split(";") if s.strip()]
    elif raw_inputs is None:
        raw_inputs = []
    elif not isinstance(raw_inputs, list) or not all(isinstance(s, str) for s in raw_inputs):
        raise InputError("inputs must be a path or a list of paths", where)
    options = {**defaults, **check_options(row, where)}
    if "landmarks_file" in options:
        options["landmarks_file"] = _resolve(base, options["landmarks_file"])
    if not raw_inputs and "landmarks_file" not in options:
        raise InputError(f"item {subject!r} has no inputs (photos, a folder or a video; or a landmarks_file)", where)
    return Item(subject, [_resolve(base, s) for s in raw_inputs], options, where)


def _from_csv(spec: Path, defaults: dict) -> list[Item]:
    """Header row, then one item per row: subject, inputs (paths separated by ';', relative to the CSV's
    folder), and any option columns (empty cell = the command line's default)."""
    try:
        with spec.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip().lower() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the CSV manifest ({e})", spec) from None
    if "subject" not in header:
        raise InputError("CSV manifest needs a header row with a 'subject' column (and 'inputs')", spec)
    items = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        if None in row:
            raise InputError("more cells than header columns (quote paths that contain commas)", f"{spec}:{i}")
        if not any((v or "").strip() for v in row.values()):
            continue
        items.append(_make_item(row, spec.parent, defaults, f"{spec}:{i}"))
    return items


def _from_json(spec: Path, defaults: dict) -> list[Item]:
    """Either a list of items or {"defaults": {...options}, "items": [...]}; an item is {"subject": ...,
    "inputs": path or [paths], ...options}."""
    try:
        doc = json.loads(spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"cannot read the JSON manifest ({e})", spec) from None
    if isinstance(doc, dict):
        unknown = set(doc) - {"defaults", "items"}
        if unknown:
            raise InputError(f"unknown top-level key(s) {sorted(unknown)} (expected 'defaults' and 'items')", spec)
        if not isinstance(doc.get("defaults", {}), dict):
            raise InputError("'defaults' must be an object of options", spec)
        defaults = {**defaults, **check_options(doc.get("defaults", {}), f"{spec}: defaults")}
        doc = doc.get("items")
    if not isinstance(doc, list):
        raise InputError("a JSON manifest is a list of items or {\"items\": [...]}", spec)
    items = []
    for i, row in enumerate(doc):
        where = f"{spec}: item #{i}"
        if not isinstance(row, dict):
            raise InputError("an item must be an object with 'subject' and 'inputs'", where)
        items.append(_make_item(row, spec.parent, defaults, where))
    return items
