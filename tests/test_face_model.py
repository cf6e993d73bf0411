import numpy as np
import torch

from backend.face_model import (ARKIT_52, PARTS, TorchFaceModel, arkit_to_shape_names, ict_to_arkit_name,
                                shape_names_to_arkit)


def test_model_dimensions(model):
    assert model.n_vertices == 26719 and model.n_identity == 100 and model.n_expression == 53
    assert len(model.polygon_sizes) == 26384
    assert sum(b - a for a, b in PARTS.values()) == model.n_vertices
    assert model.landmarks_ibug68.shape == (68,)


def test_numpy_and_torch_evaluation_agree(model):
    rng = np.random.default_rng(0)
    ident = rng.standard_normal((4, 100)).astype(np.float32)
    expr = rng.uniform(0, 1, (4, 53)).astype(np.float32)
    v_np = model.vertices(ident, expr)
    tm = TorchFaceModel(model)
    v_t = tm(torch.as_tensor(ident), torch.as_tensor(expr)).numpy()
    assert v_np.shape == (4, 26719, 3)
    np.testing.assert_allclose(v_np, v_t, atol=2e-3)
    # subset + barycentric evaluation equals interpolating the full mesh
    ids = np.array([[0, 1, 2], [100, 200, 300]])
    w = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    sub = TorchFaceModel(model, vertex_ids=ids, bary_weights=w)(torch.as_tensor(ident), torch.as_tensor(expr)).numpy()
    np.testing.assert_allclose(sub, (v_np[:, ids] * w[None, ..., None]).sum(2), atol=2e-3)


def test_identity_changes_shape_but_zero_is_neutral(model):
    np.testing.assert_array_equal(model.vertices(), model.neutral)
    assert np.abs(model.vertices(np.eye(100)[0] * 2) - model.neutral).max() > 0.1


def test_arkit_names():
    assert ict_to_arkit_name("eyeBlink_L") == "eyeBlinkLeft"
    assert ict_to_arkit_name("jawOpen") == "jawOpen"
    assert len(ARKIT_52) == 52


def test_left_is_subjects_left(model):
    # ARKit's eyeBlinkLeft closes the subject's left eye, which is at +X in model space
    e = model.ict_expression_names.index("eyeBlink_L")
    i = np.linalg.norm(model.expression[e], axis=1).argmax()
    assert model.neutral[i, 0] > 2.0


def test_arkit_round_trip(model):
    names = model.expression_names
    w = {n: 0.0 for n in names}
    w.update(browInnerUpLeft=0.4, browInnerUpRight=0.6, jawOpen=0.7, eyeBlinkLeft=0.2)
    ark = shape_names_to_arkit(w)
    assert set(ark) == set(ARKIT_52)
    assert ark["browInnerUp"] == 0.5 and ark["jawOpen"] == 0.7 and ark["tongueOut"] == 0.0
    back = arkit_to_shape_names(ark, names)
    assert back["browInnerUpLeft"] == back["browInnerUpRight"] == 0.5 and back["eyeBlinkLeft"] == 0.2
    # case-insensitive, PascalCase accepted
    assert arkit_to_shape_names({"JawOpen": 0.3}, names)["jawOpen"] == 0.3
