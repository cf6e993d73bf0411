"""Sizes of one head's exports and the cold / warm Reconstruct times, written to docs/benchmarks.md.

    .venv/bin/python tools/measure_exports.py BUNDLE [--no-warm] [--no-write] [--work DIR]

For BUNDLE (a result folder, e.g. `python -m backend reconstruct tests/data/multiview-mvfnet/*.jpg --output B`):
`run.py --from-bundle BUNDLE --output h.blend --export-glb h.glb --export-fbx h.fbx` once per glTF morph-target
form (--glb-compression none, sparse (the default), draco), each in its own process, as a user runs it; then
tools/measure_warm_backend.py (first and second job through the add-on's runner). Section "## Blender exports"
of docs/benchmarks.md (bench/report.py write_section) gets the table and the commands.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _run(cmd) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(map(str, cmd[:3]))} failed (exit {proc.returncode}): "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return dt, proc.stdout + proc.stderr


def measure_exports(bundle: Path, work: Path) -> list[dict]:
    rows = []
    for form in ("none", "sparse", "draco"):
        out = work / form
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "run.py", "--from-bundle", bundle, "--output", out / "h.blend",
               "--export-glb", out / "h.glb", "--glb-compression", form, "--export-fbx", out / "h.fbx"]
        dt, _ = _run(cmd)
        rows.append({"form": form, "seconds": round(dt, 1), "blend": (out / "h.blend").stat().st_size,
                     "glb": (out / "h.glb").stat().st_size, "fbx": (out / "h.fbx").stat().st_size,
                     "glb_parts": {k: round(v, 2) for k, v in glb_parts(out / "h.glb").items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_warm(runs: int) -> dict:
    """tools/measure_warm_backend.py `runs` times (each a new process: a cold server, then a warm one)."""
    cold, warm = [], []
    for _ in range(runs):
        _, text = _run([sys.executable, REPO / "tools" / "measure_warm_backend.py"])
        jobs = [(m.group(1), float(m.group(2))) for m in re.finditer(r"job \d: (cold|warm) backend, ([\d.]+) s", text)]
        if [k for k, _ in jobs] != ["cold", "warm"]:
            raise SystemExit(f"error: tools/measure_warm_backend.py printed no cold + warm job: {text[-500:]}")
        cold.append(jobs[0][1])
        warm.append(jobs[1][1])
        stages = re.findall(r"job 2 stages: (.*)", text)
    return {"cold_s": cold, "warm_s": warm, "warm_stages": stages[-1] if stages else ""}


def glb_parts(path: Path) -> dict:
    """MB of the .glb by kind: morph-target positions and normals, textures, everything else."""
    data = path.read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    doc = json.loads(data[20:20 + n])
    views, accs = doc["bufferViews"], doc["accessors"]

    def size(i):
        a = accs[i]
        out = views[a["bufferView"]]["byteLength"] if "bufferView" in a else 0
        if "sparse" in a:
            out += sum(views[a["sparse"][k]["bufferView"]]["byteLength"] for k in ("indices", "values"))
        return out

    targets = {}
    for m in doc["meshes"]:
        for p in m["primitives"]:
            for t in p.get("targets", []):
                for k, i in t.items():
                    targets[i] = k
    pos = sum(size(i) for i, k in targets.items() if k == "POSITION")
    nrm = sum(size(i) for i, k in targets.items() if k == "NORMAL")
    tex = sum(views[im["bufferView"]]["byteLength"] for im in doc.get("images", []))
    return {"target_positions": pos / 1e6, "target_normals": nrm / 1e6, "textures": tex / 1e6,
            "rest": (len(data) - pos - nrm - tex) / 1e6}


def section(bundle: Path, rows: list[dict], warm: dict | None) -> list[str]:
    mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
    doc = json.loads((bundle / "result.json").read_text())
    tex = (doc.get("texture") or {}).get("size")
    lines = ["## Blender exports",
             f"One head: the three mvfnet sample photos (`{bundle.name}`, texture {tex or 'none'}), "
             f"{platform.machine()}, {os.cpu_count()} cores, bpy {_bpy_version()}. Each row is one "
             "`run.py --from-bundle B --output h.blend --export-glb h.glb --glb-compression FORM --export-fbx h.fbx` "
             "(the .blend packs its textures; the FBX embeds them; the .glb holds the head, eyes, teeth, tongue, "
             "their 52 ARKit morph targets each, the skin and the textures):",
             "",
             "| --glb-compression | .glb MB | of which morph positions / normals | textures | rest | .fbx MB "
             "| .blend MB | run.py s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["glb_parts"]
        lines.append(f"| {r['form']} | {mb(r['glb'])} | {g['target_positions']:.1f} / {g['target_normals']:.1f} | "
                     f"{g['textures']:.1f} | {g['rest']:.1f} | {mb(r['fbx'])} | {mb(r['blend'])} | {r['seconds']} |")
    lines += ["", "Sparse is the default (`--glb-compression`, the export button's Morph Targets): glTF viewers "
                  "and engines read it without an extension. draco compresses the base meshes only (Blender's "
                  "Draco encoder leaves morph targets out, so they stay sparse) and needs a decoder "
                  "(KHR_draco_mesh_compression). Morph normals are half of what the targets weigh."]
    if warm:
        c, w = warm["cold_s"], warm["warm_s"]
        span = lambda v: f"{min(v):.1f}-{max(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"  # noqa: E731
        lines += ["", f"Reconstruct through the add-on's job runner (`tools/measure_warm_backend.py`, {len(c)} runs: "
                      f"the three photos, no texture): first job {span(c)} s (a new backend server: interpreter, "
                      f"torch and MediaPipe imports, model load; the spread is the disk cache and the other "
                      f"sessions on the machine), second job {span(w)} s on the same warm server"
                      + (f" (the backend's own stages in the last one, s: {warm['warm_stages']}; other = loading "
                         "the photos and the same-person check)." if warm.get("warm_stages") else ".")]
    lines += ["", "`.venv/bin/python tools/measure_exports.py B` writes this section."]
    return lines


def _bpy_version() -> str:
    try:
        out = subprocess.run([sys.executable, "-c", "import bpy; print(bpy.app.version_string)"], cwd=REPO,
                             capture_output=True, text=True, timeout=120).stdout.strip().splitlines()
        return out[-1] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main(argv) -> int:
    ap = argparse.ArgumentParser(prog="measure_exports.py", description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--work", default="", help="folder for the exports (default: temporary)")
    ap.add_argument("--no-warm", action="store_true", help="skip the cold / warm job times")
    ap.add_argument("--warm-runs", type=int, default=3, help="times to run tools/measure_warm_backend.py")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = ap.parse_args(argv)
    bundle = Path(args.bundle).resolve()
    if not (bundle / "result.json").is_file():
        raise SystemExit(f"error: {bundle}: not a result folder (no result.json)")
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="faceforge-exports-"))
    rows = measure_exports(bundle, work)
    warm = None if args.no_warm else measure_warm(args.warm_runs)
    if warm:
        print(json.dumps(warm), flush=True)
    lines = section(bundle, rows, warm)
    if args.no_write:
        print("\n".join(lines))
    else:
        from bench.report import write_section

        write_section(REPO / "docs" / "benchmarks.md", lines)
        print(f"wrote section '{lines[0]}' of {REPO / 'docs' / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
