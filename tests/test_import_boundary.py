"""The runtime ships without the development packages: nothing under backend/ or face_reconstruct_addon/
(nor run.py) imports bench/ or tools/, and the Blender side never imports the backend package itself
(Blender ships numpy, not torch, OpenCV or scipy; the add-on loads single stdlib-only backend files by path)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_PACKAGES = {"bench", "tools", "tests"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _runtime_files():
    files = [ROOT / "run.py"]
    for pkg in ("backend", "face_reconstruct_addon"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def test_runtime_never_imports_development_packages():
    bad = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in _runtime_files() for line, name in _imports(f)
           if name.split(".")[0] in DEV_PACKAGES]
    assert not bad, "\n".join(bad)


def test_addon_never_imports_the_backend_package():
    bad = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in sorted((ROOT / "face_reconstruct_addon").rglob("*.py"))
           for line, name in _imports(f) if name.split(".")[0] in {"backend", "torch", "cv2", "mediapipe", "scipy"}]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_violation(tmp_path):
    """The AST walk really finds both import forms (a boundary test that can never fail is no test)."""
    f = tmp_path / "m.py"
    f.write_text("import bench.accuracy\nfrom tools.build_mp_correspondence import main\nfrom . import x\n")
    assert [n for _, n in _imports(f)] == ["bench.accuracy", "tools.build_mp_correspondence"]
