"""Renders of a saved FaceForge scene as an artist gets it: photos -> run.py -> .blend, then the .blend opened in a
fresh process and rendered on F12 as it was saved, plus a 3/4 view (docs/saved_scene_*.png).

    .venv/bin/python tools/render_saved_scene.py [photos...] [--out docs] [--work DIR] [--samples 16]
        [--max-size 560] [--texture-size 1024] [--name saved_scene]
    .venv/bin/python tools/render_saved_scene.py --render-only head.blend [--out docs] ...   (an existing .blend)
    .venv/bin/python tools/render_saved_scene.py --from-bundle RESULT_DIR [--out docs] ...  (an existing bundle)

Default photos: tests/data/multiview-mvfnet/*.jpg. Stage 1 runs run.py in a subprocess (the real backend, texture
baked, textures packed into the .blend). Stage 2 is another subprocess that opens the .blend and renders it with
the saved camera, lights, World, engine and colour management. Only two things are lowered so the render stays
cheap on a CPU (the saved scene asks for 1120 px for a 224 px photo): the resolution percentage (long side
--max-size) and, only when given, the sample count (--samples; saved: 64); the .blend is not re-saved.
The 3/4 view is a camera added in that process, 35 degrees to the subject's left and 10 degrees above the face,
framing the head.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse(argv):
    ap = argparse.ArgumentParser(prog="render_saved_scene.py", description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="*", help="photos of one face (default: tests/data/multiview-mvfnet/*.jpg)")
    ap.add_argument("--render-only", help="render this saved .blend (skip the reconstruction)")
    ap.add_argument("--from-bundle", help="make the .blend from this result bundle (run.py --from-bundle)")
    ap.add_argument("--out", default=str(REPO / "docs"), help="folder for the PNGs (default: docs/)")
    ap.add_argument("--work", default="", help="folder for the bundle and .blend (default: a temporary folder)")
    ap.add_argument("--name", default="saved_scene", help="PNG name prefix")
    ap.add_argument("--samples", type=int, default=0, help="Cycles samples (default: as saved)")
    ap.add_argument("--max-size", type=int, default=560, help="longest render side in pixels")
    ap.add_argument("--texture-size", type=int, default=1024, help="run.py --texture-size")
    ap.add_argument("--yaw", type=float, default=35.0, help="3/4 camera: degrees towards the subject's left")
    ap.add_argument("--pitch", type=float, default=10.0, help="3/4 camera: degrees above the face")
    return ap.parse_args(argv)


def reconstruct(args, work: Path) -> Path:
    photos = [str(Path(p).resolve()) for p in args.photos] or [
        str(p) for p in sorted((REPO / "tests" / "data" / "multiview-mvfnet").glob("*.jpg"))]
    blend = work / "head.blend"
    if args.from_bundle:
        photos = []
        cmd = [sys.executable, str(REPO / "run.py"), "--from-bundle", str(Path(args.from_bundle).resolve()),
               "--output", str(blend)]
    else:
        cmd = [sys.executable, str(REPO / "run.py"), "--images", *photos, "--output", str(blend),
               "--bundle", str(work / "bundle"), "--texture-size", str(args.texture_size)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: run.py failed (exit {proc.returncode}): "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    print(f"{'reconstructed %d photos' % len(photos) if photos else 'imported ' + args.from_bundle} -> {blend} "
          f"in {time.monotonic() - t0:.0f} s", flush=True)
    return blend


def render_in_fresh_process(args, blend: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--render-stage", str(blend), "--out", args.out,
           "--name", args.name, "--samples", str(args.samples), "--max-size", str(args.max_size),
           "--yaw", str(args.yaw), "--pitch", str(args.pitch)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"error: {blend}: render failed (exit {proc.returncode}): "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(lines[-1])


# --- stage 2: inside the fresh process ------------------------------------------------------------------------

def _scale_to(scene, max_size: int) -> None:
    r = scene.render
    long_side = max(r.resolution_x, r.resolution_y)
    r.resolution_percentage = max(1, min(100, int(100 * max_size / long_side)))


def _render(bpy, scene, path: Path) -> float:
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    t0 = time.monotonic()
    bpy.ops.render.render(write_still=True)
    return time.monotonic() - t0


def _head_box(rig):
    import numpy as np

    pts = []
    for ob in rig.children:
        if ob.type == "MESH" and ob.get("faceforge_part") == "head":
            co = np.zeros(len(ob.data.vertices) * 3, np.float32)
            ob.data.vertices.foreach_get("co", co)
            m = np.array(ob.matrix_world)
            pts.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
    pts = np.concatenate(pts)
    return pts.min(0), pts.max(0)


def _three_quarter_camera(bpy, scene, rig, yaw_deg: float, pitch_deg: float):
    """A camera `yaw_deg` towards the subject's left (+X in Blender; the face looks down -Y) and `pitch_deg` up,
    aimed a little above the middle of the head box (the box holds the neck too) and far enough for the box's
    height to fill about 85 % of the frame."""
    import numpy as np
    from mathutils import Vector

    lo, hi = _head_box(rig)
    centre = (lo + hi) / 2
    target = Vector((centre[0], centre[1], lo[2] + 0.55 * (hi[2] - lo[2])))
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    direction = Vector((math.sin(y) * math.cos(p), -math.cos(y) * math.cos(p), math.sin(p)))
    data = bpy.data.cameras.new("three_quarter")
    data.lens, data.sensor_width = 85.0, 36.0
    fov = 2 * math.atan(data.sensor_width / (2 * data.lens))
    size = float(np.max(hi - lo))
    dist = 0.5 * size / 0.85 / math.tan(fov / 2)
    obj = bpy.data.objects.new("three_quarter", data)
    scene.collection.objects.link(obj)
    obj.location = target + direction * dist
    obj.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    data.clip_start, data.clip_end = 0.05 * dist, 10 * dist
    return obj


def render_stage(args) -> dict:
    import bpy

    blend = Path(args.render_stage).resolve()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from face_reconstruct_addon.scene.rig import find_rig

    cam = scene.camera
    rig = find_rig(next(o for o in scene.objects if o.type == "MESH" and o.get("faceforge_part") == "head"))
    names = list(rig["faceforge_controls"])
    controls = {"n_controls": len(names), "max_abs": max(abs(float(rig[k])) for k in names),
                **{k: float(rig[k]) for k in ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")}}
    unpacked = [img.filepath for img in bpy.data.images if img.source == "FILE" and not img.packed_file]
    saved = {"engine": scene.render.engine, "samples": scene.cycles.samples, "device": scene.cycles.device,
             "view_transform": scene.view_settings.view_transform, "world": scene.world.name if scene.world else None,
             "lights": sum(o.type == "LIGHT" for o in scene.objects),
             "resolution": [scene.render.resolution_x, scene.render.resolution_y], "camera": cam.name if cam else None}
    if args.samples:
        scene.cycles.samples = args.samples
    scene.cycles.device = "CPU"
    _scale_to(scene, args.max_size)
    f12_size = [scene.render.resolution_x * scene.render.resolution_percentage // 100,
                scene.render.resolution_y * scene.render.resolution_percentage // 100]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    f12 = out / f"{args.name}_f12.png"
    t_f12 = _render(bpy, scene, f12)
    # The same settings through the 3/4 camera; square, as the head is about as wide as it is deep.
    scene.camera = _three_quarter_camera(bpy, scene, rig, args.yaw, args.pitch)
    scene.render.resolution_x = scene.render.resolution_y = args.max_size
    scene.render.resolution_percentage = 100
    tq = out / f"{args.name}_three_quarter.png"
    t_tq = _render(bpy, scene, tq)
    return {"blend": str(blend), "saved": saved, "controls_on_open": controls, "unpacked_images": unpacked,
            "renders": {str(f12): round(t_f12, 1), str(tq): round(t_tq, 1)},
            "rendered_with": {"samples": scene.cycles.samples, "device": "CPU", "f12_size": f12_size,
                              "three_quarter_size": [args.max_size, args.max_size]}}


def main(argv) -> int:
    if "--render-stage" in argv:
        i = argv.index("--render-stage")
        stage_argv = argv[:i] + argv[i + 2:]
        args = parse(stage_argv)
        args.render_stage = argv[i + 1]
        print(json.dumps(render_stage(args)), flush=True)
        return 0
    args = parse(argv)
    import tempfile

    if args.render_only:
        blend = Path(args.render_only).resolve()
    else:
        work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="faceforge-render-"))
        work.mkdir(parents=True, exist_ok=True)
        blend = reconstruct(args, work)
    info = render_in_fresh_process(args, blend)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
