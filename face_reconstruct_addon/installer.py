"""The add-on's "Install backend" button: the same set-up as `python3 build.py setup`, run from Blender.

No bpy here. It runs the backend folder's own build.py (`setup --venv DIR`) with Blender's Python (3.11, the
version the pinned wheels need) in a subprocess, reads its lines on a thread for the progress bar, and ends with
one line that names the environment and the backend folder by absolute path, the cause (pip's last ERROR line)
and the log file that holds the whole output (<env>-setup.log beside the environment).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

_STEP = re.compile(r"^setup: step (\d+)/(\d+): (.*)$")


class Install:
    def __init__(self, root, venv_dir, python: str | None = None):
        self.root = Path(root).absolute()
        self.venv_dir = Path(venv_dir).absolute()
        self.python = str(Path(python or sys.executable).absolute())
        self.proc: subprocess.Popen | None = None
        self.fraction, self.message = 0.0, "Starting"
        self.lines: deque = deque(maxlen=200)
        self.log_path = self.venv_dir.with_name(self.venv_dir.name + "-setup.log")
        self.state = "new"          # running, done, error, cancelled
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def problem(self) -> str | None:
        build = self.root / "build.py"
        if not build.is_file():
            return f"{build}: not found (the backend folder must hold build.py)"
        if not Path(self.python).is_file():
            return f"{self.python}: no Python to run the set-up with"
        parent = self.venv_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"{parent}: cannot create the folder for the backend environment ({e.strerror or e})"
        if not os.access(parent, os.W_OK):
            return f"{parent}: not writable, so the backend environment {self.venv_dir} cannot be made there"
        return None

    def start(self) -> None:
        problem = self.problem()
        if problem:
            self.state, self.error = "error", problem
            return
        env = dict(os.environ)
        for k in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP"):  # Blender's, not the set-up's
            env.pop(k, None)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._log = open(self.log_path, "w", encoding="utf-8")
        except OSError as e:
            self.state, self.error = "error", f"{self.log_path}: cannot write the set-up log ({e.strerror or e})"
            return
        try:
            self.proc = subprocess.Popen([self.python, str(self.root / "build.py"), "setup", "--venv",
                                          str(self.venv_dir)], cwd=self.root, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                         # its own process group, so Cancel also ends the pip it is running
                                         start_new_session=os.name == "posix")
        except OSError as e:
            self._log.close()
            self.state, self.error = "error", f"{self.python}: cannot run the set-up ({e.strerror or e})"
            return
        self.state = "running"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._log:
            for line in self.proc.stdout:
                self._log.write(line)
                self._log.flush()
                self._line(line.rstrip())

    def _line(self, line: str) -> None:
        if not line or line.startswith("WARNING: Location"):  # pip's notes about unused index folders
            return
        self.lines.append(line)
        m = _STEP.match(line)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
            self.fraction = (i - 1) / n
            self.message = f"step {i}/{n}: {m.group(3)[:80]}"
        elif line.startswith(("setup: creating", "setup: done", "setup:")):
            self.message = line[len("setup: "):][:120]

    def poll(self) -> str:
        if self.state != "running":
            return self.state
        rc = self.proc.poll()
        if rc is None:
            return self.state
        self._thread.join(5.0)
        if rc == 0:
            self.state, self.fraction, self.message = "done", 1.0, f"Backend environment ready: {self.venv_dir}"
        elif self.state != "cancelled":
            self.state, self.error = "error", (f"{self.venv_dir}: set-up from {self.root} failed (exit {rc}): "
                                               f"{self._cause()} (full output: {self.log_path})")
        return self.state

    def _cause(self) -> str:
        """pip's last "ERROR:" line says what went wrong ("No matching distribution found for torch==..."); the
        set-up's own closing line only says "see above", which the preferences cannot show."""
        lines = list(self.lines)
        for pick in (lambda ln: ln.startswith("ERROR:"), lambda ln: "error" in ln.lower() or "failed" in ln.lower()):
            found = next((ln for ln in reversed(lines) if pick(ln)), None)
            if found:
                return found
        return lines[-1] if lines else "no output"

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.state, self.error = "cancelled", f"{self.venv_dir}: set-up cancelled"
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
                self.proc.wait(10)

    def _signal(self, sig) -> None:
        """build.py and the pip it runs (killing only build.py would leave pip writing into the environment)."""
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.terminate()
        except ProcessLookupError:
            pass

    def run_blocking(self, timeout: float = 3600.0, on_progress=None) -> str:
        import time

        self.start()
        t0 = time.monotonic()
        while self.poll() == "running":
            if on_progress:
                on_progress(self.fraction, self.message)
            if time.monotonic() - t0 > timeout:
                self.cancel()
                self.state, self.error = "error", f"{self.venv_dir}: set-up did not finish within {timeout:.0f} s"
            time.sleep(0.2)
        return self.state
