import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")  # quiet MediaPipe's C++ logging in test output


@pytest.fixture(scope="session")
def model():
    from backend.face_model import load_face_model

    return load_face_model()


@pytest.fixture(scope="session")
def mp_detector():
    from backend.landmarks.mediapipe_detector import MediaPipeDetector

    d = MediaPipeDetector()
    yield d
    d.close()


@pytest.fixture(scope="session")
def mvfnet_bundle(tmp_path_factory):
    """The three mvfnet photos reconstructed once through the real CLI in a subprocess (no texture)."""
    import subprocess

    out = tmp_path_factory.mktemp("mvfnet") / "bundle"
    imgs = [str(DATA / "multiview-mvfnet" / f) for f in ("left.jpg", "front.jpg", "right.jpg")]
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", *imgs, "--output", str(out),
                           "--no-texture"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc
