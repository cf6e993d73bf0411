"""Who may write a result-bundle folder, and cleaning up after writers that died.

Standard library only: the Blender add-on (whose Python has no numpy or torch) loads this file from
the backend folder by path (backend_paths.load_backend_module), so the lock protocol and the
crash recovery exist once for both sides of the process boundary.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

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


def is_foreign_folder(output: Path) -> bool:
    """A non-empty folder without result.json: someone's files, never to be replaced by a bundle."""
    return not (output / "result.json").is_file() and any(output.iterdir())


def output_problem(output: str | Path) -> tuple[Path, str] | None:
    """(path, why) when a bundle could not be written at `output`, asked before the minutes of work a
    reconstruction does first; None when it can."""
    output = Path(output).resolve()
    if output.exists():
        if not output.is_dir():
            return output, "cannot write the result here (it is a file, not a folder)"
        try:
            if is_foreign_folder(output):
                return output, "exists and is not a result bundle; refusing to replace it (choose another folder)"
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
