"""JSON-lines server: `python -m backend serve` (also `python -m backend.server`).

The Blender add-on cannot import the backend (Blender's Python has no torch), so it starts this
server as a subprocess and talks to it with one JSON object per line.

Client -> server (stdin):
  {"id": 1, "cmd": "reconstruct", "inputs": [paths], "output": dir, "options": {landmarks, device,
   texture_size, texture, texture_hair, subject, landmarks_file, face_index, frame_step, max_frames,
   smoothing}}
                                    paths absolute; option types and ranges as backend/options.py, checked
                                    before any work (else a bad_request error); unknown options are ignored
  {"id": 1, "cmd": "cancel"}        cancel the running request (the bundle is then not written)
  {"id": 2, "cmd": "check"}         what this interpreter can find (torch, mediapipe, weights)
  {"id": 3, "cmd": "ping"}
  {"cmd": "shutdown"}               also implied by closing stdin
Server -> client (stdout):
  {"event": "ready", "protocol": contract.PROTOCOL, "backend_version", "pid"}
                                    the client refuses a server whose protocol is not its own
  {"event": "progress", "id", "stage", "fraction", "message"}
  {"event": "result", "id", "output": bundle dir, "subject", "n_views", "warnings", "timings_s"}
  {"event": "error", "id", "code", "message", "path"}     message is one line, naming the file
  {"event": "check", "id", "ok", "python", "packages", "torch", "cuda", "mediapipe", "weights", "problems"}
  {"event": "pong", "id"}

A line that is not UTF-8 or not a JSON object is answered with a bad_request error; the server keeps serving.
Only protocol lines go to stdout: file descriptor 1 is redirected to stderr at start-up, so any
library that prints (or C code writing to fd 1) cannot corrupt the stream. When stdin closes (the
client died), the running job is cancelled and the process exits, so no orphan is left behind.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import traceback

from . import __version__, paths
from .contract import PROTOCOL
from .errors import FaceForgeError

RECONSTRUCT_OPTIONS = {"landmarks", "landmarks_file", "device", "texture_size", "texture", "texture_hair", "subject",
                       "face_index", "frame_step", "max_frames", "smoothing"}


class Server:
    def __init__(self, out_stream, in_stream):
        self.out, self.inp = out_stream, in_stream
        self.lock = threading.Lock()
        self.worker: threading.Thread | None = None
        self.cancel_event = threading.Event()
        self.current_id = None
        self.running = False  # set by handle() before the worker starts, cleared before its final event

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self.lock:
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.cancel_event.set()  # nobody is listening any more

    # -- commands --------------------------------------------------------------------------------
    def handle(self, msg: dict) -> bool:
        """Process one request; False means shut down."""
        cmd, rid = msg.get("cmd"), msg.get("id")
        if cmd == "reconstruct":
            if self.running:
                self.emit("error", id=rid, code="busy", message="a reconstruction is already running", path=None)
            elif (problem := request_problem(msg)) is not None:
                self.emit("error", id=rid, code="bad_request", message=problem, path=None)
            else:
                self.cancel_event.clear()
                self.current_id, self.running = rid, True
                self.worker = threading.Thread(target=self._reconstruct, args=(rid, msg), daemon=True)
                self.worker.start()
        elif cmd == "cancel":
            if rid is None or rid == self.current_id:
                self.cancel_event.set()
        elif cmd == "check":
            self.emit("check", id=rid, **check_environment())
        elif cmd == "ping":
            self.emit("pong", id=rid)
        elif cmd == "shutdown":
            return False
        else:
            self.emit("error", id=rid, code="bad_request", message=f"unknown command {cmd!r}", path=None)
        return True

    def _reconstruct(self, rid, msg: dict) -> None:
        # the final event goes out only after the job is marked finished, so a request sent right after
        # it is never refused as busy
        final = None
        try:
            inputs = msg.get("inputs") or []
            output = msg.get("output")
            options = {k: v for k, v in (msg.get("options") or {}).items() if k in RECONSTRUCT_OPTIONS}

            def progress(stage, fraction, message=""):
                self.emit("progress", id=rid, stage=str(stage), fraction=float(fraction), message=str(message))

            self.emit("progress", id=rid, stage="load", fraction=0.0, message="Loading the backend")
            from . import pipeline  # imported here: torch takes seconds, the ready event should not wait

            result = pipeline.reconstruct([str(p) for p in inputs], str(output), progress=progress,
                                          cancel=self.cancel_event.is_set, **options)
            final = ("result", dict(id=rid, output=str(output), subject=result.get("subject"),
                                    n_views=len(result.get("views", [])), warnings=result.get("warnings", []),
                                    timings_s=result.get("timings_s", {})))
        except FaceForgeError as e:
            final = ("error", dict(id=rid, **e.to_json()))
        except Exception as e:  # a bug, not a user error: still one line for the user, traceback to stderr
            traceback.print_exc(file=sys.stderr)
            final = ("error", dict(id=rid, code="internal", path=None,
                                   message=f"internal error: {e.__class__.__name__}: {e}".splitlines()[0]))
        finally:
            self.current_id, self.running = None, False
            if final is not None:
                self.emit(final[0], **final[1])

    def serve(self) -> int:
        self.emit("ready", protocol=PROTOCOL, backend_version=__version__, pid=os.getpid())
        for line in self.inp:
            if isinstance(line, bytes):  # stdin is read as bytes: one bad byte must cost one request, not the server
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.emit("error", id=None, code="bad_request", path=None,
                              message=f"request is not valid UTF-8 (byte 0x{line[e.start]:02x} at position {e.start})")
                    continue
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.emit("error", id=None, code="bad_request", message=f"invalid JSON request ({e})", path=None)
                continue
            if not self.handle(msg):
                break
        # stdin closed or shutdown: stop whatever runs, give it a moment to clean its temp folder.
        self.cancel_event.set()
        if self.worker is not None:
            self.worker.join(30.0)
        return 0


def request_problem(msg: dict) -> str | None:
    """Why a reconstruct request cannot start (one line), checked before any work; None when it can.

    Paths must be absolute: the server's working folder is wherever the client started it (the add-on: the
    project root), never a place a user meant."""
    from .options import check_options
    from .errors import InputError

    inputs, output, options = msg.get("inputs") or [], msg.get("output"), msg.get("options") or {}
    if not isinstance(options, dict):
        return f"'options' must be an object (got {type(options).__name__})"
    if not isinstance(inputs, list) or (not inputs and not options.get("landmarks_file")) or not output:
        return "reconstruct needs 'inputs' (a list of paths) and 'output' (a folder)"
    if not isinstance(output, str) or not os.path.isabs(output):
        return f"'output' must be an absolute folder path (got {output!r})"
    for i, p in enumerate(inputs):
        if not isinstance(p, str) or not os.path.isabs(p):
            return f"'inputs[{i}]' must be an absolute file path (got {p!r})"
    lm = options.get("landmarks_file")
    if isinstance(lm, str) and not os.path.isabs(lm):
        return f"'options.landmarks_file' must be an absolute file path (got {lm!r})"
    try:
        check_options({k: v for k, v in options.items() if k in RECONSTRUCT_OPTIONS},
                      name=lambda k: f"'options.{k}'")
    except InputError as e:
        return str(e)
    return None


def check_environment() -> dict:
    """What a user must fix before reconstructing: backend.health.check() (imports the packages,
    verifies the weights' checksums) plus the interpreter path and one line per problem."""
    from .health import check

    report = check()
    problems = [f"{name}: {v}" for name, v in report.get("packages", {}).items() if str(v).startswith("missing")]
    problems += [f"weights {name}: {v}" for name, v in report.get("weights", {}).items() if v != "ok"]
    if not report.get("weights"):
        problems.append(f"no weight checksums found under {paths.WEIGHTS_DIR} (run `python build.py setup`)")
    pk = report.get("packages", {})
    return {**report, "python": sys.executable, "backend_version": __version__, "torch": _version(pk.get("torch")),
            "mediapipe": _version(pk.get("mediapipe")), "weights_dir": str(paths.WEIGHTS_DIR), "problems": problems}


def _version(v):
    return None if v is None or str(v).startswith("missing") else str(v)


def _protocol_stdout():
    """Keep fd 1 for the protocol only: dup it away, then point fd 1 (and sys.stdout) at stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    out = _protocol_stdout()
    inp = open(sys.stdin.fileno(), "rb", closefd=False)
    return Server(out, inp).serve()


if __name__ == "__main__":
    sys.exit(main())
