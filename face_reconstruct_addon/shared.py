"""The backend's standard-library modules, loaded by file path (no bpy here: run.py and the tests use it too).

Blender's Python cannot import the backend package (its __init__ chain wants numpy and torch), but the few
stdlib-only modules that define what both sides of the process boundary agree on are loaded from the backend's
own files rather than copied: backend/contract.py (protocol version, result.json schema and its validator,
ARKit names, file extensions, eye angles) and backend/output_dir.py (the output-folder lock and crash
recovery).

`contract` is the add-on's own copy: backend/contract.py of the checkout the add-on sits in, or, in an
installed extension, the copy tools/package_extension.py put into the zip (backend_contract/). It is what
this add-on was built against; the backend folder a user points it at may be another version, which is why
the client compares protocol versions (client.py) instead of reading the backend's.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
# where the zip carries backend/contract.py and backend/result.schema.json (tools/package_extension.py)
PACKAGED_CONTRACT_DIR = ADDON_DIR / "backend_contract"


def load_module(folder: str | Path, name: str):
    """`folder`/`name`.py as a module of a bare package standing for `folder` (so `from .contract import X`
    inside it finds its sibling file, and `folder`/__init__.py never runs); one module per file per process.
    None when there is no such file (a backend older than the add-on)."""
    folder = Path(folder).resolve()
    path = folder / f"{name}.py"
    pkg = f"faceforge_backend_{abs(hash(str(folder)))}"
    key = f"{pkg}.{name}"
    if key in sys.modules:
        return sys.modules[key]
    if not path.is_file():
        return None
    if pkg not in sys.modules:
        package = types.ModuleType(pkg)
        package.__path__ = [str(folder)]
        sys.modules[pkg] = package
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[key]
        raise
    return module


def _own_contract():
    for folder in (PACKAGED_CONTRACT_DIR, ADDON_DIR.parent / "backend"):
        if (folder / "contract.py").is_file():
            return load_module(folder, "contract")
    raise ImportError(f"{ADDON_DIR}: neither backend_contract/contract.py (an installed extension) nor "
                      "../backend/contract.py (a checkout) is here: rebuild the add-on with `python build.py package`")


contract = _own_contract()


def check_bundle(path) -> None:
    """Validate the result.json of the bundle at `path` (its folder or the file) against the add-on's schema,
    leniently (fields a newer backend added are ignored); raises contract.ResultSchemaError with one line
    naming the file. A missing or unreadable result.json is left to the importer, which says so itself."""
    rj = Path(path)
    if rj.is_dir():
        rj = rj / "result.json"
    try:
        doc = json.loads(rj.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    contract.check_result(doc, rj, strict=False)
