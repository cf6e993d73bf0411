"""Command line: `python -m backend reconstruct ...`, `python -m backend batch ...`, `python -m backend serve`,
`python -m backend check`."""
from __future__ import annotations

import argparse
import json
import sys


def _reconstruct_args(sub):
    p = sub.add_parser("reconstruct", help="photos of one person, or one video -> result bundle")
    p.add_argument("inputs", nargs="*", help="image files and/or folders of images, or one video file")
    p.add_argument("--output", "-o", required=True, help="result bundle folder to write")
    p.add_argument("--landmarks", choices=["mediapipe", "fan"], default="mediapipe",
                   help="landmark detector (fan needs face-alignment's weights, see README)")
    p.add_argument("--landmarks-file", help="fit these 2D landmarks instead of detecting (JSON, see README)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--texture-size", type=int, default=2048)
    p.add_argument("--no-texture", action="store_true", help="skip texture baking")
    p.add_argument("--texture-hair", choices=["remove", "keep"], default="remove",
                   help="remove: skin over the scalp, hair only in hair_mask.png (default); keep: the photos' hair "
                        "in the albedo too, through the hair mask")
    p.add_argument("--subject", help="name of the subject (Blender collection name)")
    p.add_argument("--face-index", type=int, help="with several faces in a photo: 0 = largest, 1 = next...")
    v = p.add_argument_group("video (one video file as input: identity from a few frames, every frame tracked)")
    v.add_argument("--frame-step", type=int, help="track every N-th frame (default: keep at most 30 frames/s)")
    v.add_argument("--max-frames", type=int, help="stop after this many tracked frames")
    v.add_argument("--smoothing", type=float,
                   help="temporal smoothing of pose and expression, 0 = none (default 1.0: halves the amplitude of "
                        "5 Hz motion, keeps 97 %% of 2 Hz; the same in Hz at any frame rate)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _batch_args(sub):
    from .batch.cli import add_parser

    return add_parser(sub)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend", description="FaceForge compute backend")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _reconstruct_args(sub)
    _batch_args(sub)
    s = sub.add_parser("serve", help="JSON-lines server on stdin/stdout (used by the Blender add-on)")
    s.add_argument("--debug", action="store_true")
    c = sub.add_parser("check", help="report whether packages and weights are present (JSON)")
    c.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)

    from .errors import FaceForgeError

    try:
        if args.cmd == "serve":
            from .server import main as serve

            return serve() or 0
        if args.cmd == "check":
            from .health import check

            report = check()
            print(json.dumps(report, indent=1))
            return 0 if report["ok"] else 3
        if args.cmd == "batch":
            from .batch.cli import main as batch

            return batch(args)
        from .pipeline import reconstruct

        last = {}

        def progress(stage, fraction, message=""):
            # one line per stage step of 10 %, not one per solver iteration
            step = int(fraction * 10)
            if not args.quiet and last.get(stage) != step:
                last[stage] = step
                print(f"[{stage:7s} {100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)

        result = reconstruct(args.inputs, args.output, landmarks=args.landmarks, landmarks_file=args.landmarks_file,
                             device=args.device, texture_size=args.texture_size, texture=not args.no_texture,
                             texture_hair=args.texture_hair,
                             subject=args.subject, face_index=args.face_index, progress=progress,
                             frame_step=args.frame_step, max_frames=args.max_frames, smoothing=args.smoothing)
        for w in result["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        if not args.quiet:
            t = result["timings_s"]
            print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()), file=sys.stderr)
            for v in result["views"]:
                c = v["camera"]
                print(f"  {v['name']}: yaw {c['yaw_deg']:+.1f} pitch {c['pitch_deg']:+.1f} focal {c['fx']:.0f}px, "
                      f"landmark error median {v['reprojection_error_px']['median']:.2f}px "
                      f"({100 * v['reprojection_error_px']['median'] / v['interocular_px']:.2f}% of eye distance)",
                      file=sys.stderr)
        print(args.output)
        return 0
    except FaceForgeError as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: cancelled", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (try smaller images or fewer views)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: say so in one line, details with --debug
        if getattr(args, "debug", False):
            raise
        print(f"error: internal error ({e.__class__.__name__}: {e}); rerun with --debug and report it",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
