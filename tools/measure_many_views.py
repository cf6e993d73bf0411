"""Time and peak memory of a job with many photos of one person (the same-person check once refitted every view
per view: 200 photos ran over 10 minutes at 1.9 GB and could not be cancelled).

    .venv/bin/python tools/measure_many_views.py [--views 200]

Writes a landmarks file of N synthetic views (bench/synthetic.py, iBUG-68, 1 px noise, yaw +-50 deg) and runs
`python -m backend reconstruct --landmarks-file ... --no-texture` in a fresh interpreter: wall time, the job's own
stage times and its peak resident memory (VmHWM of the child).

Measured (2-core CPU, load ~4 from a test run beside it): 200 views: wall 132.4 s, peak RSS 607 MiB, stages fit
41.0 s, total 131.7 s (the rest is the same-person check on 64 views spread over head pose); one warning: "200
photos: the same-person check used 64 of them, spread over head pose".
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from backend.face_model import load_face_model
    from backend.fit import landmark_spec
    from bench.synthetic import make_scene

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=200)
    n = ap.parse_args(argv).views
    model = load_face_model()
    rng = np.random.default_rng(0)
    scene = make_scene(rng, model, landmark_spec("ibug68", model), list(rng.uniform(-50, 50, n)),
                       pitches=list(rng.uniform(-10, 10, n)), noise_px=1.0, size=512)
    with tempfile.TemporaryDirectory() as d:
        lm = Path(d) / "many.json"
        lm.write_text(json.dumps({"format": "ibug68", "images": [
            {"name": f"v{i:03d}", "points": v["points"].tolist(), "width": 512, "height": 512}
            for i, v in enumerate(scene["views"])]}))
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "backend", "reconstruct", "--landmarks-file", str(lm), "--output",
                            str(Path(d) / "out"), "--no-texture"], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if p.returncode != 0:
            print(p.stderr)
            return p.returncode
        doc = json.loads((Path(d) / "out" / "result.json").read_text())
    print(f"{n} views: wall {wall:.1f} s, peak RSS {peak:.0f} MiB, stages (s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in doc["timings_s"].items()))
    print("warnings: " + " | ".join(doc["warnings"][:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
