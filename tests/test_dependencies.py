"""The environment build.py setup makes is the one requirements.lock describes: one OpenCV, every pin as
locked, every group file's pin in the lock, and nothing missing that an installed package needs (the lock is
installed with --no-deps, so a forgotten dependency would show only here or at an import)."""
from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys

from tests.conftest import ROOT

GROUPS = ("requirements.txt", "requirements-dev.txt", "requirements-bench.txt", "requirements-ray.txt")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path) -> dict[str, str]:
    out = {}
    for line in (ROOT / path).read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req:
            name, version = req.split("==")
            out[_norm(name)] = version.strip()
    return out


def test_exactly_one_opencv_distribution_provides_cv2():
    """opencv-python (face-alignment's) and opencv-contrib-python (mediapipe's) both write cv2/: with both
    installed the last one installed wins file by file, and uninstalling either breaks the other."""
    import cv2

    owners = sorted({_norm(d.metadata["Name"]) for d in md.distributions()
                     if any(f.parts[:1] == ("cv2",) for f in (d.files or ()))})
    assert owners == ["opencv-contrib-python"]
    assert cv2.__version__ == _pins("requirements.lock")["opencv-contrib-python"].rsplit(".", 1)[0]


def test_every_group_pin_is_the_locked_one():
    lock = _pins("requirements.lock")
    for group in GROUPS:
        for name, version in _pins(group).items():
            assert lock.get(name) == version, f"{group}: {name}=={version}, requirements.lock has {lock.get(name)}"


def test_installed_versions_are_the_locked_ones():
    """torch's build label (+cpu, +cu128) is the wheel index's, not part of the pin."""
    wrong = {}
    for name, version in _pins("requirements.lock").items():
        try:
            have = md.version(name).split("+", 1)[0]
        except md.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert wrong == {}, "run `python3 build.py setup` (locked, installed): " + repr(wrong)


# What pip check reports that is expected: face-alignment's declared opencv-python is left out on purpose (the
# test above), and pip's platform check does not know the manylinux tag of the bpy wheel it installed itself.
KNOWN = ("face-alignment 1.5.0 requires opencv-python, which is not installed.",
         "bpy 5.0.1 is not supported on this platform")


def test_nothing_an_installed_package_needs_is_missing():
    out = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"], capture_output=True,
                         text=True, timeout=120)
    problems = [ln.strip() for ln in out.stdout.splitlines() if ln.strip() and ln.strip() not in KNOWN]
    assert problems == [], out.stdout
