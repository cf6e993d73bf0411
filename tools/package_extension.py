"""Build the installable Blender extension zip (called by `python build.py package`).

The zip holds face_reconstruct_addon/*.py at its root plus blender_manifest.toml, which is what
Blender 4.2+ expects of an extension, and the backend's contract with the add-on (backend/contract.py and
result.schema.json) under backend_contract/, where face_reconstruct_addon/shared.py looks for it first: an
installed extension has no checkout around it; and the backend's source, weights and set-up under backend_src/
for the "Install backend" button. When the bpy module is installed, Blender's own extension
tool (bl_pkg/cli/blender_ext.py) validates the result, so a manifest Blender would reject fails here.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import re
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADDON_DIR = REPO / "face_reconstruct_addon"
MANIFEST = REPO / "blender_manifest.toml"
CONTRACT_FILES = [REPO / "backend" / "contract.py", REPO / "backend" / "result.schema.json"]
EXCLUDE_DIRS = {"__pycache__"}
EXCLUDE_SUFFIXES = {".pyc", ".pyo", ".blend1"}


def addon_files() -> list[Path]:
    out = []
    for p in sorted(ADDON_DIR.rglob("*")):
        if p.is_file() and not (EXCLUDE_DIRS & set(p.relative_to(ADDON_DIR).parts)) \
                and p.suffix not in EXCLUDE_SUFFIXES:
            out.append(p)
    return out


def backend_files() -> list[tuple[str, Path]]:
    """The backend's source, weights and set-up (build.py, requirements) under backend_src/: what the add-on's
    "Install backend" button needs to build the environment without a checkout."""
    out = []
    for top in ("backend", "weights"):
        for p in sorted((REPO / top).rglob("*")):
            if p.is_file() and not (EXCLUDE_DIRS & set(p.parts)) and p.suffix not in EXCLUDE_SUFFIXES:
                out.append((f"backend_src/{p.relative_to(REPO).as_posix()}", p))
    # build.py setup installs requirements.lock; `build.py lock` reads the group files
    for name in ("build.py", "requirements.lock", "requirements.txt", "requirements-dev.txt",
                 "requirements-bench.txt", "requirements-ray.txt"):
        out.append((f"backend_src/{name}", REPO / name))
    return out


def blender_ext_tool() -> tuple[str, Path] | None:
    """(python, blender_ext.py) from this interpreter's bpy, else from the repo's .venv (build.py may run
    under a system Python without bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.origin:
        hits = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return sys.executable, hits[-1]
    venv_py = REPO / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    hits = sorted(REPO.glob(".venv/lib*/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if venv_py.is_file() and hits:
        return str(venv_py), hits[-1]
    return None


def read_manifest() -> dict:
    """id and version (tomllib is 3.11+; these two keys are simple enough to read without it)."""
    text = MANIFEST.read_text()
    out = {}
    for key in ("id", "version"):
        m = re.search(rf'^{key}\s*=\s*"([^"]+)"', text, re.M)
        if not m:
            raise RuntimeError(f"{MANIFEST}: no {key} = \"...\" line")
        out[key] = m.group(1)
    return out


def validate(zip_path: Path) -> str:
    """Run Blender's validator on the zip; returns its output, raises RuntimeError if it rejects it."""
    found = blender_ext_tool()
    if found is None:
        return "bpy not installed: skipped Blender's manifest validation"
    python, tool = found
    r = subprocess.run([python, str(tool), "validate", str(zip_path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{zip_path}: Blender rejects the extension: {(r.stdout + r.stderr).strip()}")
    return (r.stdout + r.stderr).strip()


def package_extension(out_dir) -> Path:
    """Write dist-style `<id>-<version>.zip` into out_dir and return its path."""
    manifest = read_manifest()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        entries = [("blender_manifest.toml", MANIFEST)] + [(p.relative_to(ADDON_DIR).as_posix(), p)
                                                            for p in addon_files()]
        entries += [(f"backend_contract/{p.name}", p) for p in CONTRACT_FILES]
        entries += backend_files()
        for name, p in entries:
            # Fixed timestamps: the same sources give the same zip.
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())
    tmp.replace(zip_path)
    validate(zip_path)
    return zip_path


if __name__ == "__main__":
    print(package_extension(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist"))
