"""Client for the backend's JSON-lines server (`python -m backend serve`, see backend/server.py).

Pure Python, no bpy: Blender's modal operator, the blocking background path, run.py and the tests all
drive this same class. Blender's Python has no torch, so reconstruction always happens in a separate
process (the backend's own virtualenv); this module starts it, reads its events on a thread so the
caller never blocks, and ends it (cancel, then terminate, then kill) so no orphan outlives a job.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from .shared import contract

PROTOCOL = contract.PROTOCOL  # what this add-on speaks; the backend announces its own in `ready`
# Lines on the backend's stderr that are never the reason it failed (native library chatter).
_STDERR_NOISE = ("W0000", "I0000", "INFO: Created TensorFlow", "WARNING: Logging before InitGoogle",
                 "WARNING: All log messages before absl")


class BackendError(Exception):
    """A failure to show the user as one line (code is the backend's error code)."""

    def __init__(self, message: str, code: str = "error"):
        super().__init__(message)
        self.code = code


def server_command(python: str, root: str) -> list[str]:
    """`-m backend serve`, the documented entry, where the backend folder declares it (its contract.py's
    CAPABILITIES); a backend older than contract.py is started as `-m backend.server`, which all have."""
    from .backend_paths import load_backend_module  # backend_paths imports this module

    theirs = load_backend_module("contract", root)
    if theirs is not None and "serve" in getattr(theirs, "CAPABILITIES", ()):
        return [python, "-u", "-m", "backend", "serve"]
    return [python, "-u", "-m", "backend.server"]


def backend_env(root: str) -> dict:
    # Blender's embedded Python exports PYTHONHOME/PYTHONPATH for itself; the backend's interpreter
    # must not inherit them or it would load Blender's stdlib.
    return contract.backend_env(root)


def protocol_problem(ready: dict, root: str) -> str | None:
    """Why the client cannot talk to the server that sent this `ready` event (one line), or None."""
    theirs = ready.get("protocol")
    if theirs == PROTOCOL:
        return None
    version = ready.get("backend_version") or "unknown"
    said = "announces no protocol version" if theirs is None else f"speaks protocol {theirs!r}"
    return (f"{root}: the backend (version {version}) {said}, this add-on speaks protocol {PROTOCOL}: "
            "install the add-on and the backend from the same FaceForge version")


class BackendClient:
    """One backend server process and its event stream."""

    def __init__(self, python: str, root: str, stderr_lines: int = 200):
        self.python, self.root = str(python), str(root)
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: deque = deque(maxlen=stderr_lines)
        self._next_id = 0
        self._threads: list[threading.Thread] = []
        self.ready_event: dict | None = None  # the server's "ready" line, once seen
        self.jobs_run = 0

    # -- process ---------------------------------------------------------------------------------
    def start(self) -> None:
        # Absolute paths in every message: a relative one says nothing about where it was looked for.
        self.python, self.root = os.path.abspath(self.python), os.path.abspath(self.root)
        if not Path(self.python).is_file():
            raise BackendError(f"{self.python}: backend Python not found (press Install backend in the add-on "
                               f"preferences, or set its path there)", "setup")
        if not (Path(self.root) / "backend" / "__init__.py").is_file():
            raise BackendError(f"{self.root}: no backend/ package here (set the backend folder in the "
                               f"add-on preferences)", "setup")
        kw = {}
        if os.name == "posix":
            kw["start_new_session"] = True  # its own process group, so we can end it with its children
        else:  # pragma: no cover - Windows
            kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        try:
            self.proc = subprocess.Popen(server_command(self.python, self.root), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.root,
                                         env=backend_env(self.root), text=True, encoding="utf-8",
                                         errors="replace", bufsize=1, **kw)
        except OSError as e:
            raise BackendError(f"{self.python}: cannot start the backend ({e.strerror or e})", "setup") from e
        for target in (self._read_stdout, self._read_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                # Not ours (a library printing to stdout): keep it for diagnostics only.
                self.stderr_tail.append(line)
                continue
            if isinstance(ev, dict):
                if ev.get("event") == "ready":
                    self.ready_event = ev
                self.events.put(ev)
        self.events.put({"event": "_eof"})

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: dict) -> bool:
        if not self.alive():
            return False
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def request(self, cmd: str, **fields) -> int:
        self._next_id += 1
        self.send({"id": self._next_id, "cmd": cmd, **fields})
        return self._next_id

    def poll(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def wait_event(self, timeout: float) -> dict | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def stderr_summary(self, n: int = 1, limit: int = 300) -> str:
        """The last `n` stderr lines worth showing a user: of a traceback only its final
        `Error: message` line (frames are indented), never native-library chatter."""
        lines = [ln.strip() for ln in self.stderr_tail
                 if ln.strip() and not ln[:1].isspace() and not ln.startswith("Traceback (most recent call")
                 and not ln.startswith(_STDERR_NOISE)]
        text = " | ".join(lines[-n:])
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def stop(self, grace: float = 5.0) -> int | None:
        """End the server: ask politely (shutdown, stdin closed), then SIGTERM, then SIGKILL the group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send({"cmd": "shutdown"})
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(3.0)
                except subprocess.TimeoutExpired:
                    self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
                    self.proc.wait(5.0)
        for t in self._threads:
            t.join(2.0)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            try:
                stream.close()
            except OSError:
                pass
        return self.proc.returncode

    def _signal(self, sig):
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)
            else:  # pragma: no cover
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass


class ReconstructJob:
    """One reconstruction request: start(), then poll() until `done`; cancel() at any time.

    State for a UI: stage, fraction, message; after the end: state in {"done", "error", "cancelled"},
    result (the server's result event) or error (one line).
    """

    def __init__(self, python: str, root: str, inputs: list[str], output: str, options: dict | None = None,
                 client: BackendClient | None = None, keep_alive: bool = False):
        """client: a running server to reuse (warm); keep_alive: leave the server running after a job that
        ended normally (done, a user error, or a cancel it answered), for the next job."""
        self.client = client or BackendClient(python, root)
        self.keep_alive = keep_alive
        self.warm = client is not None and client.alive()
        self.inputs, self.output, self.options = [str(p) for p in inputs], str(output), dict(options or {})
        self.state = "new"
        self.stage, self.fraction, self.message = "starting", 0.0, "Starting the backend"
        self.result: dict | None = None
        self.error: str | None = None
        self.error_code: str | None = None
        self.started_at = None
        self.request_id = None
        self.ready = False  # the server said "ready": a later exit is a crash, not a failed start
        self._cancel_sent_at = None
        self._swept = False
        self._answered = False  # the server sent this request's final event (result or error)

    @property
    def finished(self) -> bool:
        return self.state in {"done", "error", "cancelled"}

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.state = "running"
        if self.client.alive():
            self.client.poll()  # events left over from an earlier job on this server
            self.ready = self.client.ready_event is not None
        else:
            self.client.start()
        self.client.jobs_run += 1
        self.request_id = self.client.request("reconstruct", inputs=self.inputs, output=self.output,
                                              options=self.options)

    def poll(self) -> bool:
        """Handle pending events; True once the job has finished (the server is then stopped)."""
        if self.finished:
            return True
        for ev in self.client.poll():
            self._handle(ev)
            if self.finished:
                break
        if not self.finished and self._cancel_sent_at is not None:
            if time.monotonic() - self._cancel_sent_at > 10.0:  # backend ignores cancel: end it
                self._finish("cancelled", error="Cancelled")
        if self.finished:
            if not (self.keep_alive and self._reusable()):
                # After its final event the backend has nothing left to write; a clean interpreter exit
                # (torch and MediaPipe teardown) takes ~2 s that Blender's UI would sit frozen waiting
                # for, so it gets a moment and is then terminated.
                self.client.stop(grace=0.3)
            self._sweep()
        return self.finished

    def _reusable(self) -> bool:
        """The server is alive and idle: it sent this job's final event itself (not a crash or a forced end)."""
        return self.client.alive() and self.error_code not in ("crash", "timeout") and self._answered

    def _sweep(self) -> None:
        """A backend that died (or was ended) mid-write leaves its temp folder, or the earlier
        bundle moved aside, next to the output; put the earlier bundle back and remove the rest."""
        proc = self.client.proc
        if self._swept or self.state == "done" or proc is None or proc.returncode is None:
            return
        self._swept = True
        try:
            sweep_dead_writer(self.output, proc.pid, self.client.root)
        except OSError:
            pass

    def _handle(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "ready":
            problem = protocol_problem(ev, self.client.root)
            if problem is not None:  # its later messages may mean something else: nothing more is read
                self._finish("error", error=problem, code="setup")
                return
            self.ready = True
        elif kind == "progress" and ev.get("id") in (None, self.request_id):
            self.stage = str(ev.get("stage", self.stage))
            self.fraction = float(ev.get("fraction", self.fraction) or 0.0)
            self.message = str(ev.get("message", "") or self.stage)
        elif kind == "result" and ev.get("id") == self.request_id:
            self._answered = True
            if self._cancel_sent_at is not None:
                # Finished before it saw the cancel: the user still asked for nothing to be imported.
                self._finish("cancelled", error="Cancelled")
                return
            self.result = ev
            self.fraction, self.message = 1.0, "Done"
            self._finish("done")
        elif kind == "error" and ev.get("id") in (None, self.request_id):
            self._answered = ev.get("id") == self.request_id
            code = ev.get("code", "error")
            if code == "cancelled" or self._cancel_sent_at is not None:
                self._finish("cancelled", error="Cancelled")
            else:
                self._finish("error", error=str(ev.get("message") or "backend error"), code=code)
        elif kind == "_eof":
            if self._cancel_sent_at is not None:
                self._finish("cancelled", error="Cancelled")
            else:
                try:
                    rc = self.client.proc.wait(5.0) if self.client.proc else None
                except subprocess.TimeoutExpired:  # stdout closed but still running: stop() ends it
                    rc = None
                tail = self.client.stderr_summary()
                how = _exit_description(rc)
                if self.ready:
                    msg = f"backend exited unexpectedly during {self.stage} ({how})"
                else:  # never got going: most likely the interpreter is not the backend's
                    msg = f"{self.client.python}: backend failed to start ({how})"
                self._finish("error", error=msg + (f": {tail}" if tail else ""), code="crash")

    def _finish(self, state, error=None, code=None):
        self.state, self.error, self.error_code = state, error, code

    def cancel(self) -> None:
        """Ask the backend to stop; poll() ends it for good if it does not within 10 s."""
        if self.finished:  # keep the outcome (and its error) of a job that already ended
            return
        if self.state == "new":
            self.state = "cancelled"
            return
        if self._cancel_sent_at is None:
            self._cancel_sent_at = time.monotonic()
            self.message = "Cancelling"
            if not self.client.send({"id": self.request_id, "cmd": "cancel"}):
                self._finish("cancelled", error="Cancelled")

    def abort(self) -> None:
        """Cancel and wait until the process is gone (used on unregister / file load / errors)."""
        self.keep_alive = False
        self.cancel()
        deadline = time.monotonic() + 10.0
        while not self.poll() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.finished:
            self._finish("cancelled", error="Cancelled")
        self.client.stop(grace=1.0)
        self._sweep()

    def run_blocking(self, on_progress=None, timeout: float | None = None, poll_s: float = 0.1) -> dict:
        """Background-mode path: same events, same handling, just a loop instead of a UI timer."""
        if self.state == "new":
            self.start()
        last = None
        try:
            while not self.poll():
                if on_progress and (self.stage, round(self.fraction, 2)) != last:
                    last = (self.stage, round(self.fraction, 2))
                    on_progress(self.stage, self.fraction, self.message)
                if timeout is not None and time.monotonic() - self.started_at > timeout:
                    self.abort()
                    raise BackendError(f"backend did not finish within {timeout:.0f} s", "timeout")
                ev = self.client.wait_event(poll_s)
                if ev is not None:
                    self.client.events.put(ev)  # let poll() handle it in order
        except KeyboardInterrupt:
            self.abort()
            raise
        if self.state != "done":
            raise BackendError(self.error or self.state, self.error_code or self.state)
        return self.result


# -- the warm server ------------------------------------------------------------------------------
# One backend server per (python, root) stays running between jobs, so the second Reconstruct does not pay the
# interpreter start, the torch / MediaPipe imports and the model load again (tools/measure_warm_backend.py). It
# ends with the add-on (unregister), with Blender (atexit), or by itself when its stdin closes (Blender died).
_WARM: dict = {}
_WARM_LOCK = threading.Lock()


def warm_client(python: str, root: str) -> BackendClient | None:
    """The idle running server for this interpreter and backend folder, or None (the job then starts one)."""
    key = (os.path.abspath(python), os.path.abspath(root))
    with _WARM_LOCK:
        c = _WARM.get(key)
        if c is not None and not c.alive():
            c.stop(grace=0.1)
            del _WARM[key]
            c = None
        return c


def keep_warm(client: BackendClient) -> None:
    key = (os.path.abspath(client.python), os.path.abspath(client.root))
    with _WARM_LOCK:
        old = _WARM.get(key)
        if old is not None and old is not client:
            old.stop(grace=1.0)
        _WARM[key] = client


def shutdown_warm() -> int:
    """Stop every warm server; returns how many were running."""
    with _WARM_LOCK:
        clients = list(_WARM.values())
        _WARM.clear()
    n = 0
    for c in clients:
        if c.alive():
            n += 1
        c.stop(grace=2.0)
    return n


def warm_pids() -> list[int]:
    with _WARM_LOCK:
        return [c.pid for c in _WARM.values() if c.alive()]


atexit.register(shutdown_warm)


def _exit_description(rc) -> str:
    if rc is None:
        return "exit code unknown"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = "; out of memory?" if name == "SIGKILL" else ""
        return f"killed by {name}, exit code {rc}{hint}"
    return f"exit code {rc}"


# -- leftovers of a backend that died mid-write ---------------------------------------------------

def sweep_dead_writer(output: str | Path, pid: int, root: str | Path) -> None:
    """Undo what backend process `pid` (which must have ended) left half-done at `output`: the
    earlier bundle goes back into place if the new one never arrived, temp folders are removed.
    The lock protocol and the sweep are the backend's own (backend/output_dir.py, stdlib only)."""
    from .backend_paths import load_backend_module  # backend_paths imports this module

    output_dir = load_backend_module("output_dir", root)
    if output_dir is None or output_dir.pid_alive(pid):
        return
    output_dir.recover(output)


def check_backend(python: str, root: str, timeout: float = 60.0) -> dict:
    """Ask a fresh server what it can find (torch, mediapipe, weights). Blocking, a second or two."""
    client = BackendClient(python, root)
    client.start()
    try:
        rid = client.request("check")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = client.wait_event(0.2)
            if ev is None:
                continue
            if ev.get("event") == "ready" and (problem := protocol_problem(ev, root)) is not None:
                raise BackendError(problem, "setup")
            if ev.get("event") == "check" and ev.get("id") == rid:
                return ev
            if ev.get("event") == "error":
                raise BackendError(str(ev.get("message")), ev.get("code", "error"))
            if ev.get("event") == "_eof":
                raise BackendError("backend exited during the check: " + client.stderr_summary(), "crash")
        raise BackendError(f"backend check did not answer within {timeout:.0f} s", "timeout")
    finally:
        client.stop(grace=2.0)


def default_python(root: str | Path) -> Path:
    root = Path(root)
    if sys.platform == "win32":  # pragma: no cover
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"
