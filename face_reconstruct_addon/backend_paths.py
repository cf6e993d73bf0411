"""Where the backend's Python and its `backend/` folder are (no bpy here, so run.py and tests share it).

Order: explicit setting (add-on preferences / run.py flag) > environment (FACEFORGE_PYTHON,
FACEFORGE_ROOT) > the checkout the add-on sits in (<repo>/face_reconstruct_addon -> <repo>, whose
`.venv` is made by `python build.py setup`) > the backend source shipped inside the extension
(<extension>/backend_src, whose environment the preferences' "Install backend" button makes in the
extension's user folder). Every path returned is absolute.
"""
from __future__ import annotations

import os
from pathlib import Path

from .client import default_python
from .shared import load_module

ADDON_DIR = Path(__file__).resolve().parent
SHIPPED_ROOT = ADDON_DIR / "backend_src"  # tools/package_extension.py puts backend/, weights/, build.py here


def _is_root(p: Path) -> bool:
    return (p / "backend" / "__init__.py").is_file()


def resolve(python: str = "", root: str = "", venv_dir: str | None = None) -> tuple[str, str, list[str]]:
    """(python, root, notes); notes say where each came from or what is missing. venv_dir: where the
    environment of the shipped backend lives (the extension's user folder)."""
    notes = []
    root_p = Path(bpy_abspath(root)) if root else None
    if root_p is None and os.environ.get("FACEFORGE_ROOT"):
        root_p = Path(os.environ["FACEFORGE_ROOT"])
        notes.append("backend folder from FACEFORGE_ROOT")
    py_env = os.environ.get("FACEFORGE_PYTHON", "")
    if root_p is None and py_env:
        # <root>/.venv/bin/python -> <root>
        cand = Path(py_env).absolute().parent.parent.parent
        if _is_root(cand):
            root_p = cand
    if root_p is None and _is_root(ADDON_DIR.parent):
        root_p = ADDON_DIR.parent
    if root_p is None and _is_root(SHIPPED_ROOT):
        root_p = SHIPPED_ROOT
        notes.append("backend shipped with the extension")
    if root_p is None:
        notes.append("backend folder not found: set it in the add-on preferences or FACEFORGE_ROOT")
        root_p = ADDON_DIR.parent
    root_p = root_p.absolute()
    if python:
        py = Path(bpy_abspath(python))
    elif py_env:
        py = Path(py_env)
        notes.append("Python from FACEFORGE_PYTHON")
    else:
        py = venv_python(Path(venv_dir)) if (root_p == SHIPPED_ROOT and venv_dir) else default_python(root_p)
    return str(Path(py).absolute()), str(root_p), notes


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def venv_of(python: str) -> Path:
    """The virtualenv folder of an interpreter path (<env>/bin/python -> <env>)."""
    return Path(python).absolute().parent.parent


def bpy_abspath(p: str) -> str:
    """Resolve Blender's '//' relative paths when running inside Blender."""
    if p.startswith("//"):
        try:
            import bpy

            return bpy.path.abspath(p)
        except ImportError:
            pass
    return os.path.expanduser(p)


def load_backend_module(name: str, root: str | Path):
    """A standard-library-only module of the backend in `root` (e.g. "output_dir", "contract"), loaded by path
    (shared.load_module); None when `root` has no such module (a backend older than the add-on)."""
    return load_module(Path(root) / "backend", name)
