#!/usr/bin/env python3
"""FaceForge project commands (standard library only, so it runs before anything is installed).

    python3 build.py setup     create .venv and install pinned dependencies (idempotent)
        [--venv DIR]           ... into DIR instead (the add-on's "Install backend" button uses this)
    python3 build.py setup-bpy42   create .venv-bpy42 (bpy 4.2, requirements-bpy42.txt) for the 4.2 importer tests
    python3 build.py demo      setup, then reconstruct the bundled sample photos (+ a .blend)
    python3 build.py test      setup (both environments), then run the test suite (pytest)
    python3 build.py bench     setup, then run the benchmark (python -m bench)
    python3 build.py package   build the installable Blender extension zip into dist/
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_BPY42 = ROOT / ".venv-bpy42"
TORCH = "torch==2.13.0"
STAMP_NAME = ".faceforge-setup"


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd, **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)


def _wanted_stamp(files=("requirements.txt", "requirements-ray.txt"), extra: str = TORCH) -> str:
    reqs = b"".join((ROOT / f).read_bytes() for f in files)
    return hashlib.sha256(reqs + extra.encode() + sys.version.encode()).hexdigest()


def _make_env(env: Path, steps, stamp: str, probe: str, label: str) -> int:
    """Create (or bring up to date) the virtualenv `env`: each step is a list of pip arguments. Every line
    printed names `env` by its absolute path (the add-on shows these lines as progress)."""
    env = env.absolute()
    stamp_file = env / STAMP_NAME
    if stamp_file.is_file() and stamp_file.read_text() == stamp and venv_python(env).exists():
        if _run([venv_python(env), "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
            print(f"{label}: {env} is up to date", flush=True)
            return 0
    if sys.version_info[:2] != (3, 11):
        print(f"{label}: warning: Python {sys.version.split()[0]} ({sys.executable}); bpy wheels exist for "
              "Python 3.11 only", file=sys.stderr)
    try:
        if not venv_python(env).exists():
            print(f"{label}: creating {env}", flush=True)
            venv.EnvBuilder(with_pip=True, clear=False).create(env)
    except OSError as e:
        print(f"{label}: cannot create {env} ({e.strerror or e})", file=sys.stderr)
        return 1
    py = venv_python(env)
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for i, args in enumerate(steps, 1):
        print(f"{label}: step {i}/{len(steps)}: pip install {' '.join(str(a) for a in args)}", flush=True)
        if _run(pip + list(args)) != 0:
            print(f"{label}: pip failed in {env} (see above); nothing else was changed", file=sys.stderr)
            return 1
    stamp_file.write_text(stamp)
    print(f"{label}: done ({py})", flush=True)
    return 0


def setup(env: Path = VENV) -> int:
    # torch first and on its own: where a CUDA GPU is present the same pin resolves to the CUDA build
    # requirements-ray.txt resolved together with the rest, so ray can never move a core pin
    return _make_env(env, [["--upgrade", "pip"], [TORCH],
                           ["-r", ROOT / "requirements.txt", "-r", ROOT / "requirements-ray.txt"]],
                     _wanted_stamp(), "import torch, mediapipe, cv2, scipy, bpy, numpy", "setup")


def setup_bpy42() -> int:
    """The oldest supported Blender as a module, for the importer tests (tests/test_blender_versions.py)."""
    return _make_env(VENV_BPY42, [["--upgrade", "pip"], ["-r", ROOT / "requirements-bpy42.txt"]],
                     _wanted_stamp(("requirements-bpy42.txt",), ""), "import bpy, numpy, PIL, pytest",
                     "setup-bpy42")


def demo() -> int:
    if setup():
        return 1
    out = ROOT / "out" / "demo"
    imgs = sorted((ROOT / "tests" / "data" / "multiview-mvfnet").glob("*.jpg"))
    # the same headless job an artist's Reconstruct button runs: backend subprocess, then Blender import
    rc = _run([venv_python(), "run.py", "--images", *imgs, "--output", out / "head.blend", "--glb", out / "head.glb",
               "--bundle", out / "bundle", "--render", out / "front.png"])
    if rc:
        return rc
    print(f"\ndemo: result bundle  {out / 'bundle'}\ndemo: Blender scene  {out / 'head.blend'}"
          f"\ndemo: glTF           {out / 'head.glb'}\ndemo: render         {out / 'front.png'}")
    return 0


def test(extra) -> int:
    if setup() or setup_bpy42():
        return 1
    return _run([venv_python(), "-m", "pytest", *(extra or ["-q"])])


def bench(extra) -> int:
    if setup():
        return 1
    return _run([venv_python(), "-m", "bench", *extra])


def package() -> int:
    sys.path.insert(0, str(ROOT))
    from tools.package_extension import package_extension

    path = package_extension(ROOT / "dist")
    print(f"package: {path}")
    return 0


def main(argv) -> int:
    if not argv or argv[0] not in {"setup", "setup-bpy42", "demo", "test", "bench", "package"}:
        print(__doc__)
        return 2
    cmd, extra = argv[0], argv[1:]
    if cmd == "setup" and extra[:1] == ["--venv"] and len(extra) == 2:
        return setup(Path(extra[1]).expanduser().absolute())
    handlers = {"setup": setup, "setup-bpy42": setup_bpy42, "demo": demo, "package": package,
                "test": lambda: test(extra), "bench": lambda: bench(extra)}
    return handlers[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
