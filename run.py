"""Photos -> rigged head .blend (and .glb), headless.

    blender -b -P run.py -- --images A.jpg B.jpg --output head.blend [--glb head.glb]
    python run.py --images A.jpg B.jpg --output head.blend [--glb head.glb]    (bpy module)

Runs the same client and importer as the add-on's Reconstruct button (backend in a subprocess,
result bundle imported into a fresh scene). Exit code 0 on success; otherwise one line on stderr
("error: <file>: <what is wrong>") and 1 (2 bad input, 3 setup, 4 output, 130 cancelled).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
EXIT_CODES = {"bad_input": 2, "no_face": 2, "setup": 3, "output": 4, "cancelled": 130}


class RunError(Exception):
    def __init__(self, message, code="error"):
        super().__init__(message)
        self.code = code


def script_args(argv: list[str]) -> list[str]:
    # Inside Blender everything before `--` belongs to Blender.
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def parse(argv):
    ap = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="+", required=True, help="photos (files and/or folders) of one face")
    ap.add_argument("--output", required=True, help=".blend file to write")
    ap.add_argument("--glb", help="also export a binary glTF with shape keys and skin")
    ap.add_argument("--bundle", help="keep the result bundle in this folder (default: temporary, photos packed)")
    ap.add_argument("--render", help="also render the first view (Workbench) to this PNG")
    ap.add_argument("--landmarks", choices=["mediapipe", "fan"], default="mediapipe")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--texture-size", type=int, default=2048, help="0: no texture")
    ap.add_argument("--subject", default="", help="collection name (default: first photo's name)")
    ap.add_argument("--python", default="", help="backend Python (default: FACEFORGE_PYTHON or <repo>/.venv)")
    ap.add_argument("--backend-root", default="", help="folder containing backend/ (default: this repo)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before giving up on the backend")
    return ap.parse_args(argv)


def expand_images(items) -> list[str]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    out = []
    for it in items:
        p = Path(it).expanduser().resolve()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in exts)
            if not found:
                raise RunError(f"{p}: no images in this folder", "bad_input")
            out += [str(q) for q in found]
        elif p.is_file():
            out.append(str(p))
        else:
            raise RunError(f"{p}: no such file or folder", "bad_input")
    return out


def run(args) -> None:
    images = expand_images(args.images)
    output = Path(args.output).expanduser().resolve()
    if output.suffix.lower() != ".blend":
        raise RunError(f"{output}: --output must end in .blend", "bad_input")
    for target in [output] + [Path(p).expanduser().resolve() for p in (args.glb, args.render) if p]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"{target.parent}: cannot create the output folder ({e.strerror or e})", "output") from e
        if not os.access(target.parent, os.W_OK):
            raise RunError(f"{target.parent}: output folder is not writable", "output")

    import bpy

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import face_reconstruct_addon as addon
    from face_reconstruct_addon import backend_paths, compat, jobs

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not hasattr(bpy.types.Scene, "faceforge"):
        addon.register()
    try:
        scene = bpy.context.scene
        s = scene.faceforge
        for p in images:
            s.photos.add().filepath = p
        s.landmarks, s.device, s.subject = args.landmarks, args.device, args.subject
        s.texture_size = str(args.texture_size) if str(args.texture_size) in {"0", "512", "1024", "2048", "4096"} \
            else "2048"
        python, root, _ = backend_paths.resolve(args.python, args.backend_root)
        runner = jobs.Runner()
        try:
            runner.start(bpy.context, python=python, root=root,
                         output=str(Path(args.bundle).expanduser().resolve()) if args.bundle else None)
        except jobs.BackendError as e:
            raise RunError(str(e), e.code) from e

        def progress(stage, fraction, message):
            print(f"[{stage:8s} {fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

        state = runner.run_blocking(bpy.context, on_progress=progress, timeout=args.timeout)
        if state != jobs.FINISHED:
            code = "cancelled" if state == jobs.CANCELLED else (runner.job.error_code or "error")
            raise RunError(runner.error or state.lower(), code)
        imported = runner.imported
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(output), check_existing=False)
        except RuntimeError as e:
            raise RunError(f"{output}: cannot save ({str(e).strip().splitlines()[-1]})", "output") from e
        print(f"saved {output}", file=sys.stderr)
        if args.glb:
            glb = Path(args.glb).expanduser().resolve()
            try:
                compat.export_glb(str(glb))
            except RuntimeError as e:
                raise RunError(f"{glb}: glTF export failed ({str(e).strip().splitlines()[-1]})", "output") from e
            print(f"saved {glb}", file=sys.stderr)
        if args.render and imported["cameras"]:
            from face_reconstruct_addon import render

            path = render.render_view(imported["rig"], imported["cameras"][0], args.render)
            print(f"saved {path}", file=sys.stderr)
    finally:
        jobs.abort_active()


def main(argv=None) -> int:
    argv = sys.argv if argv is None else argv
    try:
        args = parse(script_args(argv))
    except SystemExit as e:  # argparse already printed its one-line usage error
        return int(e.code or 0) and 2
    try:
        run(args)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_CODES.get(e.code, 1)
    except KeyboardInterrupt:
        print("error: cancelled", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # a bug: still one line for scripts, the type name helps a report
        print(f"error: internal error: {e.__class__.__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}",
              file=sys.stderr, flush=True)
        if os.environ.get("FACEFORGE_DEBUG"):
            raise
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # In `blender -b -P run.py`, SystemExit ends Blender with this code (Blender would otherwise exit 0).
    sys.exit(code)
