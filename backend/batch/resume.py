"""Resume: is an item's bundle complete and made from the same inputs and options as now?

The key of an item (its *fingerprint*) is a SHA-256 over: the subject, the options that change the result
(not `device`), and for each input file its base name and the SHA-256 of its contents.
- Contents, not size + mtime + path: a data set copied or moved to shared storage for a cluster keeps its
  fingerprints (paths and mtimes change, contents do not), and an edited photo is seen even when a tool
  kept its mtime. Base names count because they name the views (`images/<name>`) in the bundle.
- Hashing is cheap beside a reconstruction (SHA-256 reads ~1 GB/s; a 5 MB photo costs ~5 ms against seconds
  of fitting), and a re-run hashes nothing it hashed before: the digests are cached by (path, size,
  mtime_ns), so a skip costs one stat per file.

The record of a finished item lives in a small sidecar, `DIR/.faceforge-batch/<subject>.json`, rather than
in the bundle (whose format is the contract with the importer; a field in result.json written with the
bundle would close the window between the two writes below). The sidecar also holds the SHA-256 of the bundle's result.json, so a bundle replaced
by hand (or by a single `reconstruct` into the same folder) no longer counts as the batch's result. The
worker deletes the sidecar before it starts an item and writes it after the bundle is in place, so a run
killed in between leaves an item that is simply done again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .spec import NOT_IN_FINGERPRINT, Item

STATE_DIR = ".faceforge-batch"
FINGERPRINT_VERSION = 1


def state_path(out_dir: Path, subject: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{subject}.json"


def read_state(out_dir: Path, subject: str) -> dict | None:
    try:
        doc = json.loads(state_path(out_dir, subject).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_state(out_dir: Path, subject: str, doc: dict) -> None:
    path = state_path(out_dir, subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc, indent=1))


def clear_state(out_dir: Path, subject: str) -> None:
    state_path(out_dir, subject).unlink(missing_ok=True)


def input_files(item: Item) -> list[Path]:
    """The files a reconstruction of `item` reads (folders expanded as the pipeline does). Raises the
    pipeline's own InputError for a missing input."""
    from ..images import collect_inputs

    files = collect_inputs(item.inputs) if item.inputs else []
    lm = item.options.get("landmarks_file")
    if lm:
        lm = Path(lm)
        files.append(lm)
        try:  # the photos a landmarks file names are inputs too (they are textured and copied)
            doc = json.loads(lm.read_text())
            for entry in doc.get("images", []):
                img = entry.get("image") if isinstance(entry, dict) else None
                p = lm.parent / img if img and not Path(img).is_absolute() else Path(img) if img else None
                if p is not None and p.is_file():
                    files.append(p)
        except (OSError, ValueError, AttributeError):
            pass  # reconstruct reports what is wrong with the file
    return files


def file_digest(path: Path, cache: dict | None = None) -> dict:
    """{path, size, mtime_ns, sha256}; reuses `cache[path]` when size and mtime are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    old = (cache or {}).get(key)
    if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256"):
        return old
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def fingerprint(item: Item, cache: dict | None = None) -> tuple[str, list[dict]]:
    """(key, per-file digests) of an item as it is on disk now."""
    files = [file_digest(p, cache) for p in input_files(item)]
    options = {k: v for k, v in sorted(item.options.items()) if k not in NOT_IN_FINGERPRINT}
    options.pop("landmarks_file", None)  # its contents are among the files
    doc = {"version": FINGERPRINT_VERSION, "subject": item.subject, "options": options,
           "files": [[Path(f["path"]).name, f["sha256"]] for f in files]}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return key, files


def result_digest(bundle: Path) -> str | None:
    """SHA-256 of result.json when the bundle is complete (every file it lists is there), else None."""
    try:
        raw = (bundle / "result.json").read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError):
        return None
    listed = list((doc.get("files") or {}).values()) + [v.get("image") for v in doc.get("views", [])]
    if not all((bundle / name).is_file() for name in listed if name):
        return None
    return hashlib.sha256(raw).hexdigest()


def blender_outputs(out_dir: Path, subject: str, blend: bool, glb: bool) -> dict:
    """{"blend": path, "glb": path} of the requested per-item Blender files."""
    out = {}
    if blend:
        out["blend"] = Path(out_dir) / f"{subject}.blend"
    if glb:
        out["glb"] = Path(out_dir) / f"{subject}.glb"
    return out


def plan(item: Item, out_dir: Path, blend: bool = False, glb: bool = False) -> str:
    """'skip' (bundle and requested Blender files up to date), 'export' (bundle up to date, a Blender
    file missing or older than the bundle) or 'run' (reconstruct)."""
    state = read_state(out_dir, item.subject)
    if not state or item.problem:
        return "run"
    digest = result_digest(Path(out_dir) / item.subject)
    if digest is None or digest != state.get("result_sha256"):
        return "run"
    cache = {f["path"]: f for f in state.get("files", []) if isinstance(f, dict) and "path" in f}
    try:
        key, _ = fingerprint(item, cache)
    except Exception:  # an input is gone or unreadable: running reports it
        return "run"
    if key != state.get("fingerprint"):
        return "run"
    for kind, path in blender_outputs(out_dir, item.subject, blend, glb).items():
        if not path.is_file() or state.get(kind, {}).get("result_sha256") != digest:
            return "export"
    return "skip"
