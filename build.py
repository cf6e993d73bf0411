#!/usr/bin/env python3
"""FaceForge project commands (standard library only, so it runs before anything is installed).

    python3 build.py setup     create .venv and install requirements.lock (idempotent)
        [--venv DIR]           ... into DIR instead (the add-on's "Install backend" button uses this)
    python3 build.py setup-bpy42   create .venv-bpy42 (bpy 4.2, requirements-bpy42.txt) for the 4.2 importer tests
    python3 build.py demo      setup, then reconstruct the bundled sample photos (+ a .blend)
    python3 build.py test      setup (both environments), then run the test suite (pytest)
    python3 build.py bench     setup, then run the benchmark (python -m bench)
    python3 build.py package   build the installable Blender extension zip into dist/
    python3 build.py lock      rewrite requirements.lock from .venv (after changing a requirements file)

Dependencies: requirements.txt (runtime), requirements-dev.txt (tests, bpy), requirements-bench.txt (bench/,
tools/), requirements-ray.txt (batch on a Ray cluster) name what FaceForge uses; requirements.lock pins all of
them and everything they pull in, as installed and tested together. setup installs the lock with --no-deps:
exactly those versions, and no second OpenCV (face-alignment asks for opencv-python, whose cv2/ files would
overwrite mediapipe's opencv-contrib-python). torch is installed first, on its own: FACEFORGE_TORCH_INDEX picks
the wheel index (README, "CUDA"); pip does not look at the machine's GPU.
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
STAMP_NAME = ".faceforge-setup"  # in each environment: what it was set up from
LOCK = ROOT / "requirements.lock"
GROUPS = ("requirements.txt", "requirements-dev.txt", "requirements-bench.txt", "requirements-ray.txt")
OPENCV = "opencv-contrib-python"
# other distributions of the cv2 package; any of them next to OPENCV overwrites its files
OTHER_OPENCVS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python-headless")


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd, **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)


def _torch_index() -> str:
    return os.environ.get("FACEFORGE_TORCH_INDEX", "")


def _wanted_stamp() -> str:
    return hashlib.sha256(LOCK.read_bytes() + TORCH.encode() + _torch_index().encode()
                          + sys.version.encode()).hexdigest()


def _files_stamp(files) -> str:
    return hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in files) + sys.version.encode()).hexdigest()


def _installed(py, names) -> list[str]:
    """Which of the distributions `names` the venv's Python has."""
    code = ("import importlib.metadata as m, sys\n"
            "for n in sys.argv[1:]:\n"
            "    try: m.version(n); print(n)\n"
            "    except m.PackageNotFoundError: pass")
    out = subprocess.run([str(py), "-c", code, *names], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.split()


def _make_env(env: Path, steps, stamp: str, probe: str, label: str, after=None) -> int:
    """Create (or bring up to date) the virtualenv `env`: each step is a list of pip arguments, `after(py, pip)`
    a last repair (0: fine). Every line printed names `env` by its absolute path; the add-on's Install backend
    shows the "step i/n" lines as progress (face_reconstruct_addon/installer.py)."""
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
    if after is not None and after(py, pip) != 0:
        print(f"{label}: pip failed in {env} (see above)", file=sys.stderr)
        return 1
    stamp_file.write_text(stamp)
    print(f"{label}: done ({py})", flush=True)
    return 0


def _one_opencv(py, pip) -> int:
    """A .venv made before the lock has opencv-python too; removing it deletes cv2/ files the two shared, so the
    one OpenCV is then installed again over what is left."""
    extra = _installed(py, OTHER_OPENCVS)
    if not extra:
        return 0
    fix = ([py, "-m", "pip", "uninstall", "-y", "-q", *extra], pip + ["--no-deps", "--force-reinstall", _pin(OPENCV)])
    return 1 if any(_run(cmd) != 0 for cmd in fix) else 0


def setup(env: Path = VENV) -> int:
    # torch first, with its own dependencies (the CUDA build's nvidia-* wheels differ from the CPU build's),
    # from FACEFORGE_TORCH_INDEX when set; the lock then finds it installed (its pin has no +cpu/+cuXXX label)
    torch = [TORCH] + (["--index-url", _torch_index()] if _torch_index() else [])
    return _make_env(env, [["--upgrade", "pip"], torch, ["--no-deps", "-r", LOCK]], _wanted_stamp(),
                     "import torch, mediapipe, cv2, scipy, bpy, numpy", "setup", after=_one_opencv)


def setup_bpy42() -> int:
    """The oldest supported Blender as a module, for the importer tests (tests/test_blender_versions.py)."""
    return _make_env(VENV_BPY42, [["--upgrade", "pip"], ["-r", ROOT / "requirements-bpy42.txt"]],
                     _files_stamp(("requirements-bpy42.txt",)), "import bpy, numpy, PIL, pytest", "setup-bpy42")


def _pins(path: Path) -> dict[str, str]:
    """name (lower case, '_' as '-') -> 'name==version' of each pinned line of a requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if "==" in req:
            name = req.split("==", 1)[0].strip()
            out[name.lower().replace("_", "-")] = req
    return out


def _pin(name: str) -> str:
    return _pins(LOCK)[name]


def lock() -> int:
    """requirements.lock := what .venv holds now (pip freeze), less the OpenCV duplicates and torch's
    +cpu/+cuXXX label; refused when a group file pins another version than the venv has."""
    py = venv_python()
    if not py.exists():
        print("lock: no .venv (run `python3 build.py setup` first)", file=sys.stderr)
        return 1
    freeze = subprocess.run([str(py), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
    pins = {}
    for line in freeze.splitlines():
        if "==" not in line:
            continue
        name, version = line.split("==", 1)
        key = name.lower().replace("_", "-")
        if key in OTHER_OPENCVS:
            continue
        pins[key] = f"{name}=={version.split('+', 1)[0]}"
    norm = lambda req: req.lower().replace("_", "-")  # noqa: E731 - pip's name normalisation
    wrong = [f"{g}: {req} (the venv has {pins.get(k, 'none')})" for g in GROUPS
             for k, req in _pins(ROOT / g).items() if norm(pins.get(k, "")) != norm(req)]
    if wrong:
        print("lock: install the group files' pins into .venv first:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    head = ("# Every package FaceForge installs, pinned: the closure of\n# " + ", ".join(GROUPS) + ",\n"
            "# as installed and tested together. build.py setup installs it with --no-deps (torch itself first);\n"
            "# opencv-python, which face-alignment asks for, is left out: opencv-contrib-python is the one OpenCV.\n"
            "# Written by `python3 build.py lock` from .venv; edit the group files, not this one.\n")
    LOCK.write_text(head + "".join(f"{pins[k]}\n" for k in sorted(pins)))
    print(f"lock: wrote {LOCK} ({len(pins)} packages)")
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
    if not argv or argv[0] not in {"setup", "setup-bpy42", "demo", "test", "bench", "package", "lock"}:
        print(__doc__)
        return 2
    cmd, extra = argv[0], argv[1:]
    if cmd == "setup" and extra[:1] == ["--venv"] and len(extra) == 2:
        return setup(Path(extra[1]).expanduser().absolute())
    handlers = {"setup": setup, "setup-bpy42": setup_bpy42, "demo": demo, "package": package, "lock": lock,
                "test": lambda: test(extra), "bench": lambda: bench(extra)}
    return handlers[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
