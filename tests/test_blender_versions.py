"""The importer tests under the oldest Blender the extension supports (blender_manifest.toml: 4.2), in the second
environment `python3 build.py setup-bpy42` makes (.venv-bpy42: bpy 4.2.0), so compat.py's 4.2 - 4.3 branches
(material and world use_nodes, un-slotted actions, the EEVEE Next engine name) run, not just the 5.0 ones."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY42 = REPO / ".venv-bpy42" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def test_importer_tests_pass_under_bpy_4_2():
    assert PY42.is_file(), f"{PY42}: missing; run `python3 build.py setup-bpy42` (build.py test does)"
    probe = subprocess.run([str(PY42), "-c", "import bpy; from face_reconstruct_addon import compat; "
                            "print(bpy.app.version_string, compat.HAS_SLOTS, compat.eevee_engine())"],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    version, has_slots, eevee = probe.stdout.strip().splitlines()[-1].split()
    assert version.startswith("4.2.") and has_slots == "False" and eevee == "BLENDER_EEVEE_NEXT", probe.stdout
    r = subprocess.run([str(PY42), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_addon_import.py",
                        "tests/test_addon_io.py"], capture_output=True, text=True, cwd=REPO, timeout=900)
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-2000:]
    assert r.returncode == 0 and " passed" in tail and "failed" not in tail and "skipped" not in tail, \
        r.stdout[-4000:] + r.stderr[-2000:]
