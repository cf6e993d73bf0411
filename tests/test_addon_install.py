"""The add-on's "Install backend" button: face_reconstruct_addon/installer.py runs `build.py setup --venv DIR` in a
real subprocess, turns its lines into progress, and ends with one line naming absolute paths; the operator refuses
while Blender's online access is off. The set-ups here fail or are cancelled within seconds (no packages are
downloaded): a stand-in build.py that prints what the real one prints, and the real build.py with pip kept off
every index."""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest_blender import ADDON, REPO, bpy_clean, bpy_module  # noqa: F401 (fixtures)

from face_reconstruct_addon import installer

# Prints what build.py's _make_env prints (the installer reads exactly these lines), then fails as pip does.
FAILING_SETUP = textwrap.dedent("""
    import sys, time
    venv = sys.argv[sys.argv.index("--venv") + 1]
    open(sys.argv[0] + ".ran", "w").write(venv)
    print(f"setup: creating {venv}", flush=True)
    for i in (1, 2):
        print(f"setup: step {i}/3: pip install thing{i}", flush=True)
        time.sleep(0.5)
    print("ERROR: No matching distribution found for thing2", flush=True)
    print(f"setup: pip failed in {venv} (see above); nothing else was changed", file=sys.stderr, flush=True)
    sys.exit(1)
""")


def _backend_root(folder: Path, build_py: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "build.py").write_text(build_py)
    return folder


def _run(inst, timeout=60.0):
    seen = []
    state = inst.run_blocking(timeout=timeout, on_progress=lambda f, m: seen.append((round(f, 3), m)))
    return state, seen


def test_progress_and_one_line_error_with_absolute_paths(tmp_path, monkeypatch):
    root = _backend_root(tmp_path / "backend_src", FAILING_SETUP)
    monkeypatch.chdir(tmp_path)
    inst = installer.Install("backend_src", "envs/venv")  # relative, as a preference might hold them
    state, seen = _run(inst)
    venv = tmp_path / "envs" / "venv"
    assert state == "error"
    # Progress arrived while it ran: the step lines became a fraction and a message.
    assert (round(1 / 3, 3), "step 2/3: pip install thing2") in seen
    assert seen[0][0] == 0.0
    # One line: the environment and the backend folder by absolute path, pip's cause, where the whole output is.
    assert inst.error == (f"{venv}: set-up from {root} failed (exit 1): ERROR: No matching distribution found for "
                          f"thing2 (full output: {venv}-setup.log)")
    assert "\n" not in inst.error
    log = (tmp_path / "envs" / "venv-setup.log").read_text()
    assert "setup: step 1/3" in log and f"setup: pip failed in {venv}" in log
    assert Path(str(root / "build.py") + ".ran").read_text() == str(venv)  # build.py got the absolute path


def test_real_build_py_pip_failure(tmp_path, monkeypatch):
    """The real build.py and requirements files, with pip kept off every index and wheel folder: it makes the
    environment, passes step 1 (pip already there), and fails on torch at step 2."""
    root = tmp_path / "backend_src"
    root.mkdir()
    for name in ("build.py", "requirements.lock", "requirements.txt", "requirements-dev.txt",
                 "requirements-bench.txt", "requirements-ray.txt"):
        shutil.copy(REPO / name, root / name)
    (tmp_path / "no_wheels").mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no_wheels"))
    venv = tmp_path / "user" / "venv"
    inst = installer.Install(root, venv, python=sys.executable)
    t0 = time.monotonic()
    state, seen = _run(inst, timeout=180)
    assert state == "error", inst.message
    messages = [m for _, m in seen]
    assert f"creating {venv}" in messages and any(m.startswith("step 2/3: pip install torch==") for m in messages)
    assert inst.error.startswith(f"{venv}: set-up from {root} failed (exit 1): ERROR: ")
    assert "torch" in inst.error and inst.error.endswith(f"(full output: {venv}-setup.log)")
    # The environment exists but is not marked as set up, so the next press starts over.
    assert (venv / "bin" / "python").exists() and not (venv / ".faceforge-setup").exists()
    assert time.monotonic() - t0 < 120  # measured 7 s on 2 cores


def test_cancel_ends_setup_and_the_pip_it_runs(tmp_path):
    child_pid_file = tmp_path / "child.pid"
    root = _backend_root(tmp_path / "backend_src", textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands for pip
        open({str(child_pid_file)!r}, "w").write(str(child.pid))
        print("setup: step 2/3: pip install torch", flush=True)
        time.sleep(60)
    """))
    inst = installer.Install(root, tmp_path / "venv")
    inst.start()
    t0 = time.monotonic()
    while not (child_pid_file.is_file() and child_pid_file.read_text()) or inst.message == "Starting":
        assert inst.poll() == "running" and time.monotonic() - t0 < 30
        time.sleep(0.05)
    child = int(child_pid_file.read_text())
    inst.cancel()
    assert inst.poll() == "cancelled" and inst.error == f"{tmp_path / 'venv'}: set-up cancelled"
    assert inst.proc.returncode is not None
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the set-up's child process outlived Cancel"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_problems_before_starting_name_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    inst = installer.Install("empty", "venv")
    inst.start()
    assert inst.state == "error" and inst.error == f"{tmp_path / 'empty' / 'build.py'}: not found (the backend " \
                                                   "folder must hold build.py)"
    root = _backend_root(tmp_path / "backend_src", FAILING_SETUP)
    (tmp_path / "a_file").write_text("")
    inst = installer.Install(root, "a_file/venv")
    inst.start()
    assert inst.state == "error" and inst.error.startswith(
        f"{tmp_path / 'a_file'}: cannot create the folder for the backend environment")
    assert not Path(str(root / "build.py") + ".ran").exists()


def test_install_button(bpy_clean, tmp_path):
    """The preferences' button (bpy.ops.faceforge.install_backend, as pressed in background mode): refused while
    Blender's online access is off, else the set-up's failure in the preferences and the operator's report."""
    bpy = bpy_clean
    from face_reconstruct_addon import compat

    root = _backend_root(tmp_path / "backend_src", FAILING_SETUP)
    prefs = compat.addon_preferences(bpy.context, ADDON)
    prefs.backend_root = str(root)
    prefs.python_path = str(tmp_path / "env" / "bin" / "python")  # Install sets up <env>
    system = bpy.context.preferences.system
    online = system.use_online_access
    try:
        system.use_online_access = False
        assert not bpy.app.online_access
        with pytest.raises(RuntimeError, match="online access is off"):
            bpy.ops.faceforge.install_backend()
        assert prefs.install_status.startswith(f"! {tmp_path / 'env'}: not installed: online access is off")
        assert not Path(str(root / "build.py") + ".ran").exists()  # nothing ran

        system.use_online_access = True
        assert bpy.app.online_access
        with pytest.raises(RuntimeError, match="No matching distribution found for thing2") as e:
            bpy.ops.faceforge.install_backend()
        assert f"FaceForge install: {tmp_path / 'env'}: set-up from {root} failed (exit 1)" in str(e.value)
        assert prefs.install_status.startswith(f"! {tmp_path / 'env'}: set-up from {root} failed (exit 1): ERROR:")
        assert not prefs.install_running and prefs.install_progress == 0.0
        assert Path(str(root / "build.py") + ".ran").read_text() == str(tmp_path / "env")
    finally:
        system.use_online_access = online
