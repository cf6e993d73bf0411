"""Data safety and input hardening: a user's files are never deleted, no path escapes the bundle,
and every bad input is one line naming the file and the field.

The user-visible messages are checked through the real CLI (a subprocess, or main() in-process where the
refusal comes before any work); the pieces behind them in-process, on real photos, with real MediaPipe and
(for what Blender shows) real bpy.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bundles import result, view
from tests.conftest import DATA, ROOT

FRONT = DATA / "multiview-mvfnet" / "front.jpg"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "FACEFORGE_MEDIAPIPE_LOGS")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "reconstruct", *map(str, args), "--no-texture", "--quiet"],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=_env())


def cli_inprocess(*args) -> tuple[int, str]:
    """main() in this process, for refusals that come before any detection or fitting."""
    from backend import __main__ as main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main.main(["reconstruct", *map(str, args), "--no-texture", "--quiet"])
    return rc, err.getvalue()


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def front_points(mp_detector) -> np.ndarray:
    """MediaPipe's 478 points on the front photo: a landmarks file whose fit is real and quick."""
    return mp_detector.detect(np.asarray(Image.open(FRONT).convert("RGB"))).points


def landmarks_doc(points, **entry) -> dict:
    return {"format": "mediapipe478", "images": [{"points": np.asarray(points).tolist(), **entry}]}


def write_json(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, front_points) -> Path:
    """A bundle made by the CLI from a landmarks file with no image (quick: fit and export only)."""
    lm = write_json(tmp_path_factory.mktemp("lm") / "lm.json", landmarks_doc(front_points, width=224, height=224))
    out = tmp_path_factory.mktemp("earlier") / "bundle"
    proc = cli("--landmarks-file", lm, "--output", out, "--subject", "earlier")
    assert proc.returncode == 0, proc.stderr
    return out


# ---------------------------------------------------------------------------------------------------------------
# a folder is a bundle by its schema; what the user put into a bundle survives the next run

def assert_output_refused(out: Path, tmp_path: Path, front_points, line: str) -> None:
    """A landmarks-file run into `out` exits 4 with exactly `line`, before any work, and `out` is untouched."""
    before = snapshot(out)
    lm = write_json(tmp_path / "lm.json", landmarks_doc(front_points, width=224, height=224))
    rc, err = cli_inprocess("--landmarks-file", lm, "--output", out)
    assert rc == 4
    assert one_line(err) == line
    assert snapshot(out) == before


def test_folder_with_another_programs_result_json_is_refused(tmp_path, front_points):
    """a user's folder holding a document and some other tool's result.json was replaced whole."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.docx").write_bytes(b"PK\x03\x04 the user's only copy")
    write_json(folder / "result.json", {"accuracy": 0.93, "epochs": 40})
    assert_output_refused(folder, tmp_path, front_points, f"error: {folder}: holds a result.json FaceForge did not "
                          "write; refusing to replace it (choose another output folder)")


def test_writer_refuses_a_foreign_folder_that_appears_during_the_run(tmp_path, model):
    """The check before the work is repeated under the lock at the swap: a folder filled meanwhile survives."""
    from backend.bundle import write_bundle
    from backend.errors import OutputError

    out = tmp_path / "later"
    out.mkdir()
    write_json(out / "result.json", {"schema": "someone.else", "rows": 3})
    before = snapshot(out)
    with pytest.raises(OutputError, match="holds a result.json FaceForge did not write"):
        write_bundle(out, result("x", model), model, np.zeros(model.n_identity))
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later"]


def _add_user_files(bundle: Path) -> dict:
    (bundle / "notes.txt").write_text("lighting: softbox left\n")
    (bundle / "renders").mkdir()
    (bundle / "renders" / "front_0001.png").write_bytes(b"\x89PNG fake render")
    (bundle / "renders" / "empty").mkdir()
    (bundle / "images" / "reference.jpg").write_bytes(b"a reference the user dropped among the photos")
    (bundle / "latest").symlink_to("renders/front_0001.png")
    return {"notes.txt": b"lighting: softbox left\n", "renders/front_0001.png": b"\x89PNG fake render",
            "images/reference.jpg": b"a reference the user dropped among the photos"}


def test_user_files_in_a_bundle_are_carried_into_the_new_one(tmp_path, earlier, front_points):
    """notes and a folder of renders inside a bundle were deleted by the next run."""
    out = tmp_path / "bundle"
    shutil.copytree(earlier, out, symlinks=True)
    mine = _add_user_files(out)
    lm = write_json(tmp_path / "lm.json", landmarks_doc(front_points, width=224, height=224))
    proc = cli("--landmarks-file", lm, "--output", out, "--subject", "second")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["subject"] == "second"
    for rel, data in mine.items():
        assert (out / rel).read_bytes() == data, rel
    assert (out / "renders" / "empty").is_dir()
    assert os.readlink(out / "latest") == "renders/front_0001.png"
    # the bundle lists what FaceForge wrote; the user's files are not among them
    assert not set(doc["written_files"]) & {"notes.txt", "latest", *mine}
    assert {"result.json", "head.obj", "head.mtl", "blendshapes.npz"} <= set(doc["written_files"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "lm.json"]  # no .old/.tmp left


def test_bundles_from_before_the_file_list_still_count_as_bundles(tmp_path, model):
    """Bundles written before result.json listed its files are told apart by their schema marker, and their
    own files by files/views/animation; a user's file in one survives."""
    from backend.bundle import write_bundle
    from backend.output_dir import output_problem

    out = write_bundle(tmp_path / "b", result("old", model, views=[view(model, "a", "images/a.jpg")]), model,
                       np.zeros(model.n_identity), extra_files={"images/a.jpg": b"jpeg"})
    doc = json.loads((out / "result.json").read_text())
    del doc["written_files"]
    (out / "result.json").write_text(json.dumps(doc))
    (out / "mine.txt").write_text("keep me")
    assert output_problem(out) is None
    write_bundle(out, result("new", model), model, np.zeros(model.n_identity))
    assert (out / "mine.txt").read_text() == "keep me"
    assert not (out / "images" / "a.jpg").exists()  # FaceForge's own photo copy of the old bundle went with it


def test_user_file_named_like_a_bundle_file_is_refused_before_the_work(tmp_path, earlier, front_points):
    """A user's albedo.png in a bundle made without texture would be overwritten by the next textured run."""
    out = tmp_path / "bundle"
    shutil.copytree(earlier, out)
    (out / "albedo.png").write_bytes(b"hand-painted")
    assert_output_refused(out, tmp_path, front_points, f"error: {out / 'albedo.png'}: was not written by FaceForge, "
                          "and a new result would replace it; move it out of the bundle folder")


def test_user_file_clashing_inside_images_is_refused_at_the_swap(tmp_path, model):
    """Names under images/ are only known after the work: the swap refuses, both bundles' files intact."""
    from backend.bundle import write_bundle
    from backend.errors import OutputError

    out = write_bundle(tmp_path / "b", result("old", model), model, np.zeros(model.n_identity))
    (out / "images" / "front.jpg").write_bytes(b"the user's own front.jpg")
    before = snapshot(out)
    with pytest.raises(OutputError, match="was not written by FaceForge, and the new result has a file by that name"):
        write_bundle(out, result("new", model), model, np.zeros(model.n_identity),
                     extra_files={"images/front.jpg": b"our copy"})
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ---------------------------------------------------------------------------------------------------------------
# names become safe file names; a relative image is read from the landmarks file's folder

def test_view_name_cannot_escape_the_bundle(tmp_path, front_points):
    """"name": "../../../x" gave "image": "images/../../../x.jpg" in result.json."""
    from backend.pipeline import reconstruct

    shutil.copy(FRONT, tmp_path / "front.jpg")
    lm = write_json(tmp_path / "lm" / "lm.json", {"format": "mediapipe478", "images": [
        {"name": "../../../x", "image": str(tmp_path / "front.jpg"), "points": front_points.tolist()},
        {"name": "/etc/passwd", "image": str(tmp_path / "front.jpg"), "points": front_points.tolist()},
        {"name": "CON", "image": str(tmp_path / "front.jpg"), "points": front_points.tolist()},
        {"name": "con", "image": str(tmp_path / "front.jpg"), "points": front_points.tolist()}]})
    out = tmp_path / "deep" / "er" / "bundle"
    result = reconstruct(landmarks_file=lm, output=out, texture=False, device="cpu")
    images = [v["image"] for v in result["views"]]
    assert images == ["images/_.._.._x.jpg", "images/_etc_passwd.jpg", "images/_CON.jpg", "images/_con_1.jpg"]
    for rel in images:
        assert (out / rel).resolve().parent == (out / "images").resolve()
        assert (out / rel).read_bytes() == FRONT.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.suffix == ".jpg" and "bundle" not in p.parts) == ["front.jpg"]


def test_relative_image_is_read_next_to_the_landmarks_file(tmp_path, front_points):
    """loaded from next to the JSON but copied from the working folder (another photo by that name
    became the camera background)."""
    shot = tmp_path / "shoot"
    shot.mkdir()
    shutil.copy(FRONT, shot / "photo.jpg")
    lm = write_json(shot / "lm.json", landmarks_doc(front_points, image="photo.jpg"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (224, 224), (255, 0, 255)).save(elsewhere / "photo.jpg")  # the decoy in the working folder
    out = tmp_path / "bundle"
    proc = cli("--landmarks-file", lm, "--output", out, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    view = json.loads((out / "result.json").read_text())["views"][0]
    assert view["source_path"] == str(shot / "photo.jpg")
    assert (out / view["image"]).read_bytes() == FRONT.read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# landmarks files are checked at the door: exit 2, one line naming the file and the field

def _bad_landmarks(points):
    pts = np.asarray(points).tolist()

    def with_point(k, value):
        p = [list(q) for q in pts]
        p[k] = value
        return {"format": "mediapipe478", "images": [{"points": p, "width": 224, "height": 224}]}

    def entry(**kw):
        return {"format": "mediapipe478", "images": [{"points": pts, "width": 224, "height": 224, **kw}]}

    def literal(k, j, text):  # a JSON literal json.dumps would not write (NaN, -Infinity, 1e400) at points[k][j]
        p = [list(q) for q in pts]
        p[k][j] = 123456.789
        doc = {"format": "mediapipe478", "images": [{"points": p, "width": 224, "height": 224}]}
        return json.dumps(doc).replace("123456.789", text)

    return {
        "nan": (literal(17, 0, "NaN"), "images[0].points[17]: not a finite number"),
        "infinity": (literal(5, 1, "-Infinity"), "images[0].points[5]: not a finite number"),
        "overflow": (literal(5, 1, "1e400"), "images[0].points[5]: not a finite number"),
        "point_as_strings": (with_point(3, ["12", "40"]), 'images[0].points[3]: not a number (got "12")'),
        "point_not_a_pair": (with_point(3, [12]), "images[0].points[3]: must be a [u, v] pair of numbers (got [12])"),
        "images_not_a_list": ({"format": "mediapipe478", "images": {"a": 1}},
                              'images: must be a list of images (got {"a": 1})'),
        "images_empty": ({"format": "mediapipe478", "images": []}, "images: the list is empty"),
        "format_unknown": ({"format": "dlib5", "images": []},
                           "format: must be one of ['ibug68', 'mediapipe478'] (got \"dlib5\")"),
        "focal_as_string": (entry(focal_px="1400"), 'images[0].focal_px: not a number (got "1400")'),
        "focal_absurd": (entry(focal_px=1e12), "images[0].focal_px: 1e+12 px is implausible for a 224x224 image "
                                              "(expected 45 to 4480)"),
        "width_zero": (entry(width=0), "images[0].width: must be a whole number of pixels from 1 to 100000 (got 0)"),
        "height_negative": (entry(height=-5),
                            "images[0].height: must be a whole number of pixels from 1 to 100000 (got -5)"),
        "width_fractional": (entry(width=223.5),
                             "images[0].width: must be a whole number of pixels from 1 to 100000 (got 223.5)"),
        "width_huge": (entry(width=1e30),
                       "images[0].width: must be a whole number of pixels from 1 to 100000 (got 1e+30)"),
        "no_size": ({"format": "mediapipe478", "images": [{"points": pts}]},
                    'images[0]: give "width" and "height" (or an "image")'),
        "point_far_outside": (with_point(17, [5000.0, 20.0]), "images[0].points[17]: (5000, 20) is far outside the "
                              "224x224 image (points are pixel coordinates in that image)"),
        "normalised_points": ({"format": "mediapipe478", "images": [
            {"points": (np.asarray(pts) / 224).tolist(), "width": 224, "height": 224}]},
            "images[0].points: the eye corners 33 and 263 are 0.39 px apart; points must be pixel coordinates, "
            "not 0..1"),
        "too_few_points": ({"format": "mediapipe478", "images": [{"points": pts[:68], "width": 224, "height": 224}]},
                           "images[0].points: expected 478 points, got 68"),
        "name_not_text": (entry(name=5), "images[0].name: must be a string (got 5)"),
        "not_json": ("{format: mediapipe478", "landmarks file is not valid JSON (Expecting property name enclosed in "
                     "double quotes: line 1 column 2 (char 1))"),
        "not_an_object": ("[1, 2]", 'landmarks file must hold a JSON object with "format" and "images"'),
    }


BAD_CASES = ["nan", "infinity", "overflow", "point_as_strings", "point_not_a_pair", "images_not_a_list",
             "images_empty", "format_unknown", "focal_as_string", "focal_absurd", "width_zero", "height_negative",
             "width_fractional", "width_huge", "no_size", "point_far_outside", "normalised_points", "too_few_points",
             "name_not_text", "not_json", "not_an_object"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_landmarks_file_is_one_line_naming_the_field(case, tmp_path, front_points):
    doc, message = _bad_landmarks(front_points)[case]
    lm = write_json(tmp_path / "lm.json", doc)
    out = tmp_path / "bundle"
    rc, err = cli_inprocess("--landmarks-file", lm, "--output", out)
    assert rc == 2, err
    assert one_line(err) == f"error: {lm}: {message}"
    assert not out.exists()


def test_landmarks_file_errors_through_the_real_cli(tmp_path, front_points):
    """The in-process cases above, once as a user runs them: a process, stderr, exit status."""
    lm = write_json(tmp_path / "lm.json", _bad_landmarks(front_points)["nan"][0])
    proc = cli("--landmarks-file", lm, "--output", tmp_path / "bundle")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"error: {lm}: images[0].points[17]: not a finite number"


def test_named_image_that_is_missing_is_an_error(tmp_path, front_points):
    lm = write_json(tmp_path / "lm.json", landmarks_doc(front_points, image="gone.jpg", width=224, height=224))
    rc, err = cli_inprocess("--landmarks-file", lm, "--output", tmp_path / "bundle")
    assert rc == 2
    assert one_line(err) == f"error: {lm}: images[0].image: no such file ({tmp_path / 'gone.jpg'})"


def test_image_size_must_match_width_and_height(tmp_path, front_points):
    shutil.copy(FRONT, tmp_path / "front.jpg")
    lm = write_json(tmp_path / "lm.json", landmarks_doc(front_points, image="front.jpg", width=448, height=448))
    rc, err = cli_inprocess("--landmarks-file", lm, "--output", tmp_path / "bundle")
    assert rc == 2
    assert one_line(err) == (f"error: {lm}: images[0]: width x height 448x448 differ from the image front.jpg "
                             "(224x224 px, upright)")


def test_bad_option_values_are_refused_before_any_work(tmp_path):
    rc, err = cli_inprocess(FRONT, "--output", tmp_path / "b", "--texture-size", "-5")
    assert rc == 2
    assert one_line(err) == "error: --texture-size must be from 64 to 8192 (got -5) (use --no-texture for none)"
    rc, err = cli_inprocess(FRONT, "--output", tmp_path / "b", "--face-index", "-1")
    assert rc == 2 and one_line(err) == "error: --face-index must be at least 0 (got -1)"
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------------------
# what Blender shows behind the camera is what the fit saw

def _portrait() -> np.ndarray:
    """The front photo on a taller grey canvas (224 x 320): a non-square image, so sideways shows."""
    canvas = np.full((320, 224, 3), 128, np.uint8)
    canvas[48:272] = np.asarray(Image.open(FRONT).convert("RGB"))
    return canvas


def _blender_pixels(bpy, path: Path) -> np.ndarray:
    """The image as Blender 5 loads it: RGB uint8, top row first."""
    img = bpy.data.images.load(str(path))
    try:
        w, h = img.size
        assert w > 0 and h > 0, f"Blender could not load {path.name}"
        px = np.array(img.pixels[:], np.float32).reshape(h, w, img.channels)[::-1, :, :3]
        if img.colorspace_settings.name != "sRGB" or img.is_float:
            pytest.fail(f"unexpected colour space {img.colorspace_settings.name}")
        return np.round(px * 255).astype(np.uint8)
    finally:
        bpy.data.images.remove(img)


@pytest.fixture(scope="module")
def bpy():
    return pytest.importorskip("bpy")


def _reconstruct_one(photo: Path, out: Path) -> dict:
    from backend.pipeline import reconstruct

    return reconstruct([photo], out, texture=False, device="cpu")


def test_exif_rotated_photo_is_stored_upright(tmp_path, bpy):
    """a photo with EXIF orientation 6 was copied with the tag, and Blender (which ignores the tag)
    showed it sideways."""
    upright = _portrait()
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers turn the stored pixels 90 degrees clockwise
    photo = tmp_path / "phone.jpg"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(photo, exif=exif.tobytes(), quality=95)
    result = _reconstruct_one(photo, tmp_path / "bundle")
    view = result["views"][0]
    assert (view["width"], view["height"]) == (224, 320) and view["image"] == "images/phone.jpg"
    shown = _blender_pixels(bpy, tmp_path / "bundle" / view["image"])
    assert shown.shape == upright.shape
    assert np.abs(shown.astype(int) - upright).mean() < 0.8  # JPEG q95 twice: measured 0.38 grey levels


def test_upright_jpeg_is_copied_byte_for_byte(tmp_path):
    result = _reconstruct_one(FRONT, tmp_path / "bundle")
    assert (tmp_path / "bundle" / result["views"][0]["image"]).read_bytes() == FRONT.read_bytes()


def test_heic_is_stored_as_a_format_blender_loads(tmp_path, bpy):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    upright = _portrait()
    photo = tmp_path / "iphone.heic"
    Image.fromarray(upright).save(photo, quality=95)
    result = _reconstruct_one(photo, tmp_path / "bundle")
    view = result["views"][0]
    assert view["image"] == "images/iphone.jpg"
    shown = _blender_pixels(bpy, tmp_path / "bundle" / view["image"])
    assert shown.shape == upright.shape
    assert np.abs(shown.astype(int) - upright).mean() < 0.6  # HEIC then JPEG q95: measured 0.27 grey levels


def test_landmark_only_views_write_image_null(tmp_path, front_points):
    from backend.bundle import read_result
    from backend.pipeline import reconstruct

    lm = write_json(tmp_path / "lm.json", landmarks_doc(front_points, width=224, height=224))
    result = reconstruct(landmarks_file=lm, output=tmp_path / "bundle", texture=True, device="cpu")
    assert '"image": null' in (tmp_path / "bundle" / "result.json").read_text()
    doc = read_result(tmp_path / "bundle")
    assert doc["views"][0]["image"] is None and doc["views"][0]["source_path"] == ""
    assert list((tmp_path / "bundle" / "images").iterdir()) == []
    assert "no texture baked: 1 of 1 views have no photo (landmarks only)" in result["warnings"]
    assert "albedo" not in doc["files"]


# ---------------------------------------------------------------------------------------------------------------
# group photos, --face-index, tiny faces

def test_group_photo_of_27_faces_finds_them_all(mp_detector):
    """MediaPipe's detector sees the whole photo at 128 px, so faces under ~1/8 of it are missed
    (tools/measure_face_search.py); the tiled search finds every face of a 9x3 group, each once."""
    from tools.measure_face_search import face_crops, group_photo

    group = group_photo(face_crops(mp_detector), n=27, cols=9, cell=300)
    assert mp_detector.detect_all(group) == []  # one pass: none of them
    faces = mp_detector.find_faces(group)
    cells = sorted((int((f.box[1] + f.box[3]) / 2 // 300), int((f.box[0] + f.box[2]) / 2 // 300)) for f in faces)
    assert cells == [(r, c) for r in range(3) for c in range(9)]
    det = mp_detector.detect(group, "group.jpg", face_index=26)
    assert det.n_faces == 27


def test_background_found_as_a_face_is_not_counted(mp_detector):
    """The group search must not count what the detector takes for a face at one chance scale: on this photo
    the one pass "finds" a face on the building behind, and the tiles one on the ear. Confirmed in a crop
    where the face would fill 40 %, only the real face is left (a false "2 faces found" warning before)."""
    from backend.images import load_image

    photo = load_image(DATA / "detector" / "obama4.jpg").rgb
    assert len(mp_detector.detect_all(photo)) == 2
    faces = mp_detector.find_faces(photo, everyone=True)
    assert len(faces) == 1 and 500 < (faces[0].box[0] + faces[0].box[2]) / 2 < 900  # the face, not the building
    det = mp_detector.detect(photo, "obama4.jpg")
    assert det.n_faces == 1 and det.warnings == []


def test_face_index_past_the_last_face_is_an_error(tmp_path):
    rc, err = cli_inprocess(FRONT, "--output", tmp_path / "b", "--face-index", "3")
    assert rc == 2
    assert one_line(err) == f"error: {FRONT}: --face-index 3 asked for, but only one face was found"


def _tiny_face_photo(path: Path, extent_px: int, mp_detector) -> Path:
    from tools.measure_face_search import face_crops, paste

    crop, ratio = face_crops(mp_detector)[0]
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    paste(canvas, crop, int(extent_px / ratio), 1800, 1300)
    Image.fromarray(canvas).save(path, quality=90)
    return path


def test_tiny_face_gets_a_hint(tmp_path, mp_detector):
    """a 32 px face in a 4000 px photo (none of 8 such faces is found, 3 of 8 at 40 px); a 64 px
    one is (the hint's "about 50 px")."""
    found = mp_detector.find_faces(np.asarray(Image.open(_tiny_face_photo(tmp_path / "ok.jpg", 64, mp_detector))))
    assert len(found) == 1
    photo = _tiny_face_photo(tmp_path / "crowd.jpg", 32, mp_detector)
    proc = cli(photo, "--output", tmp_path / "b")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (f"error: {photo}: no face found (faces smaller than about 50 px across, or "
                                     "turned far from the camera, are missed; crop the photo around the face)")


# ---------------------------------------------------------------------------------------------------------------
# short videos, animated images, symlink loops

def test_video_shorter_than_max_frames_warns(tmp_path):
    from backend.video import detect_video
    from tests.test_video import write_clip

    clip = write_clip(tmp_path / "clip.mp4", n=12)
    vf = detect_video(clip, frame_step=1, max_frames=100)
    assert len(vf.frames) == 12
    assert vf.warnings == ["clip.mp4: only 12 frames to track, fewer than the 100 --max-frames asked for "
                           "(the video is shorter)"]
    assert detect_video(clip, frame_step=1, max_frames=10).warnings == []


def test_animated_gif_warns_that_only_the_first_frame_is_used(tmp_path):
    from backend.pipeline import detect_views

    first = Image.open(FRONT).convert("RGB")
    gif = tmp_path / "wave.gif"
    first.save(gif, save_all=True, append_images=[first.rotate(10), first.rotate(20)], duration=100, loop=0)
    views, _ = detect_views([gif])
    assert "wave.gif: animated GIF with 3 frames; only the first frame is used" in views[0].warnings
    assert views[0].image_suffix == ".png" and not views[0].copy_source  # GIF is re-encoded, palette and all


@pytest.mark.parametrize("kind", ["photo", "folder_argument", "video", "landmarks_file"])
def test_symlink_loop_says_loop(tmp_path, kind):
    """a symlink loop was reported as "no such file"."""
    name = {"photo": "a.jpg", "folder_argument": "shots", "video": "clip.mp4", "landmarks_file": "lm.json"}[kind]
    a, b = tmp_path / name, tmp_path / f"other_{name}"
    a.symlink_to(b)
    b.symlink_to(a)
    args = ["--landmarks-file", a] if kind == "landmarks_file" else [a]
    rc, err = cli_inprocess(*args, "--output", tmp_path / "b")
    assert rc == 2
    line = one_line(err)
    assert line.startswith(f"error: {a}: ") and "symbolic link loop (a link that points back at itself)" in line


def test_broken_symlink_says_where_it_points(tmp_path):
    from backend.errors import InputError
    from backend.images import collect_inputs

    link = tmp_path / "a.jpg"
    link.symlink_to(tmp_path / "moved.jpg")
    with pytest.raises(InputError) as e:
        collect_inputs([str(link)])
    assert str(e.value) == f"{link}: broken symbolic link (it points to {tmp_path / 'moved.jpg'}, which does not exist)"
