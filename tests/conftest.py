import os
import sys
from typing import Callable
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


def as_unprivileged(fn: Callable[[], object]) -> str:
    """str(fn()) computed in a forked child running as the unprivileged user nobody (uid/gid 65534), or
    "raised Type: message". Root ignores permission bits, so this is how a permission case is tested as
    root. Forked, not exec'd, because nobody may not reach the interpreter under /root; whatever fn touches
    must be reachable by nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                out = str(fn())
            except BaseException as e:
                out = f"raised {type(e).__name__}: {e}"
            data = out.encode()
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out
