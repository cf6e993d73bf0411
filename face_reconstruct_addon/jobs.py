"""A reconstruction as Blender sees it: start the backend job, tick it, import the result.

`Runner.tick()` is what the modal operator calls on every window-manager timer event and what the
background (blocking) path calls in a loop, so both share one code path. Only one job runs at a time;
it is reachable through ACTIVE so the Cancel button and unregister() can stop it.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import backend_paths, compat, importer
from .client import BackendError, ReconstructJob, keep_warm, warm_client
from .props import ADDON_ID, resolve_backend
from .shared import check_bundle, contract

IMAGE_EXTS = contract.IMAGE_EXTENSIONS  # what the backend reads, HEIC included
ACTIVE: dict = {"runner": None}

RUNNING, FINISHED, CANCELLED, ERROR = "RUNNING", "FINISHED", "CANCELLED", "ERROR"


def photo_paths(settings) -> list[str]:
    # Absolute: the backend refuses relative paths (its working folder is not the user's).
    return [os.path.abspath(backend_paths.bpy_abspath(p.filepath)) for p in settings.photos if p.filepath]


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "face"


def output_problem(output: Path, root: str) -> str | None:
    """Why the backend could not write a bundle at `output`, found before the minutes of work it
    would do first (the backend's own check, backend/output_dir.py, which it repeats when writing)."""
    output_dir = backend_paths.load_backend_module("output_dir", root)
    if output_dir is None:
        return None
    problem = output_dir.output_problem(output)
    return None if problem is None else f"{problem[0]}: {problem[1]}"


class Runner:
    def __init__(self):
        self.job: ReconstructJob | None = None
        self.output: Path | None = None
        self.temporary = False
        self.imported: dict | None = None
        self.error: str | None = None
        self.state = "new"
        self.scene_name = None

    def start(self, context, python: str | None = None, root: str | None = None, output: str | None = None) -> None:
        """Raises BackendError with a one-line message if the job cannot start."""
        try:
            self._start(context, python, root, output)
        except BackendError as e:
            if e.code != "busy":  # busy: the panel shows the job that is running, leave it be
                self.error = str(e)
                settings = context.scene.faceforge
                settings.running, settings.stage, settings.last_error = False, "Failed", self.error
            raise

    def _start(self, context, python, root, output) -> None:
        if ACTIVE["runner"] is not None and ACTIVE["runner"].state == RUNNING:
            raise BackendError("a reconstruction is already running (cancel it first)", "busy")
        settings = context.scene.faceforge
        photos = photo_paths(settings)
        if not photos:
            raise BackendError("add at least one photo first", "bad_input")
        for p in photos:
            if not Path(p).is_file():
                raise BackendError(f"{p}: photo not found", "bad_input")
        if python is None or root is None:
            python, root = resolve_backend(context)
        subject = settings.subject.strip() or Path(photos[0]).stem
        if output:
            self.output = Path(output).absolute()
        elif settings.output_dir:
            self.output = Path(backend_paths.bpy_abspath(settings.output_dir)).absolute() / _safe_name(subject)
        else:
            self.output = Path(tempfile.mkdtemp(prefix="faceforge-")) / "result"
            self.temporary = True
        if not self.temporary and (problem := output_problem(self.output, root)):
            raise BackendError(problem, "output")
        size = int(settings.texture_size)
        options = {"landmarks": settings.landmarks, "device": settings.device, "texture": size > 0,
                   "texture_size": max(size, 256), "subject": subject}
        prefs = compat.addon_preferences(context, ADDON_ID)
        keep = bool(getattr(prefs, "keep_backend_running", True)) if prefs is not None else True
        self.job = ReconstructJob(python, root, photos, str(self.output), options,
                                  client=warm_client(python, root) if keep else None, keep_alive=keep)
        self.scene_name = context.scene.name
        self.state = RUNNING
        settings.running, settings.progress, settings.stage, settings.last_error = True, 0.0, "Starting", ""
        ACTIVE["runner"] = self
        try:
            self.job.start()
        except BackendError:
            self._end(context, ERROR)
            raise

    def tick(self, context) -> str:
        if self.state != RUNNING:
            return self.state
        done = self.job.poll()
        settings = context.scene.faceforge
        settings.progress = self.job.fraction
        settings.stage = f"{self.job.stage}: {self.job.message}" if self.job.message else self.job.stage
        if not done:
            return RUNNING
        if self.job.keep_alive and self.job.client.alive():
            keep_warm(self.job.client)
        if self.job.state == "done":
            try:
                bundle = self.job.result.get("output", self.output)
                check_bundle(bundle)
                # A temporary bundle may be gone by the next session: its images are always packed.
                self.imported = importer.import_bundle(bundle, context,
                                                       pack_textures=self.temporary or bool(settings.pack_textures))
                if self.temporary:
                    # Everything the .blend needs is packed now; the temporary bundle can go.
                    shutil.rmtree(self.output.parent, ignore_errors=True)
            except (importer.BundleError, contract.ResultSchemaError, OSError, RuntimeError) as e:
                self.error = str(e)
                return self._end(context, ERROR)
            return self._end(context, FINISHED)
        if self.job.state == "cancelled":
            return self._end(context, CANCELLED)
        self.error = self.job.error or "backend error"
        return self._end(context, ERROR)

    def cancel(self) -> None:
        if self.job is not None and self.state == RUNNING:
            self.job.cancel()

    def abort(self) -> None:
        """Stop now (unregister, file load): the process is ended before this returns."""
        if self.job is not None and self.state == RUNNING:
            self.job.abort()
            self.state = CANCELLED
            if self.temporary and self.output is not None:
                shutil.rmtree(self.output.parent, ignore_errors=True)
        if ACTIVE["runner"] is self:
            ACTIVE["runner"] = None

    def _end(self, context, state: str) -> str:
        self.state = state
        settings = context.scene.faceforge
        settings.running = False
        settings.progress = 1.0 if state == FINISHED else settings.progress
        settings.stage = {FINISHED: "Done", CANCELLED: "Cancelled", ERROR: "Failed"}[state]
        settings.last_error = self.error or ""
        if self.job is not None and self.job.client.alive() and warm_client(self.job.client.python,
                                                                             self.job.client.root) is not self.job.client:
            self.job.client.stop(grace=2.0)
        if self.temporary and state != FINISHED and self.output is not None:
            shutil.rmtree(self.output.parent, ignore_errors=True)  # the temp folder we made, nothing else
        if ACTIVE["runner"] is self:
            ACTIVE["runner"] = None
        return state

    def run_blocking(self, context, poll_s: float = 0.1, on_progress=None, timeout: float | None = None) -> str:
        """Background mode (`blender -b`, bpy module): the same tick() in a loop."""
        last = None
        t0 = time.monotonic()
        while (state := self.tick(context)) == RUNNING:
            if on_progress is not None and (self.job.stage, round(self.job.fraction, 2)) != last:
                last = (self.job.stage, round(self.job.fraction, 2))
                on_progress(self.job.stage, self.job.fraction, self.job.message)
            if timeout is not None and time.monotonic() - t0 > timeout:
                self.abort()
                self.error = f"backend did not finish within {timeout:.0f} s"
                return self._end(context, ERROR)
            time.sleep(poll_s)
        return state


def cancel_active() -> bool:
    r = ACTIVE["runner"]
    if r is not None:
        r.cancel()
        return True
    return False


def abort_active() -> None:
    r = ACTIVE["runner"]
    if r is not None:
        r.abort()


def status_line(settings) -> str:
    return f"FaceForge: {settings.stage} ({settings.progress * 100:.0f}%)  Esc to cancel"


def report_status(context, text):
    compat.status_text(context, text)
