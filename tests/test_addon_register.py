"""The add-on registers and unregisters cleanly, and the packaged extension zip installs with
Blender's extensions API and works from its installed location."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest_blender import ADDON, REPO, bpy_module, enable_addon  # noqa: F401 (fixture)

OPERATORS = ["photo_add", "photo_add_folder", "photo_remove", "photo_clear", "reconstruct", "cancel",
             "import_result", "apply_view", "reset_expression", "check_backend"]


def _registered(bpy):
    return {
        "ops": [hasattr(bpy.types, f"FACEFORGE_OT_{o}") for o in OPERATORS],
        "panel": hasattr(bpy.types, "FACEFORGE_PT_reconstruct"),
        "scene_prop": hasattr(bpy.types.Scene, "faceforge"),
        "import_menu": any(getattr(f, "__name__", "") == "menu_import"
                           for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()),
    }


def test_register_unregister_cycle(bpy_module):
    bpy = bpy_module
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    for _ in range(2):  # twice: a leak (class or menu left behind) makes the second enable fail
        enable_addon(bpy)
        r = _registered(bpy)
        assert all(r["ops"]) and r["panel"] and r["scene_prop"] and r["import_menu"], r
        assert ADDON in bpy.context.preferences.addons
        prefs = bpy.context.preferences.addons[ADDON].preferences
        assert prefs.python_path == "" and prefs.backend_root == ""
        s = bpy.context.scene.faceforge
        assert (s.landmarks, s.device, s.texture_size) == ("mediapipe", "auto", "2048")
        addon_utils.disable(ADDON, default_set=True)
        r = _registered(bpy)
        assert not any(r["ops"]) and not r["panel"] and not r["scene_prop"] and not r["import_menu"], r


def test_backend_resolution_defaults(monkeypatch, tmp_path):
    from face_reconstruct_addon import backend_paths

    monkeypatch.delenv("FACEFORGE_PYTHON", raising=False)
    monkeypatch.delenv("FACEFORGE_ROOT", raising=False)
    py, root, _ = backend_paths.resolve()
    assert root == str(REPO) and py == str(REPO / ".venv" / "bin" / "python")  # the add-on sits in the checkout
    monkeypatch.setenv("FACEFORGE_PYTHON", str(REPO / ".venv" / "bin" / "python"))
    py, root, notes = backend_paths.resolve()
    assert root == str(REPO) and "Python from FACEFORGE_PYTHON" in notes
    py, root, _ = backend_paths.resolve(python=str(tmp_path / "py"), root=str(tmp_path))
    assert (py, root) == (str(tmp_path / "py"), str(tmp_path))


def test_package_installs_with_extensions_api(tmp_path):
    """`python build.py package` output: installed by bl_pkg into an isolated user repo, in a fresh
    process (so nothing from this test session's imports can help), then enabled and used: its
    preferences point at this checkout and the Check Backend button talks to the real server."""
    sys.path.insert(0, str(REPO / "tools"))
    from package_extension import package_extension

    zip_path = package_extension(tmp_path / "dist")
    script = textwrap.dedent(f"""
        import json, sys, bpy
        res = bpy.ops.extensions.package_install_files(filepath={str(zip_path)!r}, repo="user_default",
                                                       enable_on_install=True)
        mod = "bl_ext.user_default.faceforge"
        prefs = bpy.context.preferences.addons[mod].preferences
        prefs.python_path = {str(REPO / ".venv" / "bin" / "python")!r}
        prefs.backend_root = {str(REPO)!r}
        check = bpy.ops.faceforge.check_backend()
        out = {{"install": sorted(res), "check": sorted(check), "report": prefs.check_report,
               "file": sys.modules[mod].__file__, "has_op": hasattr(bpy.types, "FACEFORGE_OT_reconstruct"),
               "contract": sys.modules[mod + ".shared"].contract.__file__}}
        import addon_utils
        addon_utils.disable(mod, default_set=True)
        out["after_disable"] = hasattr(bpy.types, "FACEFORGE_OT_reconstruct")
        print("RESULT " + json.dumps(out))
    """)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    env.pop("FACEFORGE_PYTHON", None)
    env.pop("FACEFORGE_ROOT", None)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(line[7:])
    assert out["install"] == ["FINISHED"]
    installed = tmp_path / "user" / "extensions" / "user_default" / "faceforge"
    assert out["file"].startswith(str(installed))
    # the contract the installed add-on speaks is the copy in its zip, not a checkout's (it has none around it)
    assert out["contract"] == str(installed / "backend_contract" / "contract.py")
    assert Path(out["contract"]).read_bytes() == (REPO / "backend" / "contract.py").read_bytes()
    assert out["has_op"] and not out["after_disable"]
    assert out["check"] == ["FINISHED"], out["report"]
    assert "torch: 2." in out["report"] and "ict-facekit/ict_face_model.npz: found" in out["report"]


def test_manifest_fields():
    import tomllib

    m = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert m["schema_version"] == "1.0.0" and m["type"] == "add-on" and m["blender_version_min"] == "4.2.0"
    assert all(lic.startswith("SPDX:") for lic in m["license"])
    # Reading photos and writing bundles; Install backend fetches packages from PyPI (the operator also checks
    # bpy.app.online_access, as Blender asks of extensions that go online).
    assert m["permissions"]["files"] and "PyPI" in m["permissions"]["network"]
    # Blender's own manifest check (the one `blender --command extension validate` and Install from Disk run),
    # strict: permission reasons are short sentences without a final full stop, and so on.
    import glob
    import importlib.util

    cli = glob.glob(str(Path(sys.prefix) / "lib" / "python3.*" / "site-packages" / "bpy" / "*" / "scripts" /
                        "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"))
    assert cli, f"{sys.prefix}: bpy's extension tool (bl_pkg/cli/blender_ext.py) not found"
    spec = importlib.util.spec_from_file_location("faceforge_test_blender_ext", cli[0])
    blender_ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blender_ext)
    assert blender_ext.pkg_manifest_is_valid_or_error(m, from_repo=False, strict=True) is None
    for k in ("id", "version", "name", "tagline", "maintainer"):
        assert m[k]


class FakeLayout:
    """Stands in for UILayout (bpy-as-module has no window to draw in): checks that every property
    and operator a draw() function references exists, which is what breaks when APIs or names drift."""

    def __init__(self, bpy, log):
        self.bpy, self.log = bpy, log

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: self
        if name == "prop":
            def prop(data, prop_name, **k):
                assert prop_name in data.bl_rna.properties, prop_name
                self.log.append(("prop", prop_name))
            return prop
        if name == "operator":
            def operator(idname, **k):
                mod, op = idname.split(".")
                assert hasattr(getattr(self.bpy.ops, mod), op), idname
                self.log.append(("operator", idname))
                return type("OpProps", (), {})()
            return operator
        if name == "template_list":
            def template_list(cls_name, list_id, data, prop, active_data, active_prop, **k):
                assert hasattr(self.bpy.types, cls_name) and prop in data.bl_rna.properties
                assert active_prop in active_data.bl_rna.properties
            return template_list
        if name == "progress":
            return lambda **k: self.log.append(("progress", k["text"]))
        if name == "label":
            return lambda **k: self.log.append(("label", k.get("text")))
        raise AttributeError(name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)


def test_panels_and_preferences_draw(bpy_module, tmp_path):
    bpy = bpy_module
    from conftest_blender import make_bundle

    from face_reconstruct_addon import compat, importer, jobs, ui

    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon(bpy)
    try:
        ctx = bpy.context
        log = []
        ui.FACEFORGE_PT_reconstruct.draw(type("P", (), {"layout": FakeLayout(bpy, log)})(), ctx)
        assert ("operator", "faceforge.reconstruct") in log and ("prop", "texture_size") in log
        # While a job runs the panel shows the progress bar and Cancel instead.
        ctx.scene.faceforge.running, ctx.scene.faceforge.stage = True, "fit: bundle adjustment"
        jobs.ACTIVE["runner"] = object()
        log.clear()
        ui.FACEFORGE_PT_reconstruct.draw(type("P", (), {"layout": FakeLayout(bpy, log)})(), ctx)
        assert ("progress", "fit: bundle adjustment") in log and ("operator", "faceforge.cancel") in log
        jobs.ACTIVE["runner"] = None
        prefs = compat.addon_preferences(ctx, ADDON)
        log.clear()
        prefs.check_report = "torch: 2\n! weights missing"

        class WithLayout:  # the real preferences, with our layout (UILayout is read-only)
            layout = FakeLayout(bpy, log)

            def __getattr__(self, name):
                return getattr(prefs, name)

        type(prefs).draw(WithLayout(), ctx)
        assert ("operator", "faceforge.check_backend") in log and ("label", "! weights missing") in log
        out = importer.import_bundle(make_bundle(tmp_path / "b"))
        ctx.view_layer.objects.active = out["head"]
        assert ui.FACEFORGE_PT_views.poll(ctx)
        log.clear()
        ui.FACEFORGE_PT_views.draw(type("P", (), {"layout": FakeLayout(bpy, log)})(), ctx)
        assert log.count(("operator", "faceforge.apply_view")) == 3
    finally:
        jobs.ACTIVE["runner"] = None
        import addon_utils

        addon_utils.disable(ADDON, default_set=True)
