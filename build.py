#!/usr/bin/env python3
"""FaceForge project commands (standard library only, so it runs before anything is installed).

    python3 build.py setup     create .venv and install pinned dependencies (idempotent)
    python3 build.py demo      setup, then reconstruct the bundled sample photos (+ a .blend)
    python3 build.py test      setup, then run the test suite (pytest)
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
TORCH = "torch==2.13.0"
STAMP = VENV / ".faceforge-setup"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd, **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)


def _wanted_stamp() -> str:
    reqs = (ROOT / "requirements.txt").read_bytes() + (ROOT / "requirements-ray.txt").read_bytes()
    return hashlib.sha256(reqs + TORCH.encode() + sys.version.encode()).hexdigest()


def setup() -> int:
    if STAMP.is_file() and STAMP.read_text() == _wanted_stamp() and venv_python().exists():
        probe = _run([venv_python(), "-c", "import torch, mediapipe, cv2, scipy, bpy, numpy"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe == 0:
            print(f"setup: {VENV} is up to date")
            return 0
    if sys.version_info[:2] != (3, 11):
        print(f"setup: warning: Python {sys.version.split()[0]}; bpy 5.0.1 wheels exist for Python 3.11 only",
              file=sys.stderr)
    if not venv_python().exists():
        print(f"setup: creating {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    py = venv_python()
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # torch first and on its own: where a CUDA GPU is present the same pin resolves to the CUDA build
    # requirements-ray.txt resolved together with the rest, so ray can never move a core pin
    for cmd in (pip + ["--upgrade", "pip"], pip + [TORCH],
                pip + ["-r", ROOT / "requirements.txt", "-r", ROOT / "requirements-ray.txt"]):
        if _run(cmd) != 0:
            print("setup: pip failed (see above); nothing else was changed", file=sys.stderr)
            return 1
    STAMP.write_text(_wanted_stamp())
    print(f"setup: done ({py})")
    return 0


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
    if setup():
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
    if not argv or argv[0] not in {"setup", "demo", "test", "bench", "package"}:
        print(__doc__)
        return 2
    cmd, extra = argv[0], argv[1:]
    handlers = {"setup": setup, "demo": demo, "package": package, "test": lambda: test(extra),
                "bench": lambda: bench(extra)}
    return handlers[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
