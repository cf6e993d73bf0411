"""What the add-on's 'Check backend' button reports: packages importable, weights present and intact."""
from __future__ import annotations

import hashlib
import importlib
import json

from . import paths

# sha256 of the bundled weights; a mismatch means a damaged or swapped file
WEIGHT_CHECKSUMS_FILE = paths.WEIGHTS_DIR / "checksums.json"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_weights() -> dict[str, str]:
    """name -> 'ok' | 'missing' | 'corrupt (checksum mismatch)'."""
    sums = json.loads(WEIGHT_CHECKSUMS_FILE.read_text()) if WEIGHT_CHECKSUMS_FILE.is_file() else {}
    out = {}
    for rel, digest in sums.items():
        p = paths.WEIGHTS_DIR / rel
        out[rel] = "missing" if not p.is_file() else ("ok" if file_sha256(p) == digest else
                                                      "corrupt (checksum mismatch)")
    return out


def check() -> dict:
    pkgs = {}
    for name in ("numpy", "scipy", "torch", "cv2", "mediapipe", "PIL"):  # runtime only (requirements.txt)
        try:
            m = importlib.import_module(name)
            pkgs[name] = getattr(m, "__version__", "ok")
        except Exception as e:  # any import failure means the backend cannot run
            pkgs[name] = f"missing ({e.__class__.__name__}: {e})"
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    weights = verify_weights()
    ok = all(not str(v).startswith("missing") for v in pkgs.values()) and all(v == "ok" for v in weights.values()) \
        and bool(weights)
    return {"ok": ok, "packages": pkgs, "weights": weights, "cuda": cuda}
