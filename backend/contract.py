"""What the backend and the Blender add-on must agree on, defined once.

Standard library only: Blender's Python has no numpy or torch and cannot import the backend package, so
the add-on loads this file by path (face_reconstruct_addon/shared.py: from the checkout it sits in, or the
copy `python build.py package` puts into the extension zip). The backend imports it as `backend.contract`.

- the JSON-lines protocol of `python -m backend serve` (backend/server.py): its version, which the server
  announces in `ready` and the client compares with its own, and the capabilities a backend folder offers;
- the environment a backend interpreter is started with (PYTHONPATH);
- the result bundle's result.json: its schema marker and version, and a validator for its JSON Schema
  (result.schema.json next to this file; docs/result-bundle.md describes it);
- the 52 ARKit expression names, the eye rotation of the eyeLook* shapes, and which file extensions are
  photos and which are videos.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

# -- process protocol ------------------------------------------------------------------------------

# Version of the JSON-lines protocol (backend/server.py's docstring). Raise it whenever a message changes
# in a way an older client or server would misread; the client refuses a server that announces another.
PROTOCOL = 1
# What this backend folder offers a client that starts it; "serve": `python -m backend serve` (backends
# from before this module only had `python -m backend.server`).
CAPABILITIES = frozenset({"serve"})
# Variables an embedding application (Blender) sets for its own interpreter; a backend interpreter that
# inherited them would load the wrong standard library or the wrong packages.
FOREIGN_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE")


def backend_env(root, base: dict | None = None) -> dict:
    """Environment for a backend interpreter whose `backend/` package lies in `root`: `base` (default
    os.environ) without another interpreter's Python variables, with PYTHONPATH = root so `-m backend`
    finds the package whatever the working folder, and unbuffered output so events arrive as written."""
    env = dict(os.environ if base is None else base)
    for k in FOREIGN_PYTHON_VARS:
        env.pop(k, None)
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- result bundle ---------------------------------------------------------------------------------

SCHEMA = "faceforge.result"  # result.json's "schema": what makes a folder a FaceForge bundle
SCHEMA_VERSION = 1  # raise on any change an older reader would misread; adding optional fields is not one
SCHEMA_FILE = Path(__file__).with_name("result.schema.json")

# -- names and units both sides use ------------------------------------------------------------------

# The 52 ARKit blendshape names. ICT splits browInnerUp and cheekPuff into Left/Right halves and has no
# tongueOut; backend/face_model.py maps between the two.
ARKIT_52 = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

# Eye rotation at weight 1 of the eyeLook* shapes (ARKit gives no figure). ICT's eyeLook shapes carry the lids
# along with the gaze; their lid travel matches a cornea turned this far (eyeLookDown drops the upper lid 6.7 mm,
# eyeLookIn/Out shift the lids 2 mm), and MediaPipe's own eyeLook scores on rendered gazes agree (bench/real.py).
# The fit reads gaze through these (backend/face_model.py), result.json's views[].gaze reports it, and the
# add-on's eye bones should turn by the same angles.
EYE_LOOK_RANGE_DEG = {"horizontal": 30.0, "up": 25.0, "down": 30.0}

# Photos the backend reads (backend/images.py decides from the content; these pick files out of folders
# and file dialogs). HEIC/HEIF needs pillow-heif, part of the runtime requirements.
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}) | HEIF_EXTENSIONS
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})


def file_filter(extensions) -> str:
    """'*.bmp;*.heic;...' for a file dialog's filter (Blender's filter_glob)."""
    return ";".join(f"*{e}" for e in sorted(extensions))


# -- result.json validation --------------------------------------------------------------------------

class ResultSchemaError(ValueError):
    """result.json breaks result.schema.json; str() is one line: the file, then the first problems."""


_SCHEMA_CACHE: dict = {}


def load_schema() -> dict:
    if "doc" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["doc"] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return _SCHEMA_CACHE["doc"]


def schema_problems(doc, strict: bool = True, limit: int = 20) -> list[str]:
    """Where `doc` breaks result.schema.json, one 'path: what' string each (at most `limit`).

    A JSON Schema validator for the keywords the schema uses (type, const, enum, properties, required,
    additionalProperties, min/maxProperties, items, min/maxItems, minimum, maximum, exclusiveMinimum,
    minLength, pattern, anyOf, $ref into $defs), in the standard library: the jsonschema package is not
    in Blender's Python, and the add-on installs nothing into it (tests/test_contract.py checks that this
    and jsonschema agree). strict=False (the add-on reading) lets objects carry fields the schema does not
    name, so a newer backend's additions under the same schema_version import, and does not require the
    fields an object lists under x-optional-for-readers (bundles written before they were added lack them);
    the writer is strict.
    """
    root = load_schema()
    out: list[str] = []
    _check(doc, root, root, "result.json", strict, out, limit)
    return out


def check_result(doc, where, strict: bool = True) -> None:
    """Raise ResultSchemaError naming `where` (a path) when `doc` is not a result.json this side can read:
    another program's file, a newer schema_version (update the reader), or a break of the schema."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        marker = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ResultSchemaError(f"{where}: not a FaceForge result (schema {marker!r})")
    version = doc.get("schema_version")
    if _TYPES["integer"](version) and version > SCHEMA_VERSION:
        raise ResultSchemaError(f"{where}: schema version {version} is newer than this reader (reads "
                                f"{SCHEMA_VERSION}); update FaceForge")
    problems = schema_problems(doc, strict, limit=4)
    if problems:
        more = "" if len(problems) < 4 else "; ..."
        raise ResultSchemaError(f"{where}: does not match result.schema.json: " + "; ".join(problems[:3]) + more)


# what _check implements, plus annotations it need not act on ($schema, $id, title, description, $defs);
# tests/test_contract.py fails when the schema uses anything else, which would otherwise go unchecked
SCHEMA_KEYWORDS = frozenset({
    "$schema", "$id", "title", "description", "$defs", "$ref", "type", "const", "enum", "properties", "required",
    "x-optional-for-readers", "additionalProperties", "minProperties", "maxProperties", "items", "minItems",
    "maxItems", "minimum", "maximum", "exclusiveMinimum", "minLength", "pattern", "anyOf"})

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and math.isfinite(v) and v.is_integer()),
}


def _short(v) -> str:
    text = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(v, s: dict, root: dict, path: str, strict: bool, out: list, limit: int) -> None:
    if len(out) >= limit:
        return

    def bad(msg):
        if len(out) < limit:
            out.append(f"{path}: {msg}")

    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"result.schema.json: unsupported $ref {ref!r}")
        _check(v, root["$defs"][ref[len("#/$defs/"):]], root, path, strict, out, limit)
    if "anyOf" in s:
        tries = []
        for sub in s["anyOf"]:
            errs: list[str] = []
            _check(v, sub, root, path, strict, errs, limit)
            if not errs:
                break
            tries.append(errs)
        else:  # each alternative's first problem: which one was meant is for the reader to see
            firsts = [e[0][len(path) + 2:] if e[0].startswith(f"{path}: ") else e[0] for e in tries]
            bad("matches no alternative (" + "; or ".join(firsts) + ")")
    if "const" in s and not _same(v, s["const"]):
        bad(f"must be {_short(s['const'])}, not {_short(v)}")
    if "enum" in s and not any(_same(v, e) for e in s["enum"]):
        bad(f"must be one of {', '.join(_short(e) for e in s['enum'])}, not {_short(v)}")
    if "type" in s:
        types = [s["type"]] if isinstance(s["type"], str) else s["type"]
        if not any(_TYPES[t](v) for t in types):
            bad(f"must be {' or '.join(types)}, not {_short(v)}")
            return
    if isinstance(v, dict):
        _check_object(v, s, root, path, strict, out, limit, bad)
    elif isinstance(v, list):
        if "minItems" in s and len(v) < s["minItems"]:
            bad(f"must have at least {s['minItems']} items, has {len(v)}")
        if "maxItems" in s and len(v) > s["maxItems"]:
            bad(f"must have at most {s['maxItems']} items, has {len(v)}")
        if "items" in s:
            for i, item in enumerate(v):
                _check(item, s["items"], root, f"{path}[{i}]", strict, out, limit)
    elif isinstance(v, str):
        if "minLength" in s and len(v) < s["minLength"]:
            bad(f"must be at least {s['minLength']} characters, is {_short(v)}")
        if "pattern" in s and not re.search(s["pattern"], v):
            bad(f"{_short(v)} does not match {s['pattern']}")
    elif _TYPES["number"](v):
        if "minimum" in s and v < s["minimum"]:
            bad(f"must be >= {s['minimum']}, is {_short(v)}")
        if "maximum" in s and v > s["maximum"]:
            bad(f"must be <= {s['maximum']}, is {_short(v)}")
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            bad(f"must be > {s['exclusiveMinimum']}, is {_short(v)}")


def _check_object(v: dict, s, root, path, strict, out, limit, bad) -> None:
    optional = () if strict else s.get("x-optional-for-readers", ())
    for k in s.get("required", ()):
        if k not in v and k not in optional:
            bad(f"missing field {k!r}")
    if "minProperties" in s and len(v) < s["minProperties"]:
        bad(f"must have at least {s['minProperties']} fields, has {len(v)}")
    if "maxProperties" in s and len(v) > s["maxProperties"]:
        bad(f"must have at most {s['maxProperties']} fields, has {len(v)}")
    props = s.get("properties", {})
    extra = s.get("additionalProperties", True)
    for k, item in v.items():
        sub = f"{path}.{k}"
        if k in props:
            _check(item, props[k], root, sub, strict, out, limit)
        elif extra is False:
            if strict:
                if len(out) < limit:
                    out.append(f"{sub}: not a field of result.schema.json (add it there and to docs/result-bundle.md)")
        elif isinstance(extra, dict):
            _check(item, extra, root, sub, strict, out, limit)


def _same(a, b) -> bool:
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
