"""What a Blender user sees when a reconstruction cannot be done: one case per way it goes wrong.

Each case drives the Reconstruct operator's interactive path (invoke, then modal() on TIMER events,
like tests/test_addon_e2e.py) with real bpy, the real Runner / BackendClient and, where the case
needs one, a real backend subprocess. Each checks:
  - the operator ends CANCELLED and its last report (what Blender shows in the status bar and the
    Info log) is ONE line, names the file or folder concerned and says what is wrong, with no
    traceback in it; the panel's last_error says the same;
  - the earlier bundle in the result folder is byte-identical afterwards, with no temp/old sibling;
  - the scene's existing objects are untouched and nothing was added;
  - Blender never blocks: every modal() call returns promptly, and no backend process is left.
The "backend crashed" cases use a fake interpreter (a script standing in for the backend's Python),
which costs milliseconds instead of a torch import.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from conftest_blender import DATA, bpy_clean, bpy_module, make_bundle, orphan_servers  # noqa: F401 (fixtures)
from test_addon_e2e import Event, FakeContext, _operator_instance

pytestmark = pytest.mark.slow
FRONT = DATA / "multiview-mvfnet" / "front.jpg"
SUBJECT = "Earlier"
# A modal() call drains queued events and, on the last one, stops the finished backend (stop() waits
# up to its grace period for a process that is already exiting); anything longer is a frozen UI.
MODAL_CALL_MAX_S = 2.0


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


@pytest.fixture(scope="module")
def earlier_bundle(tmp_path_factory):
    """The user's earlier result (written by the real bundle writer), copied into each case's folder."""
    return make_bundle(tmp_path_factory.mktemp("earlier") / SUBJECT, subject=SUBJECT, textures=False)


class Workspace:
    def __init__(self):
        self.status = []

    def status_text_set(self, text):
        self.status.append(text)


# ---------------------------------------------------------------------------------------------------------------
# the cases: each sets the scene up and returns (what the message must name, what it must say)

def _fake_python(tmp: Path, body: str) -> Path:
    """An executable standing in for the backend's interpreter (the client runs it as `PY -u -m backend serve`)."""
    p = tmp / "fake-python"
    p.write_text(f"#!{sys.executable}\n{body}")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def _photo(s, path):
    s.photos.add().filepath = str(path)


def case_missing_photo(bpy, s, prefs, tmp):
    p = tmp / "no_such_photo.jpg"
    _photo(s, p)
    return [str(p)], ["photo not found"]


def case_not_an_image(bpy, s, prefs, tmp):
    p = tmp / "holiday.jpg"
    p.write_text("<html>this was saved from a web page, not a photo</html>\n" * 20)
    _photo(s, p)
    return [str(p)], ["not an image"]


def case_no_face(bpy, s, prefs, tmp):
    from PIL import Image

    p = tmp / "wall.jpg"
    Image.new("RGB", (300, 300), (90, 140, 200)).save(p)
    _photo(s, p)
    return [str(p)], ["no face found"]


def case_output_under_a_file(bpy, s, prefs, tmp):
    blocker = tmp / "results.txt"
    blocker.write_text("a file where the user expected a folder\n")
    s.output_dir = str(blocker / "nested")
    _photo(s, FRONT)
    return [str(blocker)], ["cannot create the output folder", "not a folder"]


def case_backend_python_missing(bpy, s, prefs, tmp):
    prefs.python_path = str(tmp / "no-such-python")
    _photo(s, FRONT)
    return [str(tmp / "no-such-python")], ["backend Python not found"]


def case_backend_exits_at_start(bpy, s, prefs, tmp):
    """The preferences point at a Python without the backend's packages: it dies with a traceback."""
    py = _fake_python(tmp, """import sys
sys.stderr.write('Traceback (most recent call last):\\n'
                 '  File "<frozen runpy>", line 198, in _run_module_as_main\\n'
                 "ModuleNotFoundError: No module named 'torch'\\n")
sys.exit(1)
""")
    prefs.python_path = str(py)
    _photo(s, FRONT)
    return [str(py)], ["backend failed to start (exit code 1)", "No module named 'torch'"]


def case_backend_killed_mid_write(bpy, s, prefs, tmp):
    """The backend dies by SIGKILL (the OOM killer's signal) between the two renames of its bundle swap:
    the earlier bundle is at .NAME.old-PID and nothing at NAME. The add-on must put it back."""
    py = _fake_python(tmp, """import json, os, signal, sys
from pathlib import Path
print(json.dumps({"event": "ready", "protocol": 1, "pid": os.getpid()}), flush=True)
req = json.loads(sys.stdin.readline())
out = Path(req["output"])
print(json.dumps({"event": "progress", "id": req["id"], "stage": "export", "fraction": 0.0,
                  "message": "writing the result bundle"}), flush=True)
tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-abc")
tmp.mkdir()
(tmp / "head.obj").write_text("v 0 0 0\\n")
os.replace(out, out.with_name(f".{out.name}.old-{os.getpid()}"))
os.kill(os.getpid(), signal.SIGKILL)
""")
    prefs.python_path = str(py)
    _photo(s, FRONT)
    return [], ["backend exited unexpectedly during export", "killed by SIGKILL"]


CASES = {"missing_photo": case_missing_photo, "non_image_with_jpg_extension": case_not_an_image,
         "no_face": case_no_face, "output_under_a_regular_file": case_output_under_a_file,
         "backend_python_missing": case_backend_python_missing,
         "backend_exits_at_start": case_backend_exits_at_start,
         "backend_killed_mid_write": case_backend_killed_mid_write}


def _setup(bpy, tmp_path, earlier_bundle):
    """A scene with the user's own object and an earlier result in the result folder."""
    bpy.ops.mesh.primitive_cube_add()
    bpy.context.active_object.name = "UsersCube"
    s = bpy.context.scene.faceforge
    s.texture_size, s.output_dir, s.subject = "0", str(tmp_path / "results"), SUBJECT
    out = tmp_path / "results" / SUBJECT
    shutil.copytree(earlier_bundle, out)
    prefs = bpy.context.preferences.addons["face_reconstruct_addon"].preferences
    return s, prefs, out


def _scene_state(bpy):
    return (sorted(o.name for o in bpy.data.objects), len(bpy.data.meshes), len(bpy.data.collections),
            len(bpy.data.images), len(bpy.data.cameras), len(bpy.data.armatures),
            tuple(bpy.data.objects["UsersCube"].location), len(bpy.data.objects["UsersCube"].data.vertices))


def _run_modal(op, ctx, on_tick=None, timeout=180.0):
    """invoke(), then TIMER events until modal() ends; every call must come back promptly."""
    t0 = time.monotonic()
    r = op.invoke(ctx, Event("LEFTMOUSE", "PRESS"))
    slowest = time.monotonic() - t0
    while r == {"RUNNING_MODAL"} or r == {"PASS_THROUGH"}:
        assert time.monotonic() - t0 < timeout, "job did not end"
        time.sleep(0.05)
        if on_tick is not None:
            on_tick()
        t = time.monotonic()
        r = op.modal(ctx, Event("TIMER"))
        slowest = max(slowest, time.monotonic() - t)
    return r, slowest


def _assert_one_line_report(op, s, level, needles):
    assert op.reports, "nothing reported"
    lvl, msg = op.reports[-1]
    assert lvl == level, op.reports
    assert msg.startswith("FaceForge: "), msg
    assert "\n" not in msg and "Traceback" not in msg and 'File "' not in msg, msg
    assert len(msg) < 500, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.mark.parametrize("case", list(CASES))
def test_failure_is_one_line_and_nothing_is_lost(case, bpy_clean, tmp_path, earlier_bundle, monkeypatch):
    bpy = bpy_clean
    from face_reconstruct_addon import compat, jobs

    s, prefs, out = _setup(bpy, tmp_path, earlier_bundle)
    names, problems = CASES[case](bpy, s, prefs, tmp_path)
    before, scene_before = snapshot(out), _scene_state(bpy)
    monkeypatch.setattr(compat, "is_background", lambda: False)  # the interactive (modal) path
    ctx, op = FakeContext(bpy), _operator_instance()
    ctx.workspace = Workspace()

    result, slowest = _run_modal(op, ctx)

    assert result == {"CANCELLED"}, (result, op.reports)
    msg = _assert_one_line_report(op, s, "ERROR", names + problems)
    assert s.last_error and s.last_error in msg and not s.running
    assert slowest < MODAL_CALL_MAX_S, f"a modal() call took {slowest:.1f} s"
    assert ctx.workspace.status[-1:] in ([], [None])  # no stale "running" text left in the status bar
    from face_reconstruct_addon import client

    client.shutdown_warm()  # a backend that answered (a user error, a cancel) stays warm; nothing else may run
    assert jobs.ACTIVE["runner"] is None and orphan_servers() == []
    assert snapshot(out) == before and siblings(out) == []
    assert _scene_state(bpy) == scene_before
    print(f"\n{case}: {msg}")


def test_cancel_keeps_earlier_bundle_and_scene(bpy_clean, tmp_path, earlier_bundle, monkeypatch):
    """Esc once the real backend is working: a warning, not an error; nothing written, nothing imported."""
    bpy = bpy_clean
    from face_reconstruct_addon import compat, jobs

    s, prefs, out = _setup(bpy, tmp_path, earlier_bundle)
    for name in ("front.jpg", "left.jpg", "right.jpg"):
        _photo(s, DATA / "multiview-mvfnet" / name)
    before, scene_before = snapshot(out), _scene_state(bpy)
    monkeypatch.setattr(compat, "is_background", lambda: False)
    ctx, op = FakeContext(bpy), _operator_instance()
    ctx.workspace = Workspace()
    pressed = []

    def esc_when_working():
        if not pressed and op._runner is not None and op._runner.job.stage not in ("starting", "load"):
            pressed.append(op._runner.job.stage)
            assert op.modal(ctx, Event("ESC", "PRESS")) == {"RUNNING_MODAL"}

    result, slowest = _run_modal(op, ctx, on_tick=esc_when_working)

    assert pressed, "the job ended before it could be cancelled"
    assert result == {"CANCELLED"}
    assert op.reports[-1] == ("WARNING", f"FaceForge: cancelled; the earlier result in {out} is unchanged")
    assert s.stage == "Cancelled" and not s.running and s.last_error in ("", "Cancelled")
    assert slowest < MODAL_CALL_MAX_S, f"a modal() call took {slowest:.1f} s"
    assert ctx.workspace.status[-1] is None
    from face_reconstruct_addon import client

    client.shutdown_warm()  # a backend that answered (a user error, a cancel) stays warm; nothing else may run
    assert jobs.ACTIVE["runner"] is None and orphan_servers() == []
    assert snapshot(out) == before and siblings(out) == []
    assert _scene_state(bpy) == scene_before
