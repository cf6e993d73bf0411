"""The result bundle: the contract between the backend and the Blender importer.

A bundle is a folder holding `result.json` (docs/result-bundle.md; checked against result.schema.json
before it is written),
`head.obj`, `blendshapes.npz`, optional `albedo.png` / `normal.png`, and
`images/` with a copy of each input photo (so camera backgrounds survive the
originals moving). It is written into a temporary sibling folder and renamed
into place, so a reader never sees half a bundle and a failed run never
touches an earlier result. Writers to one output folder take turns through an
advisory lock on `.NAME.lock`, and each write first sweeps what a killed writer
left behind (`.NAME.tmp-PID-*`, `.NAME.old-PID`).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .contract import SCHEMA, SCHEMA_VERSION, ResultSchemaError, check_result
from .errors import OutputError
from .face_model import PARTS, FaceModel
from .output_dir import (foreign_folder_message, output_lock, output_problem, read_bundle_doc, recover, sweep_leftovers,
                         user_entries)

AXES = "model space: centimetres, +Y up, +Z out of the face, subject's left at +X"
CAMERA_CONVENTION = ("OpenCV: x_cam = R @ X_model + t (X_model in cm); u = fx*x/z + cx, v = fy*y/z + cy; "
                     "pixel (0,0) is the centre of the top-left pixel; camera looks down +Z, image y down")


def write_obj(path: Path, model: FaceModel, vertices: np.ndarray) -> None:
    """Quads and UVs as in the model, one `g`/`usemtl` group per part (so importers can split or slot them)."""
    sizes, pv, puv = model.polygon_sizes, model.polygon_vertices, model.polygon_uvs
    starts = np.concatenate([[0], np.cumsum(sizes)])
    first_vertex = pv[starts[:-1]]
    part_bounds = list(PARTS.items())
    lines = ["# FaceForge head (ICT-FaceKit light topology), " + AXES, "mtllib head.mtl"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in model.uv]
    current = None
    for f in range(len(sizes)):
        part = next(name for name, (a, b) in part_bounds if a <= first_vertex[f] < b)
        if part != current:
            lines += [f"g {part}", f"usemtl {part}"]
            current = part
        s, e = starts[f], starts[f + 1]
        lines.append("f " + " ".join(f"{v + 1}/{t + 1}" for v, t in zip(pv[s:e], puv[s:e])))
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".mtl").write_text("".join(f"newmtl {p}\nKd 0.8 0.8 0.8\n" for p in PARTS))


def write_bundle(output: str | Path, result: dict, model: FaceModel, identity: np.ndarray,
                 images: list[tuple[str, str]] = (), extra_files: dict[str, bytes | Path] | None = None,
                 overwrite: bool = True) -> Path:
    """Write a complete bundle to `output` atomically.

    result: the result.json dict (schema fields filled in here); identity: (K,) coefficients;
    images: (source path, name inside images/) pairs; extra_files: name -> bytes or a path to copy.
    """
    output = Path(output).resolve()
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-{os.getpid()}-", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the bundle should be like any new folder
    except OSError as e:
        raise OutputError(f"cannot create the output folder ({e.strerror or e})", parent) from e
    try:
        neutral = model.vertices(identity)
        write_obj(tmp / "head.obj", model, neutral)
        # uncompressed: deflating 17 MB of deltas costs more time than the disk space is worth
        np.savez(tmp / "blendshapes.npz", names=np.array(model.expression_names),
                            ict_names=np.array(model.ict_expression_names),
                            deltas=model.expression.astype(np.float32), neutral=neutral.astype(np.float32))
        (tmp / "images").mkdir()
        for src, name in images:
            shutil.copyfile(src, tmp / "images" / name)
        for name, data in (extra_files or {}).items():
            if isinstance(data, (bytes, bytearray)):
                (tmp / name).write_bytes(data)
            else:
                shutil.copyfile(data, tmp / name)
        doc = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "backend_version": __version__,
            "model": {"name": "ICT-FaceKit light", "sha256": model.sha256, "n_vertices": model.n_vertices,
                      "n_identity": model.n_identity, "expression_names": model.expression_names,
                      "parts": {k: list(v) for k, v in PARTS.items()}, "axes": AXES, "units": "cm"},
            "camera_convention": CAMERA_CONVENTION,
            "files": {"mesh": "head.obj", "blendshapes": "blendshapes.npz",
                      **{k: v for k, v in result.pop("files", {}).items()}},
            "identity": [float(x) for x in identity],
            **result,
            # what this program wrote: a rerun replaces these and carries everything else over (output_dir)
            "written_files": sorted({"result.json"} | {p.relative_to(tmp).as_posix() for p in tmp.rglob("*")
                                                       if not p.is_dir()}),
        }
        # a field the schema (and so docs/result-bundle.md) does not describe, or one of the wrong shape, is a
        # bug here: it fails this run before anything is in place, not a reader later
        check_result(doc, tmp / "result.json")
        (tmp / "result.json").write_text(json.dumps(doc, indent=1))
        _replace_dir(tmp, output, overwrite)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise OutputError(f"cannot write the result bundle ({why})", output) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, output: Path, overwrite: bool) -> None:
    """Move the finished bundle into place; an earlier bundle is kept until the new one is in, and what
    the user added to it (notes, a folder of renders) goes into the new one.

    Runs under the output's lock: a second writer waits here rather than swapping folders in
    the middle of this one's two renames.
    """
    with output_lock(output):
        sweep_leftovers(output)
        if output.exists():
            if not overwrite:
                raise OutputError("already exists (choose another output folder)", output)
            doc = read_bundle_doc(output)
            if doc is None and any(output.iterdir()):
                raise OutputError(foreign_folder_message(output), output)
            if doc is not None:
                _carry_user_entries(output, tmp, user_entries(output, doc))
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            try:
                os.replace(tmp, output)
            except OSError:
                os.replace(old, output)
                raise
            _remove_tree(old)
        else:
            os.replace(tmp, output)
        st = output.stat()
        _WRITTEN[str(output)] = (st.st_dev, st.st_ino)


def _carry_user_entries(bundle: Path, tmp: Path, entries: list[str]) -> None:
    """Put the user's own entries of the earlier bundle into the new one before the swap, as hard links
    (instant, no extra space; a copy where the file system has none). The earlier bundle keeps them
    until it is deleted after the swap, so a writer killed at any moment loses none of them: the
    sweep puts the earlier bundle back or finds them in the new one."""
    for rel in entries:
        src, dst = bundle / rel.rstrip("/"), tmp / rel.rstrip("/")
        if os.path.lexists(dst):
            raise OutputError("was not written by FaceForge, and the new result has a file by that name; move it "
                              "out of the bundle folder and run again", src)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
            else:
                _link_or_copy(src, dst)
        except (OSError, shutil.Error) as e:
            raise OutputError(f"cannot keep this file of yours in the new result ({_why(e)}); move it out of the "
                              "bundle folder and run again", src) from e


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        if not Path(src).is_file():  # a FIFO or device node cannot be copied by content
            raise
        shutil.copy2(src, dst)


def _why(e: BaseException) -> str:
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        return str(e.args[0][0][2])
    return getattr(e, "strerror", None) or str(e)


def _remove_tree(path: Path) -> None:
    """Delete the earlier bundle after a swap; a read-only folder the user carried over is made writable
    first (its contents live on in the new bundle as hard links or copies)."""
    def retry(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


# output folder -> (st_dev, st_ino) of the bundle this process last put there; a rename keeps the
# inode, so update_result() can tell its own bundle from one another writer swapped in since.
_WRITTEN: dict[str, tuple[int, int]] = {}


def update_result(output: str | Path, changes: dict) -> bool:
    """Rewrite top-level fields of result.json in the bundle this process just wrote to `output`.

    False (nothing written) when another writer has replaced the folder since: its result.json
    belongs to its own bundle and must not get our fields.
    """
    output = Path(output).resolve()
    try:
        with output_lock(output):
            st = output.stat()
            if _WRITTEN.get(str(output)) != (st.st_dev, st.st_ino):
                return False
            p = output / "result.json"
            doc = json.loads(p.read_text())
            doc.update(changes)
            check_result(doc, p)
            tmp = p.with_name(f".result.json.tmp-{os.getpid()}")
            try:
                tmp.write_text(json.dumps(doc, indent=1))
                os.replace(tmp, p)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return True
    except ResultSchemaError:
        raise
    except (OSError, ValueError):
        return False


def check_output(output: str | Path) -> None:
    """Refuse an output we could not write before the minutes of detection and fitting, not after, and
    put back an earlier bundle a killed writer left half-swapped."""
    problem = output_problem(output)
    if problem is not None:
        raise OutputError(problem[1], problem[0])
    recover(output)


def read_result(bundle: str | Path) -> dict:
    bundle = Path(bundle)
    if not (bundle / "result.json").exists() and bundle.parent.is_dir():
        recover(bundle)  # a writer killed mid-swap: put the earlier bundle back rather than fail
    doc = json.loads((bundle / "result.json").read_text())
    check_result(doc, bundle / "result.json", strict=False)  # ResultSchemaError is a ValueError
    return doc
