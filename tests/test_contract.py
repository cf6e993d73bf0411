"""The contract between the backend and the add-on, defined once in backend/contract.py: result.json's schema
(backend/result.schema.json) checked when a bundle is written and when one is imported, the JSON-lines protocol
version checked on `ready`, the "serve" capability, and one set of photo extensions (HEIC included) for the
backend, the add-on and run.py."""
from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, ROOT

FRONT = DATA / "multiview-mvfnet" / "front.jpg"


@pytest.fixture(scope="module")
def front_points(mp_detector) -> np.ndarray:
    from PIL import Image

    return mp_detector.detect(np.asarray(Image.open(FRONT).convert("RGB"))).points


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, front_points) -> Path:
    """A bundle the real pipeline wrote from a landmarks file without a photo (fit and export only)."""
    from backend.pipeline import reconstruct

    lm = tmp_path_factory.mktemp("lm") / "lm.json"
    lm.write_text(json.dumps({"format": "mediapipe478", "images": [
        {"name": "front", "width": 224, "height": 224, "points": front_points.tolist()}]}))
    out = tmp_path_factory.mktemp("good") / "bundle"
    reconstruct(landmarks_file=lm, output=out, texture=False, device="cpu")
    return out


@pytest.fixture()
def good_doc(good_bundle) -> dict:
    return json.loads((good_bundle / "result.json").read_text())


def _jsonschema_errors(doc) -> list[str]:
    """The reference implementation's verdict (jsonschema, a development requirement) on the same schema."""
    import jsonschema

    from backend import contract

    return [e.message for e in jsonschema.Draft202012Validator(contract.load_schema()).iter_errors(doc)]


def test_written_bundle_passes_and_the_schema_is_valid_json_schema(good_doc):
    import jsonschema

    from backend import contract

    jsonschema.Draft202012Validator.check_schema(contract.load_schema())
    assert contract.schema_problems(good_doc) == []
    assert _jsonschema_errors(good_doc) == []
    view = good_doc["views"][0]
    assert view["image"] is None and view["n_faces"] == 1  # as docs/result-bundle.md says


def test_model_sha256_is_the_face_model_files(good_doc):
    from backend import paths
    from backend.health import file_sha256

    checksums = json.loads((ROOT / "weights" / "checksums.json").read_text())
    assert good_doc["model"]["sha256"] == file_sha256(paths.ICT_MODEL) == checksums["ict-facekit/ict_face_model.npz"]


def _set(path, value):
    def mutate(doc):
        *head, last = path
        for k in head:
            doc = doc[k]
        if value is _DELETE:
            del doc[last]
        else:
            doc[last] = value
    return mutate


_DELETE = object()
# name -> (change to a good result.json, what the one-line error must say)
BAD_DOCS = {
    "missing_field": (_set(["views", 0, "camera", "fx"], _DELETE), "result.json.views[0].camera: missing field 'fx'"),
    "wrong_type": (_set(["views", 0, "camera", "fx"], "935"), 'result.json.views[0].camera.fx: must be number, not "935"'),
    "weight_out_of_range": (_set(["views", 0, "expression", "jawOpen"], 1.5),
                            "result.json.views[0].expression.jawOpen: must be <= 1, is 1.5"),
    "arkit_name_missing": (_set(["views", 0, "arkit", "tongueOut"], _DELETE),
                           "result.json.views[0].arkit: missing field 'tongueOut'"),
    "image_outside_bundle": (_set(["views", 0, "image"], "../../secret.jpg"),
                             'result.json.views[0].image: "../../secret.jpg" does not match'),
    "model_checksum_not_hex": (_set(["model", "sha256"], "07be7fb0c0"), 'result.json.model.sha256: "07be7fb0c0" does not'),
    "undocumented_field": (_set(["colour"], "blue"), "result.json.colour: not a field of result.schema.json"),
    "half_a_texture": (_set(["texture"], {"size": 512}), "result.json.texture: matches no alternative (must have at "
                                                         "most 0 fields, has 1; or missing field 'work_size')"),
    "bad_landmark_format": (_set(["fit", "landmark_format"], "dlib68"),
                            'result.json.fit.landmark_format: must be one of "mediapipe478", "ibug68", not "dlib68"'),
}


@pytest.mark.parametrize("case", list(BAD_DOCS))
def test_crafted_bad_result_fails_with_a_clear_message(case, good_doc, tmp_path):
    from backend import contract

    mutate, message = BAD_DOCS[case]
    doc = copy.deepcopy(good_doc)
    mutate(doc)
    assert _jsonschema_errors(doc), "the reference validator accepts it: the case tests nothing"
    with pytest.raises(contract.ResultSchemaError) as ei:
        contract.check_result(doc, tmp_path / "result.json")
    line = str(ei.value)
    assert "\n" not in line and line.startswith(f"{tmp_path / 'result.json'}: does not match result.schema.json: ")
    assert message in line, line


def test_reader_takes_newer_fields_but_not_broken_ones(good_bundle, tmp_path):
    """The writer is strict, a reader (backend.bundle.read_result, the add-on's import) takes fields it does not
    know (a newer backend, same schema_version) and refuses wrong shapes, another program's file and a newer
    schema_version, each with one line naming result.json."""
    from backend.bundle import read_result
    from face_reconstruct_addon.shared import check_bundle

    def bundle_with(mutate) -> Path:
        out = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(good_bundle, out)
        doc = json.loads((out / "result.json").read_text())
        mutate(doc)
        (out / "result.json").write_text(json.dumps(doc))
        return out

    newer = bundle_with(_set(["views", 0, "depth_map"], "depth.exr"))
    assert read_result(newer)["views"][0]["depth_map"] == "depth.exr"
    check_bundle(newer)
    for mutate, message in [(_set(["views", 0, "camera", "R"], [[1, 0, 0]]), "camera.R: must have at least 3 items"),
                            (_set(["schema"], "other.tool"), "not a FaceForge result (schema 'other.tool')"),
                            (_set(["schema_version"], 2), "schema version 2 is newer than this reader")]:
        bad = bundle_with(mutate)
        for read in (read_result, check_bundle):
            # the add-on loads contract.py by path: its own ResultSchemaError class, a ValueError too
            with pytest.raises(ValueError) as ei:
                read(bad)
            assert type(ei.value).__name__ == "ResultSchemaError"
            assert str(ei.value).startswith(str(bad / "result.json")) and message in str(ei.value), str(ei.value)


def test_writer_refuses_what_the_schema_does_not_describe(good_doc, model, tmp_path):
    """write_bundle checks result.json before anything is in place: a field docs/result-bundle.md does not
    describe fails the run (a bug in the writer), and the output folder is not created."""
    from backend import contract
    from backend.bundle import write_bundle

    filled_in = {"schema", "schema_version", "backend_version", "model", "camera_convention", "identity",
                 "written_files"}
    result = {k: v for k, v in good_doc.items() if k not in filled_in}
    result["views"][0]["colour"] = "blue"
    out = tmp_path / "bundle"
    with pytest.raises(contract.ResultSchemaError, match=r"views\[0\]\.colour: not a field of result.schema.json"):
        write_bundle(out, result, model, np.array(good_doc["identity"], np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _schema_field_names(node) -> set[str]:
    names = set()
    if isinstance(node, dict):
        for key in ("properties",):
            names |= set(node.get(key, {}))
        names |= set(node.get("required", ())) if node.get("$ref") != "#/$defs/weights" else set()
        for v in node.values():
            names |= _schema_field_names(v)
    elif isinstance(node, list):
        for v in node:
            names |= _schema_field_names(v)
    return names


def test_docs_name_every_field_of_the_schema():
    """written <= schema (the writer is strict) and schema <= docs (here): the document describes what is
    written. ARKit's 52 names are one entry in the docs ("the 52 standard ARKit names")."""
    from backend import contract

    import re

    blocks = "\n".join(re.findall(r"```\n(.*?)```", (ROOT / "docs" / "result-bundle.md").read_text(), re.S))
    names = _schema_field_names(contract.load_schema())
    assert {"n_faces", "sha256", "image", "shape_uncertainty_mm"} <= names
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", blocks))
    assert missing == []


def test_the_validator_knows_every_keyword_the_schema_uses():
    """A keyword backend/contract.py does not implement would be skipped without a word: refuse that here."""
    from backend import contract

    def keywords(node, in_properties=False):
        found = set()
        if isinstance(node, dict):
            for k, v in node.items():
                if not in_properties:
                    found.add(k)
                found |= keywords(v, in_properties=k in ("properties", "$defs") and not in_properties)
        elif isinstance(node, list):
            for v in node:
                found |= keywords(v)
        return found

    used = keywords(contract.load_schema())
    assert used - contract.SCHEMA_KEYWORDS == set()


# -- protocol ---------------------------------------------------------------------------------------------------

def _backend_copy(root: Path, contract_edit=None) -> Path:
    """This checkout's backend/ in another folder, optionally with its contract.py changed."""
    shutil.copytree(ROOT / "backend", root / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    if contract_edit is not None:
        p = root / "backend" / "contract.py"
        p.write_text(contract_edit(p.read_text()))
    return root


def test_protocol_mismatch_is_one_clear_error_and_ends_the_backend(tmp_path):
    """A real backend server from another FaceForge version (its contract.py says protocol 99) under this
    add-on's client: the job ends at `ready` with a one-line setup error naming both versions, the server
    process is gone, and nothing was written."""
    from face_reconstruct_addon.client import PROTOCOL, BackendError, ReconstructJob, check_backend

    root = _backend_copy(tmp_path / "other", lambda s: s.replace("\nPROTOCOL = 1\n", "\nPROTOCOL = 99\n"))
    out = tmp_path / "out" / "bundle"
    job = ReconstructJob(sys.executable, str(root), [str(FRONT)], str(out), {"texture": False})
    with pytest.raises(BackendError) as ei:
        job.run_blocking(timeout=120)
    assert ei.value.code == "setup" and "\n" not in str(ei.value)
    assert str(ei.value).startswith(f"{root}: the backend (version ")
    assert "speaks protocol 99, this add-on speaks protocol 1" in str(ei.value) and PROTOCOL == 1
    assert not job.client.alive()
    assert not out.exists()
    with pytest.raises(BackendError, match="speaks protocol 99, this add-on speaks protocol 1"):
        check_backend(sys.executable, str(root), timeout=120)


def test_same_protocol_is_accepted(tmp_path):
    from face_reconstruct_addon.client import check_backend

    report = check_backend(sys.executable, str(ROOT), timeout=120)
    assert report["event"] == "check" and "torch" in report


def test_serve_capability_picks_the_server_command(tmp_path):
    """`-m backend serve` where the backend folder's contract.py declares it; `-m backend.server` (which every
    backend has) for a backend without contract.py or without the capability."""
    from face_reconstruct_addon.client import server_command

    assert server_command("py", str(ROOT))[-3:] == ["-m", "backend", "serve"]
    old = _backend_copy(tmp_path / "old")
    (old / "backend" / "contract.py").unlink()
    assert server_command("py", str(old))[-2:] == ["-m", "backend.server"]
    bare = _backend_copy(tmp_path / "bare", lambda s: s.replace('CAPABILITIES = frozenset({"serve"})',
                                                                  "CAPABILITIES = frozenset()"))
    assert server_command("py", str(bare))[-2:] == ["-m", "backend.server"]


# -- extensions -------------------------------------------------------------------------------------------------

def test_one_set_of_photo_extensions_heic_included(tmp_path):
    """A folder of photos as the backend, run.py and the add-on each pick them: the same files, HEIC among them
    (the add-on and run.py used to drop what the backend reads)."""
    import run
    from backend.contract import IMAGE_EXTENSIONS, file_filter
    from backend.images import collect_inputs
    from face_reconstruct_addon import jobs, operators

    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("a.jpg", "b.HEIC", "c.heif", "d.png", "e.webp", "f.tiff", "notes.txt", "clip.mp4"):
        (folder / name).write_bytes(b"x")
    backend_picks = sorted(str(p.resolve()) for p in collect_inputs([str(folder)]))
    assert backend_picks == sorted(run.expand_images([str(folder)]))
    assert sorted(Path(p).name for p in backend_picks) == ["a.jpg", "b.HEIC", "c.heif", "d.png", "e.webp", "f.tiff"]
    addon_picks = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in jobs.IMAGE_EXTS)
    assert addon_picks == [Path(p).name for p in backend_picks]
    assert {".heic", ".heif"} <= jobs.IMAGE_EXTS == IMAGE_EXTENSIONS
    glob = operators.FACEFORGE_OT_photo_add.__annotations__["filter_glob"].keywords["default"]
    assert glob == file_filter(IMAGE_EXTENSIONS) and "*.heic" in glob.split(";")


def test_output_dir_still_loads_the_way_older_add_ons_load_it():
    """Add-ons from before contract.py load backend/output_dir.py by path as a lone module, where its relative
    import of contract.py has no package: it finds its sibling by path, so they keep working with this backend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("faceforge_backend_output_dir_old", ROOT / "backend" / "output_dir.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SCHEMA == "faceforge.result"
