"""`python -m backend batch`: a manifest of 4 items (one deliberately broken) through the local pool and a
local Ray cluster gives 3 bundles and 1 reported error; a re-run redoes nothing that is up to date; Ctrl-C
keeps finished bundles and leaves no half one; --blend/--glb per item; the spec reader and the resume key.

Items are synthetic iBUG-68 landmark files (one 512 px view, --no-texture): a fit plus the full bundle
export, ~0.3-0.7 s each on the shared 2-core machine, so a run costs mostly its workers' start-up
(imports, face model, MediaPipe warm-up: ~4 s) and Ray's (~3 s).
"""
import csv
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

from backend.batch import load_spec
from backend.batch.local import pool_size, usable_cores
from backend.batch.resume import fingerprint, plan
from backend.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GOOD = ["ana", "ben", "cleo"]


def _landmark_file(path: Path, seed: int) -> Path:
    from backend.face_model import load_face_model
    from backend.fit.spec import landmark_spec
    from bench.synthetic import make_scene

    model = load_face_model()
    scene = make_scene(np.random.default_rng(seed), model, landmark_spec("ibug68", model), yaws=[15], noise_px=0.5,
                       size=512)
    doc = {"format": "ibug68", "images": [{"name": "view0", "points": scene["views"][0]["points"].tolist(),
                                           "width": 512, "height": 512}]}
    path.write_text(json.dumps(doc))
    return path


def _manifest(folder: Path, subjects, broken=True) -> Path:
    """CSV manifest: one landmark item per subject (+ 'broken': a landmarks file with 1 point instead of 68)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [["subject", "landmarks_file"]]
    for i, s in enumerate(subjects):
        lm = folder / f"{s}.json"
        if not lm.exists():
            _landmark_file(lm, seed=20 + i)
        rows.append([s, lm.name])
    if broken:
        (folder / "broken.json").write_text(json.dumps(
            {"format": "ibug68", "images": [{"points": [[1.0, 2.0]], "width": 512, "height": 512}]}))
        rows.append(["broken", "broken.json"])
    path = folder / ("manifest.csv" if broken else "manifest_ok.csv")
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def batch(*args, timeout=300):
    """The real CLI in a subprocess; returns (returncode, JSON-lines events, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "backend", "batch", *map(str, args), "--progress", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout holds nothing else
    return proc.returncode, events, proc.stderr


def batch_until_first_item(act, *args):
    """The CLI with JSON progress; act(proc) once the first item is reported. (returncode, rest of stdout,
    stderr). Its own session, so a signal to its process group reaches only the batch and its workers."""
    # SIGINT back to its default in the child: a test run started in the background (`cmd &` in a script)
    # inherits it ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "backend", "batch", *map(str, args), "--progress", "json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "item":
                act(proc)
                break
        rest, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, rest, err


def _report(out: Path) -> dict:
    doc = json.loads((out / "batch_report.json").read_text())
    return {r["subject"]: r for r in doc["items"]} | {"_summary": doc["summary"], "_doc": doc}


def _bundle_stamps(out: Path, subjects) -> dict:
    return {s: (out / s / "result.json").stat().st_mtime_ns for s in subjects}


def _no_leftovers(out: Path):
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".faceforge-batch"]
    assert not hidden, hidden  # no .NAME.tmp-PID-* / .NAME.old-PID / blender temporaries


def _check_three_bundles_one_error(out: Path, rc, events, err):
    assert rc == 1, err
    rep = _report(out)
    assert {s for s in GOOD if (out / s / "result.json").is_file()} == set(GOOD)
    assert not (out / "broken").exists()
    for s in GOOD:
        # the item's seconds hold its whole pipeline run; a worker that loaded torch and the model is > 100 MiB
        assert rep[s]["status"] == "done" and rep[s]["seconds"] >= rep[s]["timings_s"]["total"], rep[s]
        assert rep[s]["peak_rss_mib"] > 100, rep[s]
        assert json.loads((out / s / "result.json").read_text())["subject"] == s
    b = rep["broken"]
    assert b["status"] == "failed" and b["error_code"] == "bad_input"
    assert "broken.json" in b["error"] and "expected 68 points" in b["error"] and "\n" not in b["error"]
    assert (rep["_summary"]["done"], rep["_summary"]["failed"], rep["_summary"]["skipped"]) == (3, 1, 0)
    with (out / "batch_report.csv").open() as f:
        rows = {r["subject"]: r for r in csv.DictReader(f)}
    assert {s: r["status"] for s, r in rows.items()} == {"ana": "done", "ben": "done", "cleo": "done",
                                                          "broken": "failed"}
    assert "expected 68 points" in rows["broken"]["error"]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("item") == 4
    assert events[-1]["summary"]["done"] == 3 and events[-2]["finished"] == 4
    assert "failed: broken: " in err and "1 of 4 items failed" in err
    _no_leftovers(out)
    return rep


def _check_rerun_skips(out: Path, before: dict, rc, events, err):
    """The 3 finished items are skipped (bundles untouched); the failed one is retried (and fails again)."""
    assert rc == 1, err
    rep = _report(out)
    assert [rep[s]["status"] for s in GOOD] == ["skipped"] * 3
    assert _bundle_stamps(out, GOOD) == before
    assert rep["broken"]["status"] == "failed" and rep["broken"]["action"] == "run"
    assert events[0]["to_run"] == 1 and events[0]["skipped"] == 3


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return _manifest(tmp_path_factory.mktemp("spec"), GOOD)


@pytest.fixture(scope="module")
def local_run(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    rc, events, err = batch(manifest, "--output", out, "--no-texture", "--workers", "2")
    return out, rc, events, err


def test_local_pool_three_bundles_one_error_and_rerun(manifest, local_run):
    out, rc, events, err = local_run
    rep = _check_three_bundles_one_error(out, rc, events, err)
    ex = rep["_doc"]["executor"]
    assert ex["kind"] == "local" and ex["workers"] == 2
    # each worker set up once: at most 2 processes served the 4 items, each loaded the face model once and
    # runs cores/workers torch threads (2 workers on 2 cores: 1 thread each, no oversubscription)
    ran = [rep[s] for s in GOOD + ["broken"]]
    assert len({r["pid"] for r in ran}) <= 2
    assert all(r["face_model_loads"] == 1 for r in ran), ran
    assert all(r["threads"] == max(1, usable_cores() // 2) for r in ran), ran

    before = _bundle_stamps(out, GOOD)
    _check_rerun_skips(out, before, *batch(manifest, "--output", out, "--no-texture", "--workers", "2"))

    # without the broken item nothing is left to do: no worker is even started
    ok = _manifest(manifest.parent, GOOD, broken=False)
    rc, events, err = batch(ok, "--output", out, "--no-texture")
    assert rc == 0, err
    assert events[0]["to_run"] == 0 and events[0]["executor"]["kind"].startswith("none")
    assert _bundle_stamps(out, GOOD) == before


def test_ray_local_cluster_three_bundles_one_error_and_rerun(manifest, tmp_path):
    out = tmp_path / "out"
    # --ray local: ray.init(num_cpus=2) in the driver; the items run as Ray tasks in Ray's worker processes
    rc, events, err = batch(manifest, "--output", out, "--no-texture", "--ray", "local", "--workers", "2")
    rep = _check_three_bundles_one_error(out, rc, events, err)
    ex = rep["_doc"]["executor"]
    assert ex["kind"] == "ray" and ex["cluster_cpus"] == 2 and ex["threads_per_worker"] == 1
    assert all(rep[s]["face_model_loads"] == 1 for s in GOOD)
    before = _bundle_stamps(out, GOOD)
    _check_rerun_skips(out, before, *batch(manifest, "--output", out, "--no-texture", "--ray", "local",
                                           "--workers", "2"))


def test_ctrl_c_keeps_finished_bundles_and_leaves_no_half_one(tmp_path):
    subjects = [f"s{i}" for i in range(4)]
    spec = _manifest(tmp_path / "spec", subjects, broken=False)
    out = tmp_path / "out"
    # one worker: when the first item is reported the next one is running, and SIGINT (to the whole process
    # group, as a terminal's Ctrl-C does) arrives while it is
    rc, rest, err = batch_until_first_item(lambda proc: os.killpg(proc.pid, signal.SIGINT), spec, "--output", out,
                                           "--no-texture", "--workers", "1")
    assert rc == 130, err
    assert "error: cancelled" in err
    assert json.loads(rest.splitlines()[-1])["cancelled"] is True
    rep = _report(out)
    status = {s: rep[s]["status"] for s in subjects}
    assert "done" in status.values() and "cancelled" in status.values(), status
    for s in subjects:  # a subject is either a whole bundle or absent
        if status[s] == "done":
            assert (out / s / "result.json").is_file() and (out / s / "head.obj").is_file()
        else:
            assert status[s] == "cancelled" and not (out / s).exists(), (s, status)
    _no_leftovers(out)

    finished = [s for s in subjects if status[s] == "done"]
    before = _bundle_stamps(out, finished)
    rc, events, err = batch(spec, "--output", out, "--no-texture", "--workers", "2")
    assert rc == 0, err
    rep = _report(out)
    assert all(rep[s]["status"] == ("skipped" if s in finished else "done") for s in subjects), rep
    assert _bundle_stamps(out, finished) == before


def _pool_workers(driver_pid: int) -> list[int]:
    """PIDs of the driver's pebble workers (spawned children; not multiprocessing's resource tracker)."""
    kids = Path(f"/proc/{driver_pid}/task/{driver_pid}/children").read_text().split()
    return [int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through Linux's /proc")
def test_a_killed_worker_fails_only_its_item(manifest, tmp_path):
    """What the kernel's OOM killer does to a worker: that item is reported, the batch goes on in a new worker."""
    spec = tmp_path / "m.csv"
    photo = DATA / "multiview-mvfnet" / "front.jpg"  # with the 2048 px texture: several seconds of work
    # items start largest first: 'ana' padded to be the largest runs first, then the photo, then 'ben'
    ana = tmp_path / "ana.json"
    ana.write_text((manifest.parent / "ana.json").read_text() + " " * (2 * photo.stat().st_size))
    assert (manifest.parent / "ben.json").stat().st_size < photo.stat().st_size
    spec.write_text(f"subject,inputs,landmarks_file\nana,,{ana}\nphoto,{photo},\n"
                    f"ben,,{manifest.parent / 'ben.json'}\n")
    out = tmp_path / "out"
    def kill_the_worker(proc):  # 'ana' is done: the one worker has taken 'photo'
        time.sleep(1.0)  # past pebble's hand-over; the photo item takes >= 5 s (texture bake)
        (worker,) = _pool_workers(proc.pid)
        os.kill(worker, signal.SIGKILL)

    rc, _, err = batch_until_first_item(kill_the_worker, spec, "--output", out, "--workers", "1")
    assert rc == 1, err
    rep = _report(out)
    assert rep["ana"]["status"] == "done" and rep["ben"]["status"] == "done"
    assert rep["photo"]["status"] == "failed" and rep["photo"]["error_code"] == "worker"
    assert "worker process died" in rep["photo"]["error"] and "SIGKILL" in rep["photo"]["error"]
    assert rep["ben"]["pid"] != rep["ana"]["pid"]  # a new worker took over
    assert not (out / "photo").exists()
    _no_leftovers(out)


@pytest.mark.slow
def test_blend_and_glb_per_item(tmp_path):
    spec = tmp_path / "subjects"
    (spec / "anna").mkdir(parents=True)
    shutil.copy(DATA / "multiview-mvfnet" / "front.jpg", spec / "anna" / "front.jpg")
    out = tmp_path / "out"
    rc, events, err = batch(spec, "--output", out, "--no-texture", "--blend", "--glb", "--workers", "1")
    assert rc == 0, err
    blend, glb = out / "anna.blend", out / "anna.glb"
    # a .blend starts "BLENDER", or with zstd's magic when Blender compressed it (5.x does by default)
    assert blend.read_bytes()[:7] == b"BLENDER" or blend.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert glb.read_bytes()[:4] == b"glTF"
    rep = _report(out)
    # the Blender step comes after the pipeline, inside the item's seconds
    t = rep["anna"]["timings_s"]
    assert rep["anna"]["blend"] == str(blend) and t["total"] + t["blender"] <= rep["anna"]["seconds"]
    _no_leftovers(out)
    # the bundle is up to date but its glTF is gone: only the Blender step runs again
    stamp = _bundle_stamps(out, ["anna"])
    glb.unlink()
    rc, events, err = batch(spec, "--output", out, "--no-texture", "--blend", "--glb", "--workers", "1")
    assert rc == 0, err
    assert _report(out)["anna"]["action"] == "export" and glb.is_file()
    assert _bundle_stamps(out, ["anna"]) == stamp


# --- spec reader, resume key, pool sizing: no workers ------------------------------------------------------

def test_folder_spec(tmp_path):
    spec = tmp_path / "spec"
    for d in ("ana", "clips", "one_clip", ".hidden"):
        (spec / d).mkdir(parents=True)
    shutil.copy(DATA / "multiview-mvfnet" / "front.jpg", spec / "ana" / "front.jpg")
    (spec / "clips" / "a.mp4").write_bytes(b"x")
    (spec / "clips" / "b.mp4").write_bytes(b"x")
    (spec / "one_clip" / "take.mov").write_bytes(b"x")
    (spec / "loose.mp4").write_bytes(b"x")
    (spec / "notes.txt").write_text("not an item")
    items = {it.subject: it for it in load_spec(spec, {"texture": False})}
    assert set(items) == {"ana", "clips", "one_clip", "loose"}
    assert items["ana"].inputs == [str(spec / "ana")] and items["ana"].options == {"texture": False}
    assert items["one_clip"].inputs == [str(spec / "one_clip" / "take.mov")]
    assert items["loose"].inputs == [str(spec / "loose.mp4")]
    assert "holds 2 videos" in items["clips"].problem and items["ana"].problem is None


@pytest.mark.parametrize("content, message", [
    ("subject,inputs,colour\nana,a.jpg,red\n", "unknown option 'colour'"),
    ("subject,inputs,texture_size\nana,a.jpg,big\n", "texture_size: 'big' must be a whole number"),
    ("subject,inputs\nana,a.jpg\nAna,b.jpg\n", "subject 'Ana' is used twice"),
    ("subject,inputs\n../up,a.jpg\n", "cannot be a folder name"),
    ("subject,inputs\n.hidden,a.jpg\n", "cannot be a folder name"),
    ("subject,inputs\nana,\n", "has no inputs"),
    ("inputs\na.jpg\n", "needs a header row with a 'subject' column"),
])
def test_bad_manifest_is_refused_before_any_work(tmp_path, content, message):
    spec = tmp_path / "m.csv"
    spec.write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        load_spec(spec)
    assert str(spec) in str(e.value)


def test_bad_manifest_cli_one_line_exit_2(tmp_path):
    spec = tmp_path / "m.json"
    spec.write_text(json.dumps({"items": [{"subject": "ana", "inputs": ["a.jpg"], "smoothing": -1}]}))
    rc, events, err = batch(spec, "--output", tmp_path / "out", timeout=60)
    assert rc == 2 and events == []
    assert err.strip().splitlines() == [f"error: {spec}: item #0: smoothing: -1 must be a number >= 0"]


def test_json_manifest_defaults_and_overrides(tmp_path):
    spec = tmp_path / "m.json"
    spec.write_text(json.dumps({"defaults": {"texture_size": 1024}, "items": [
        {"subject": "a", "inputs": "x/a.jpg"}, {"subject": "b", "inputs": ["/abs/b.jpg"], "texture_size": 512}]}))
    a, b = load_spec(spec, {"texture_size": 4096, "device": "cpu"})
    # a manifest's values win over the command line's, an item's over the manifest's defaults
    assert a.options == {"texture_size": 1024, "device": "cpu"} and b.options["texture_size"] == 512
    assert a.inputs == [str(tmp_path / "x" / "a.jpg")] and b.inputs == ["/abs/b.jpg"]


def test_resume_key_follows_contents_not_paths_or_mtimes(local_run, tmp_path):
    out = local_run[0]
    spec = _manifest(tmp_path / "copy", GOOD, broken=False)  # rewritten here: same seeds, other path
    items = {it.subject: it for it in load_spec(spec, {"texture": False})}
    assert plan(items["ana"], out) == "skip"  # data set moved: contents unchanged, no redo
    lm = Path(items["ana"].options["landmarks_file"])
    os.utime(lm, ns=(1, 1))
    assert plan(items["ana"], out) == "skip"  # touched only
    doc = json.loads(lm.read_text())
    doc["images"][0]["points"][0][0] += 1.0
    lm.write_text(json.dumps(doc))
    assert plan(items["ana"], out) == "run"  # edited
    items["ben"].options["texture_size"] = 1024  # an option that changes the result
    assert plan(items["ben"], out) == "run"
    items["cleo"].options["device"] = "cuda"  # speed only: not part of the key
    assert plan(items["cleo"], out) == "skip"
    assert plan(items["cleo"], out, blend=True) == "export"
    key, files = fingerprint(items["cleo"])
    assert len(key) == 64 and files[0]["sha256"]


def test_pool_size_follows_cores_memory_and_items():
    cores = usable_cores()
    assert pool_size(100, 0.001)[:2] == (cores, 1)
    assert pool_size(1, 0.001)[0] == 1  # never more workers than items
    assert pool_size(100, 1e6)[0] == 1  # memory for less than one worker: still one
    assert pool_size(100, 0.001, workers=1)[:2] == (1, cores)
    assert pool_size(100, 0.001, gpus=1)[0] == 1


def test_items_start_largest_first(tmp_path):
    """Big items go to the workers first, so a batch does not end with one worker on a big item and the others
    idle (2 workers on the bench's mixed batch: 1.59x one worker's rate in manifest order); ties and missing
    inputs keep the spec's order, a missing input counting as nothing."""
    from backend.batch.runner import largest_first
    from backend.batch.spec import Item

    small, big, video = tmp_path / "small", tmp_path / "big", tmp_path / "clip.mp4"
    for folder, n in ((small, 100), (big, 5000)):
        folder.mkdir()
        for i in range(3):
            (folder / f"{i}.jpg").write_bytes(b"x" * n)
    video.write_bytes(b"x" * 20000)
    lm = tmp_path / "lm.json"
    lm.write_text("{" + " " * 1000 + "}")
    items = [Item("a", [str(small)]), Item("b", [str(big)]), Item("c", [str(tmp_path / "gone.jpg")]),
             Item("d", [str(video)]), Item("e", [str(small)]), Item("f", [], {"landmarks_file": str(lm)}),
             Item("g", [str(tmp_path / "nul\x00.jpg")])]
    assert [it.subject for it in largest_first(items)] == ["d", "b", "f", "a", "e", "c", "g"]


def test_the_pool_is_handed_the_largest_items_first(manifest, tmp_path):
    """One worker, a manifest listed smallest first: the items start largest first."""
    spec = tmp_path / "m.csv"
    rows = ["subject,landmarks_file"]
    for name, pad in (("small", 0), ("mid", 4000), ("big", 16000)):
        lm = tmp_path / f"{name}.json"
        lm.write_text((manifest.parent / "ana.json").read_text() + " " * pad)
        rows.append(f"{name},{lm}")
    spec.write_text("\n".join(rows) + "\n")
    rc, _, err = batch(spec, "--output", tmp_path / "out", "--no-texture", "--workers", "1")
    assert rc == 0, err
    rep = _report(tmp_path / "out")
    assert sorted(("small", "mid", "big"), key=lambda s: rep[s]["started"]) == ["big", "mid", "small"]
