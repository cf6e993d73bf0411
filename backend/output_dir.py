"""Who may write a result-bundle folder, and cleaning up after writers that died.

Standard library only: the Blender add-on (whose Python has no numpy or torch) loads this file from
the backend folder by path (face_reconstruct_addon/shared.py, as a module of a bare package so that the import
of its sibling contract.py works), so the lock protocol and the crash recovery exist once for both sides of the
process boundary.
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
from pathlib import Path

try:
    from .contract import SCHEMA
except ImportError:  # loaded by path as a lone module (add-ons from before contract.py): its sibling, by path
    import importlib.util

    _spec = importlib.util.spec_from_file_location("faceforge_contract", Path(__file__).with_name("contract.py"))
    _contract = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_contract)
    SCHEMA = _contract.SCHEMA

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


# -- one writer at a time -------------------------------------------------------------------------

@contextlib.contextmanager
def output_lock(output: Path):
    """Advisory lock on `.NAME.lock` next to the output folder, for the swap and later rewrites.

    The lock file is removed on release (so no litter is left next to the bundle); whoever opened it
    before the removal finds, once it gets the lock, that the path now names another file (or none)
    and tries again, so two holders can never both believe they hold it.
    """
    if fcntl is None:
        # Windows: skipped. There is no flock, and msvcrt.locking cannot lock a file that is then
        # deleted on release; writers there rely on the two renames alone (the add-on runs one job
        # at a time, so only two CLI runs into one folder can interleave).
        yield
        return
    path = output.with_name(f".{output.name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _leftovers(output: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(.NAME.old-PID folders, .NAME.tmp-PID-* folders) next to `output`, with their PIDs."""
    olds, tmps = [], []
    old_re = re.compile(re.escape(f".{output.name}.old-") + r"(\d+)$")
    tmp_re = re.compile(re.escape(f".{output.name}.tmp-") + r"(\d+)-")
    try:
        entries = list(output.parent.iterdir())
    except OSError:
        return olds, tmps
    for p in entries:
        if m := old_re.match(p.name):
            olds.append((p, int(m.group(1))))
        elif m := tmp_re.match(p.name):
            tmps.append((p, int(m.group(1))))
    return olds, tmps


def sweep_leftovers(output: Path) -> None:
    """Clean up after writers that died mid-write (caller holds the output lock).

    A writer killed between its two renames leaves the earlier bundle as `.NAME.old-PID` and maybe
    no NAME: that earlier bundle is the user's last good result, so it goes back into place. A
    `.old-` is only ever present during a swap, which needs the lock we hold, so any one seen here
    whose writer is gone (or is this process, after a failed delete) is stale. Temp folders of dead
    writers are deleted; those of live ones are still being written.
    """
    olds, tmps = _leftovers(output)
    stale = [p for p, pid in olds if pid == os.getpid() or not pid_alive(pid)]
    if stale and not output.exists():
        newest = max(stale, key=lambda p: p.stat().st_mtime)
        try:
            os.replace(newest, output)
            stale.remove(newest)
        except OSError:
            pass
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    for p, pid in tmps:
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def recover(output: str | Path) -> bool:
    """Sweep a dead writer's leftovers next to `output` now (restoring the earlier bundle when the
    writer died between its renames). True when a bundle is at `output` afterwards."""
    output = Path(output).resolve()
    try:
        with output_lock(output):
            sweep_leftovers(output)
    except OSError:  # read-only location: nothing we may clean
        pass
    return (output / "result.json").is_file()


# What every bundle holds; `files`, `views[].image` and `animation.file` in result.json name the rest. Bundles
# since written_files (result.json) list every file themselves; these names cover the bundles made before.
_ALWAYS_WRITTEN = ("result.json", "head.obj", "head.mtl", "blendshapes.npz")
# Names a new bundle may write at its top level whatever the old one held: a user's own file by one of these
# names would be replaced, so it is refused before the work rather than lost.
RESERVED_NAMES = frozenset(_ALWAYS_WRITTEN + ("albedo.png", "normal.png", "animation.npz", "images"))
_RESULT_TMP = re.compile(r"\.result\.json\.tmp-\d+$")  # bundle.update_result's temp file of a killed writer


def read_bundle_doc(folder: Path) -> dict | None:
    """result.json of the FaceForge bundle at `folder`, or None when it is not one (no result.json, or
    another program's: identified by its "schema" marker, which every FaceForge bundle has carried)."""
    try:
        with open(folder / "result.json", "rb") as f:
            doc = json.loads(f.read(64 << 20))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None


def is_foreign_folder(output: Path) -> bool:
    """A non-empty folder that is not a FaceForge bundle: someone's files, never to be replaced by a bundle."""
    return read_bundle_doc(output) is None and any(output.iterdir())


def foreign_folder_message(output: Path) -> str:
    what = ("holds a result.json FaceForge did not write" if (output / "result.json").exists()
            else "is not empty and is not a FaceForge result bundle")
    return f"{what}; refusing to replace it (choose another output folder)"


RESERVED_CLASH = ("was not written by FaceForge, and a new result would replace it; "
                  "move it out of the bundle folder")


def written_files(doc: dict) -> set[str]:
    """Paths (relative, "/"-separated) of the files FaceForge wrote into the bundle described by `doc`."""
    listed = doc.get("written_files")
    if isinstance(listed, list):
        return {p for p in listed if isinstance(p, str)} | {"result.json"}
    names = set(_ALWAYS_WRITTEN)
    files = doc.get("files")
    names |= {v for v in (files.values() if isinstance(files, dict) else ()) if isinstance(v, str)}
    for v in doc.get("views") or ():
        if isinstance(v, dict) and isinstance(v.get("image"), str):
            names.add(v["image"])
    anim = doc.get("animation")
    if isinstance(anim, dict) and isinstance(anim.get("file"), str):
        names.add(anim["file"])
    return {posixpath.normpath(n) for n in names}


def user_entries(bundle: Path, doc: dict) -> list[str]:
    """What a user added to the bundle at `bundle` (relative paths, "/"-separated, sorted): every file, link
    or other entry FaceForge did not write, and every folder holding none of FaceForge's files (whose
    contents are then the user's as a whole). A rerun carries these into the new bundle."""
    ours = written_files(doc)
    our_dirs = {"images"} | {posixpath.dirname(p) for p in ours}
    for d in list(our_dirs):
        while d:
            d = posixpath.dirname(d)
            our_dirs.add(d)
    out = []

    def walk(folder: Path, rel: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            r = f"{rel}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if r in our_dirs:
                    walk(Path(entry.path), r + "/")
                else:
                    out.append(r + "/")
            elif r not in ours and not (rel == "" and _RESULT_TMP.match(entry.name)):
                out.append(r)

    walk(bundle, "")
    return out


def _reserved_user_entries(output: Path) -> list[str]:
    doc = read_bundle_doc(output)
    if doc is None:
        return []
    return [e for e in user_entries(output, doc) if e.rstrip("/") in RESERVED_NAMES]


def output_problem(output: str | Path) -> tuple[Path, str] | None:
    """(path, why) when a bundle could not be written at `output`, asked before the minutes of work a
    reconstruction does first; None when it can."""
    output = Path(output).resolve()
    try:
        exists = output.exists()
    except PermissionError:  # a folder above it is closed to us
        return output.parent, "cannot reach the output folder (permission denied)"
    if exists:
        if not output.is_dir():
            return output, "cannot write the result here (it is a file, not a folder)"
        try:
            if is_foreign_folder(output):
                return output, foreign_folder_message(output)
            if clash := _reserved_user_entries(output):
                return output / clash[0].rstrip("/"), RESERVED_CLASH
        except OSError as e:
            return output, f"cannot read the output folder ({e.strerror or e})"
        parent = output.parent
    else:
        parent = output.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return parent, "cannot create the output folder (it is a file, not a folder)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return parent, "cannot create the output folder (permission denied)"
    return None
