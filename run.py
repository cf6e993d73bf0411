"""Photos or a video -> rigged head .blend (and .glb / Live Link Face .csv), headless.

    blender -b -P run.py -- --images A.jpg B.jpg --output head.blend [--glb head.glb]
    python run.py --images A.jpg B.jpg --output head.blend [--glb head.glb]    (bpy module)
    python run.py --from-bundle RESULT_DIR --output head.blend [--export-glb head.glb] [--export-fbx head.fbx]
        [--export-csv take.csv] [--transfer-from OTHER_BUNDLE_OR_TAKE.csv] [--view NAME|INDEX] [--link-textures]

Runs the same client and importer as the add-on's Reconstruct button (backend in a subprocess,
result bundle imported into a fresh scene); --images also takes a video file (the backend tracks it).
The saved scene opens neutral, looking through the first view's camera (--view: another), lit and set to
render; its textures and photos are packed into it (--link-textures: kept as paths into the bundle).
--from-bundle imports an existing result bundle instead of running the backend. Exit code 0 on
success; otherwise one line on stderr ("error: <file>: <what is wrong>") and 1 (2 bad input, 3 setup,
4 output, 130 cancelled).
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
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="photos (files and/or folders) or one video of one face")
    src.add_argument("--from-bundle", help="import this existing result folder instead of reconstructing")
    ap.add_argument("--output", required=True, help=".blend file to write")
    ap.add_argument("--glb", "--export-glb", dest="glb",
                    help="also export a binary glTF: ARKit-named morph targets, skin and the animation")
    ap.add_argument("--glb-compression", choices=["none", "sparse", "draco"], default="sparse",
                    help="the .glb's meshes: morph targets dense, sparse accessors (default), or sparse with the "
                         "base meshes Draco-compressed (Blender's Draco encoder leaves morph targets out)")
    ap.add_argument("--export-fbx", help="also export the head as FBX (Unreal / Unity): ARKit-named blend shapes")
    ap.add_argument("--export-csv", help="also write the expression animation as a Live Link Face CSV")
    ap.add_argument("--view", default="", help="the view camera the saved scene looks through (name or index; "
                                               "default: the first)")
    ap.add_argument("--link-textures", action="store_true",
                    help="keep textures and photos as paths into the bundle instead of packing them into the .blend")
    ap.add_argument("--transfer-from", help="before saving, key this result bundle's animation (or its first "
                                            "view) or this Live Link Face CSV onto the head")
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


def _shared():
    """face_reconstruct_addon/shared.py by path: importing the package would import bpy, which this
    script loads only after its arguments are checked."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("faceforge_run_shared", REPO / "face_reconstruct_addon" / "shared.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expand_images(items) -> list[str]:
    exts = _shared().contract.IMAGE_EXTENSIONS  # the backend's own set, HEIC included
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
    images = expand_images(args.images) if args.images else []
    from_bundle = Path(args.from_bundle).expanduser().resolve() if args.from_bundle else None
    if from_bundle is not None and not (from_bundle / "result.json").is_file() and from_bundle.name != "result.json":
        raise RunError(f"{from_bundle}: not a result folder (no result.json)", "bad_input")
    transfer_from = Path(args.transfer_from).expanduser().resolve() if args.transfer_from else None
    if transfer_from is not None and not transfer_from.exists():
        raise RunError(f"{transfer_from}: no such file or folder", "bad_input")
    output = Path(args.output).expanduser().resolve()
    if output.suffix.lower() != ".blend":
        raise RunError(f"{output}: --output must end in .blend", "bad_input")
    extra = (args.glb, args.render, args.export_csv, args.export_fbx)
    for target in [output] + [Path(p).expanduser().resolve() for p in extra if p]:
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
    from face_reconstruct_addon import animation, importer, jobs
    from face_reconstruct_addon.shared import check_bundle, contract

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not hasattr(bpy.types.Scene, "faceforge"):
        addon.register()
    try:
        if from_bundle is not None:
            try:
                check_bundle(from_bundle)
                imported = importer.import_bundle(from_bundle, pack_textures=not args.link_textures)
            except (importer.BundleError, contract.ResultSchemaError) as e:
                raise RunError(str(e), "bad_input") from e
        else:
            imported = _reconstruct(args, images, bpy, jobs)
        _choose_view(imported, args.view, bpy)
        for w in (imported.get("animation") or {}).get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        if transfer_from is not None:
            _transfer(transfer_from, imported, bpy)
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(output), check_existing=False)
        except RuntimeError as e:
            raise RunError(f"{output}: cannot save ({str(e).strip().splitlines()[-1]})", "output") from e
        print(f"saved {output}", file=sys.stderr)
        if args.glb:
            glb = Path(args.glb).expanduser().resolve()
            try:
                size = animation.export_glb(glb, bpy.context.scene, rig=imported["rig"],
                                            draco=args.glb_compression == "draco",
                                            sparse=args.glb_compression in ("sparse", "draco"))
            except RuntimeError as e:
                raise RunError(f"{glb}: glTF export failed ({str(e).strip().splitlines()[-1]})", "output") from e
            print(f"saved {glb} ({size / 1e6:.1f} MB)", file=sys.stderr)
        if args.export_fbx:
            fbx = Path(args.export_fbx).expanduser().resolve()
            try:
                size = animation.export_fbx(fbx, bpy.context.scene, imported["rig"])
            except RuntimeError as e:
                raise RunError(f"{fbx}: FBX export failed ({str(e).strip().splitlines()[-1]})", "output") from e
            print(f"saved {fbx} ({size / 1e6:.1f} MB)", file=sys.stderr)
        if args.export_csv:
            csv_path = Path(args.export_csv).expanduser().resolve()
            try:
                n = animation.export_csv(imported["rig"], csv_path, bpy.context.scene)
            except OSError as e:
                raise RunError(f"{csv_path}: cannot write ({e.strerror or e})", "output") from e
            print(f"saved {csv_path} ({n} frames)", file=sys.stderr)
        if args.render and imported["cameras"]:
            from face_reconstruct_addon import render

            cam = bpy.context.scene.camera if bpy.context.scene.camera in imported["cameras"] else imported["cameras"][0]
            path = render.render_view(imported["rig"], cam, args.render)
            print(f"saved {path}", file=sys.stderr)
    finally:
        jobs.abort_active()


def _choose_view(imported: dict, view: str, bpy) -> None:
    """Look through the chosen view's camera; the head stays neutral (Fitted Views applies a view's expression)."""
    from face_reconstruct_addon import importer

    cams = imported["cameras"]
    if not view or not cams:
        return
    cam = next((c for c in cams if c.name.endswith("_cam_" + view)), None)
    if cam is None and view.isdigit() and int(view) < len(cams):
        cam = cams[int(view)]
    if cam is None:
        names = ", ".join(c.name.rsplit("_cam_", 1)[-1] for c in cams)
        raise RunError(f"--view {view}: no such view (the views are {names})", "bad_input")
    importer.apply_view(imported["rig"], cam, bpy.context.scene, expression=False)


def _transfer(source: Path, imported: dict, bpy) -> None:
    """Key another result's animation (or first view) or a Live Link Face CSV onto the imported head."""
    from face_reconstruct_addon import importer, transfer
    from face_reconstruct_addon.shared import check_bundle, contract

    scene = bpy.context.scene
    try:
        if source.suffix.lower() == ".csv":
            src = transfer.source_from_csv(source, scene)
        else:
            try:
                check_bundle(source)
                other = importer.import_bundle(source, apply_view_index=None)
            except (importer.BundleError, contract.ResultSchemaError) as e:
                raise RunError(str(e), "bad_input") from e
            mode = transfer.ACTION_MODE if other.get("animation") else transfer.VIEW_MODE
            src = transfer.source_from_head(other["rig"], mode, 0, scene)
        result = transfer.transfer(src, imported["rig"], scene)
    except transfer.TransferError as e:
        raise RunError(f"{source}: {e}", "bad_input") from e
    print(f"transferred {transfer.summary(result)}", file=sys.stderr)


def _reconstruct(args, images, bpy, jobs) -> dict:
    from face_reconstruct_addon import backend_paths

    scene = bpy.context.scene
    s = scene.faceforge
    for p in images:
        s.photos.add().filepath = p
    s.landmarks, s.device, s.subject = args.landmarks, args.device, args.subject
    s.texture_size = str(args.texture_size) if str(args.texture_size) in {"0", "512", "1024", "2048", "4096"} \
        else "2048"
    python, root, _ = backend_paths.resolve(args.python, args.backend_root)
    s.pack_textures = not args.link_textures
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
    return runner.imported


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
