"""run.py as a user runs it: `python run.py --images ... --output head.blend --glb head.glb` (bpy module),
a real subprocess end to end; failures exit non-zero with one line on stderr.

`blender -b -P run.py -- ...` runs the same main() (script_args() splits at `--`); there is no Blender
binary on this machine, so that form is covered by test_script_args_after_double_dash only."""
from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from conftest_blender import REPO, bpy_module  # noqa: F401 (fixture)

PHOTOS = REPO / "tests" / "data" / "multiview-mvfnet"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return lines[-1]


@pytest.mark.slow
def test_run_py_end_to_end(tmp_path, bpy_module):
    bpy = bpy_module
    blend, glb = tmp_path / "out" / "head.blend", tmp_path / "out" / "head.glb"
    r = run("--images", PHOTOS / "front.jpg", PHOTOS / "left.jpg", PHOTOS / "right.jpg", "--output", blend,
            "--glb", glb, "--texture-size", "512", "--subject", "cli")
    assert r.returncode == 0, r.stderr[-3000:]
    assert blend.is_file() and glb.is_file()
    magic, version, length = struct.unpack("<4sII", glb.read_bytes()[:12])
    assert magic == b"glTF" and version == 2 and length == glb.stat().st_size
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    meshes = [o for o in bpy.data.collections["cli"].objects if o.type == "MESH"]
    assert sum(len(o.data.vertices) for o in meshes) == 26719
    assert sum(len(o.data.polygons) for o in meshes) == 26384
    assert len([o for o in bpy.data.objects if o.type == "CAMERA"]) == 3
    # No --bundle: the photos are packed (the temporary bundle is deleted after saving).
    assert all(img.packed_file is not None for img in bpy.data.images)
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_missing_image_fails_with_one_line(tmp_path):
    r = run("--images", tmp_path / "nope.jpg", "--output", tmp_path / "h.blend")
    assert r.returncode == 2
    assert _error_line(r) == f"error: {tmp_path / 'nope.jpg'}: no such file or folder"
    assert not (tmp_path / "h.blend").exists()


def test_no_face_fails_with_backend_message(tmp_path):
    from PIL import Image

    img = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (90, 90, 90)).save(img)
    r = run("--images", img, "--output", tmp_path / "h.blend", "--texture-size", "0")
    assert r.returncode == 2, r.stderr[-2000:]
    line = _error_line(r)
    assert line.startswith("error: ") and "wall.png" in line and "face" in line
    assert not (tmp_path / "h.blend").exists()


def test_bad_arguments(tmp_path):
    r = run("--images", PHOTOS / "front.jpg", "--output", tmp_path / "h.txt")
    assert r.returncode == 2 and _error_line(r).endswith("--output must end in .blend")
    r = run("--output", tmp_path / "h.blend")
    assert r.returncode == 2 and "--images" in r.stderr


def test_script_args_after_double_dash():
    sys.path.insert(0, str(REPO))
    import run as run_py

    argv = ["blender", "-b", "-P", "run.py", "--", "--images", "a.jpg", "--output", "x.blend"]
    args = run_py.parse(run_py.script_args(argv))
    assert args.images == ["a.jpg"] and args.output == "x.blend"
    assert run_py.script_args(["run.py", "--images", "a"]) == ["--images", "a"]


def test_bundle_breaking_the_schema_is_refused_with_one_line(tmp_path):
    """The add-on's import path checks result.json against backend/result.schema.json first: a field of the
    wrong shape is one line naming the file and the field (exit 2), not a traceback from deep in the importer."""
    import json

    from conftest_blender import make_bundle

    bundle = make_bundle(tmp_path / "bundle", textures=False)
    doc = json.loads((bundle / "result.json").read_text())
    doc["views"][1]["camera"]["fx"] = "1300"
    (bundle / "result.json").write_text(json.dumps(doc))
    r = run("--from-bundle", bundle, "--output", tmp_path / "h.blend")
    assert r.returncode == 2, r.stderr[-2000:]
    assert _error_line(r) == (f"error: {bundle / 'result.json'}: does not match result.schema.json: "
                              'result.json.views[1].camera.fx: must be number, not "1300"')
    assert not (tmp_path / "h.blend").exists()
