"""Result bundles under concurrent writers and after a writer was killed (backend/bundle.py).

Real processes throughout: two writers racing for one output folder, a writer SIGKILLed at a random
moment, and leftovers named after a process that really existed and has really exited (so its PID
is dead, not made up).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bundles import result, timings  # noqa: E402

# A writer process: writes `n` bundles to OUT, each tagged with (writer, k) three ways (subject, an
# extra file, and an identity derived from the tag, hence head.obj), then patches timings the way
# pipeline._patch_timings does (total = 1000 writer + k + 1). A bundle mixing two writes would disagree with itself.
WRITER = r"""
import sys, time
import numpy as np
from backend.bundle import write_bundle, update_result
from backend.face_model import load_face_model
from tests.bundles import result, timings
out, writer, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
model = load_face_model()
while time.time() < go:
    time.sleep(0.005)
for k in range(n):
    ident = np.random.default_rng(1000 * writer + k).standard_normal(model.n_identity) * 0.5
    tag = f"w{writer}-{k}"
    write_bundle(out, result(tag, model), model, ident, extra_files={"tag.txt": tag.encode()})
    update_result(out, {"timings_s": timings(total=1000 * writer + k + 1)})
    print(tag, flush=True)
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_consistent(out: Path, model) -> str:
    """The bundle at `out` is complete and all from one write; returns its tag."""
    from backend.bundle import read_result

    doc = read_result(out)
    tag = doc["subject"]
    assert (out / "tag.txt").read_text() == tag
    writer, k = (int(x) for x in tag[1:].split("-"))
    assert doc["timings_s"]["total"] in (0.0, 1000 * writer + k + 1), (tag, doc["timings_s"])
    ident = np.random.default_rng(1000 * writer + k).standard_normal(model.n_identity) * 0.5
    np.testing.assert_allclose(doc["identity"], ident, atol=1e-9)
    verts = np.array([ln.split()[1:] for ln in (out / "head.obj").read_text().splitlines()
                      if ln.startswith("v ")], float)
    np.testing.assert_allclose(verts[::500], model.vertices(ident)[::500], atol=2e-6)
    with np.load(out / "blendshapes.npz") as d:
        np.testing.assert_allclose(d["neutral"][::500], model.vertices(ident)[::500], atol=1e-4)
        assert d["deltas"].shape[0] == len(doc["model"]["expression_names"])
    return tag


def dead_pid() -> int:
    """The PID of a process that ran and has been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def model():
    from backend.face_model import load_face_model

    return load_face_model()


@pytest.fixture()
def earlier(tmp_path, model) -> Path:
    from backend.bundle import write_bundle

    return write_bundle(tmp_path / "out" / "bundle", result("earlier", model), model, np.zeros(model.n_identity))


# ---------------------------------------------------------------------------------------------------------------
# two writers, one folder

WRITES = int(os.environ.get("FACEFORGE_RACE_WRITES", "6"))


def test_two_processes_writing_one_folder(tmp_path, model):
    """Two processes write the same output WRITES times each, started together. While they run, the
    folder is inspected under the writers' own lock (what any instant between two writers looks like):
    every time it is one complete bundle from one write, its result.json timings patched by that write
    or not yet at all, never by the other writer. At the end no temp, old or lock file is left."""
    from backend.bundle import output_lock

    out = (tmp_path / "race" / "bundle").resolve()
    out.parent.mkdir()
    go = time.time() + 2.0  # both loaded before either writes
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(w), str(WRITES), str(go)], cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in (0, 1)]
    seen = set()
    try:
        while any(p.poll() is None for p in procs):
            with output_lock(out):
                if out.exists():
                    seen.add(check_consistent(out, model))
            time.sleep(0.05)
        results = [(p.returncode, *p.communicate(timeout=30)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rc, stdout, stderr in results:
        assert rc == 0, stderr
        assert len(stdout.split()) == WRITES
    final = check_consistent(out, model)
    assert final in {f"w{w}-{WRITES - 1}" for w in (0, 1)}
    assert len(seen) >= 2, seen  # the checker did look between writes
    assert leftovers(out.parent) == []


def test_patch_skips_a_bundle_another_writer_swapped_in(tmp_path, model):
    """The timings patch (pipeline._patch_timings) lands only on the bundle this process wrote."""
    from backend import pipeline
    from backend.bundle import write_bundle

    out = tmp_path / "bundle"
    write_bundle(out, result("mine", model), model, np.zeros(model.n_identity))
    # another process replaces it (a separate process: this one remembers what it wrote)
    code = ("import sys, numpy as np; from backend.bundle import write_bundle; from backend.face_model import "
            "load_face_model; from tests.bundles import result, timings; m = load_face_model(); "
            "write_bundle(sys.argv[1], result('theirs', m, timings_s=timings(fit=1.0)), m, np.zeros(m.n_identity))")
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, env=_env(), check=True)
    pipeline._patch_timings(out, timings(fit=99.0, export=1.0))
    doc = json.loads((out / "result.json").read_text())
    assert doc["subject"] == "theirs" and doc["timings_s"] == timings(fit=1.0)
    # and on our own bundle it does land
    write_bundle(out, result("mine", model), model, np.zeros(model.n_identity))
    pipeline._patch_timings(out, timings(fit=2.0))
    assert json.loads((out / "result.json").read_text())["timings_s"] == timings(fit=2.0)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# crash recovery: leftovers of a writer whose PID is dead

def _killed_between_renames(out: Path, pid: int) -> Path:
    """The state a writer leaves when killed between _replace_dir's two renames: the earlier bundle moved
    aside to .NAME.old-PID, the new one complete in its temp folder, nothing at NAME."""
    old = out.with_name(f".{out.name}.old-{pid}")
    os.replace(out, old)
    tmp = out.with_name(f".{out.name}.tmp-{pid}-x1y2z3")
    shutil.copytree(old, tmp)
    (tmp / "head.obj").write_text("v 0 0 0\n")  # not what the user had: must not be what comes back
    return old


def test_read_restores_earlier_bundle_after_kill_between_renames(earlier):
    from backend.bundle import read_result

    before = snapshot(earlier)
    _killed_between_renames(earlier, dead_pid())
    assert not earlier.exists()
    assert read_result(earlier)["subject"] == "earlier"
    assert snapshot(earlier) == before
    assert leftovers(earlier.parent) == []


def test_next_write_sweeps_dead_leftovers(earlier, model):
    from backend.bundle import write_bundle

    pid = dead_pid()
    _killed_between_renames(earlier, pid)
    stray = earlier.with_name(f".{earlier.name}.tmp-{pid}-half")  # killed while writing: half a bundle
    stray.mkdir()
    (stray / "head.obj").write_text("v 1 2")
    write_bundle(earlier, result("next", model), model, np.ones(model.n_identity) * 0.1)
    assert json.loads((earlier / "result.json").read_text())["subject"] == "next"
    assert leftovers(earlier.parent) == []


def test_failed_write_after_a_kill_still_restores_earlier(earlier, model):
    """The next write may itself fail (here: refused, overwrite=False); the earlier bundle is back anyway."""
    from backend.bundle import write_bundle
    from backend.errors import OutputError

    before = snapshot(earlier)
    _killed_between_renames(earlier, dead_pid())
    with pytest.raises(OutputError, match="already exists"):
        write_bundle(earlier, result("next", model), model, np.zeros(model.n_identity), overwrite=False)
    assert snapshot(earlier) == before
    assert leftovers(earlier.parent) == []


def test_stale_old_next_to_a_bundle_is_deleted(earlier, model):
    from backend.bundle import recover

    before = snapshot(earlier)
    pid = dead_pid()
    old = earlier.with_name(f".{earlier.name}.old-{pid}")
    shutil.copytree(earlier, old)  # killed after the second rename, before deleting the old bundle
    assert recover(earlier)
    assert snapshot(earlier) == before and not old.exists()


def test_live_writers_temp_folder_is_left_alone(earlier, model):
    """A temp folder whose writer still runs is that writer's bundle in the making."""
    from backend.bundle import write_bundle

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = earlier.with_name(f".{earlier.name}.tmp-{sleeper.pid}-busy")
        live.mkdir()
        write_bundle(earlier, result("next", model), model, np.zeros(model.n_identity))
        assert live.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    write_bundle(earlier, result("again", model), model, np.zeros(model.n_identity))
    assert not live.exists() and leftovers(earlier.parent) == []


def test_addon_client_sweeps_its_dead_backend(earlier):
    """The add-on cannot import the backend package; its client loads the stdlib-only
    backend/output_dir.py by path and undoes a dead backend's half-done swap with it."""
    from face_reconstruct_addon.client import sweep_dead_writer

    before = snapshot(earlier)
    pid = dead_pid()
    _killed_between_renames(earlier, pid)
    other = earlier.with_name(f".{earlier.name}.tmp-{os.getpid()}-live")
    other.mkdir()
    sweep_dead_writer(earlier, pid, ROOT)
    assert snapshot(earlier) == before
    assert leftovers(earlier.parent) == [other.name]  # a live writer's temp folder is left alone
    sweep_dead_writer(earlier, os.getpid(), ROOT)  # the writer must have ended: a live one is not swept
    assert leftovers(earlier.parent) == [other.name]


KILLS = int(os.environ.get("FACEFORGE_KILL_ROUNDS", "4"))


def _kill_writers_at_random_moments(out: Path, model, seed: int, after_recovery=lambda r: None) -> None:
    """KILLS rounds: start a WRITER of 50 bundles into `out`, SIGKILL it after a random time (round 0 once its
    first bundle is in), then recover: one complete bundle from one write must be there, nothing beside it."""
    from backend.bundle import recover

    rng = np.random.default_rng(seed)
    for r in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(r), "50", "0"], cwd=ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            first = proc.stdout.readline() if r == 0 else ""  # round 0: let one bundle land first
            assert r > 0 or first.strip() == "w0-0"
            time.sleep(rng.uniform(0.05, 1.2))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert recover(out)
        check_consistent(out, model)
        assert leftovers(out.parent) == []
        after_recovery(r)


def test_writer_killed_at_random_moments(tmp_path, model):
    """SIGKILL a real writer at random points of its write loop (often inside write_bundle): whatever the
    moment, after recovery the folder holds one complete bundle and nothing else is left."""
    _kill_writers_at_random_moments((tmp_path / "bundle").resolve(), model, seed=0)


def test_user_files_survive_a_writer_killed_at_random_moments(tmp_path, model):
    """The user's own files in a bundle are carried into each new bundle as hard links before the
    swap: SIGKILL a writer anywhere in its loop and, after recovery, every one of them is in the bundle,
    byte for byte, and no copy of them is left in a sibling."""
    from backend.bundle import write_bundle

    out = (tmp_path / "bundle").resolve()
    write_bundle(out, result("w9-0", model), model,
                 np.random.default_rng(9000).standard_normal(model.n_identity) * 0.5, extra_files={"tag.txt": b"w9-0"})
    (out / "notes.txt").write_text("keep\n")
    (out / "renders").mkdir()
    for k in range(20):
        (out / "renders" / f"r{k:03d}.png").write_bytes(bytes([k]) * 1000)
    mine = {p: b for p, b in snapshot(out).items() if p == "notes.txt" or p.startswith("renders/")}

    def still_there(r):
        now = snapshot(out)
        assert {p: now.get(p) for p in mine} == mine, f"round {r}"

    _kill_writers_at_random_moments(out, model, seed=1, after_recovery=still_there)
