"""Pre-seed a torch hub cache with a FAN weights file that face_alignment loads through its real path.

The network is face_alignment's own FAN(4) with random (seeded) weights, saved as
the state dict that FaceAlignment._load_native reads with torch.load(weights_only=True),
under the file name of the package's download URL. It proves the loading path and the
box/crop/heatmap plumbing, NOT landmark accuracy: its points are noise inside the crop.

    python tests/make_fan_cache.py /tmp/torch_home   # then TORCH_HOME=/tmp/torch_home
"""
from __future__ import annotations

import sys
from pathlib import Path


def seed_fan_cache(hub_dir, seed: int = 0) -> Path:
    """Write <hub_dir>/checkpoints/<FAN file name> and return its path (hub_dir = torch.hub.get_dir())."""
    import torch
    from face_alignment.models import FAN

    from backend.landmarks.fan import weights_path

    torch.manual_seed(seed)
    net = FAN(4)
    target = weights_path(hub_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), target)
    return target


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    home = Path(sys.argv[1] if len(sys.argv) > 1 else "torch_home")
    print(seed_fan_cache(home / "hub"))
