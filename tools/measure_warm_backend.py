"""First (cold) and second (warm) reconstruction through the add-on's own job runner, bpy module in this process:
the first starts the backend server (interpreter, torch / MediaPipe imports, model load), the second reuses it.

    .venv/bin/python tools/measure_warm_backend.py [photos...]     (default: tests/data/multiview-mvfnet, no texture)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv) -> int:
    import bpy

    import face_reconstruct_addon as addon
    from face_reconstruct_addon import client, jobs

    photos = [str(Path(p).absolute()) for p in argv] or [str(p) for p in sorted(
        (REPO / "tests" / "data" / "multiview-mvfnet").glob("*.jpg"))]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    s = bpy.context.scene.faceforge
    for p in photos:
        s.photos.add().filepath = p
    s.texture_size = "0"
    out = Path(tempfile.mkdtemp(prefix="faceforge-warm-"))
    times = []
    for i in range(2):
        s.output_dir = str(out / f"run{i}")
        r = jobs.Runner()
        t0 = time.monotonic()
        r.start(bpy.context)
        warm = r.job.warm
        state = r.run_blocking(bpy.context, timeout=1800)
        dt = time.monotonic() - t0
        assert state == jobs.FINISHED, r.error
        times.append(dt)
        print(f"job {i + 1}: {'warm' if warm else 'cold'} backend, {dt:.1f} s (pid {r.job.client.pid})", flush=True)
        # Where the backend's own time went (result.json timings_s; "other" = total less the named stages:
        # loading the photos and the same-person check).
        import json

        t = json.loads((r.output / "result.json").read_text()).get("timings_s", {})
        named = {k: float(t[k]) for k in ("detect", "fit", "texture", "export") if k in t}
        other = float(t.get("total", 0.0)) - sum(named.values())
        print(f"job {i + 1} stages: " + ", ".join(f"{k} {v:.1f}" for k, v in named.items())
              + f", other {other:.1f}, total {float(t.get('total', 0.0)):.1f} s", flush=True)
    print(f"second / first: {times[1] / times[0]:.2f}")
    client.shutdown_warm()
    addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
