"""CPU against CUDA: the same fit and the same raster on both devices. Runs wherever torch sees a GPU (the tests
skip themselves on a machine without one; the CPU path is what every other test covers)."""
import numpy as np
import pytest
import torch

from backend.fit import BundleAdjuster, FitConfig, landmark_spec
from bench.synthetic import make_scene

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@cuda
def test_fit_agrees_on_cpu_and_cuda(model):
    spec = landmark_spec("mediapipe478", model)
    scene = make_scene(np.random.default_rng(7), model, spec, [-30.0, 0.0, 30.0], noise_px=1.0)
    pts = np.stack([v["points"] for v in scene["views"]])[None]
    sizes = np.array([[v["size"] for v in scene["views"]]], np.float64)
    out = {}
    for dev in ("cpu", "cuda"):
        ba = BundleAdjuster(model, spec, FitConfig(device=dev))
        out[dev] = ba.fit_multistart(pts, np.ones(pts.shape[:3]), sizes)
    a, b = out["cpu"], out["cuda"]
    np.testing.assert_allclose(a.identity, b.identity, atol=2e-3)
    np.testing.assert_allclose(a.expression, b.expression, atol=2e-3)
    np.testing.assert_allclose(a.focal, b.focal, rtol=1e-3)


@cuda
def test_raster_agrees_on_cpu_and_cuda(model):
    from backend.texture.raster import project, rasterize

    R, t = np.diag([1.0, -1.0, -1.0]), np.array([0.0, 0.0, 60.0])
    xy, Xc = project(model.neutral.astype(np.float64), R, t, 900.0, 900.0, 255.5, 255.5)
    tris = model.triangles()
    r = {dev: rasterize(xy, Xc[:, 2], tris, 512, 512, device=dev) for dev in ("cpu", "cuda")}
    same = (r["cpu"].tri == r["cuda"].tri)
    assert same.mean() > 0.999  # ties on shared edges may go either way
    np.testing.assert_allclose(r["cpu"].depth[same & (r["cpu"].tri >= 0)], r["cuda"].depth[same & (r["cuda"].tri >= 0)],
                               rtol=1e-4)


@cuda
def test_cuda_fit_waits_on_the_device_rarely(model):
    """On CUDA every value read back to Python, every copy from the host and every linear-algebra error check waits
    for the queue to drain. The pose start waits for nothing; an LM iteration waits about once per damping attempt
    (is every job done?) plus once per reweighting round: under 3 per iteration (tests/test_fit_device_path.py
    counts the Python side of the same on the CPU)."""
    import warnings

    from backend.fit.init import pnp_init
    from backend.fit.problem import State

    spec = landmark_spec("ibug68", model)
    scene = make_scene(np.random.default_rng(5), model, spec, [-30.0, 0.0, 30.0], noise_px=1.0, size=512)
    pts = np.stack([v["points"] for v in scene["views"]])[None]
    args = (pts, np.ones(pts.shape[:3]), np.full((1, 3, 2), 512.0))
    ba = BundleAdjuster(model, spec, FitConfig(device="cuda"))
    pb = ba._problem(*args, None)
    st = State(a=torch.zeros(1, ba.K, device="cuda"), logf=torch.full((1, 1), 6.5, device="cuda"),
               b=torch.zeros(1, 3, ba.E, device="cuda"), R=None, t=None)
    ba.fit(*args, focal_init=np.full((1, 3), 700.0))  # warm-up: kernels and handles
    torch.cuda.synchronize()

    def syncs():
        return sum("synchroniz" in str(w.message) for w in caught)

    at_step = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pnp_init(ba, pb, st)
            pose = syncs()
            ba.fit(*args, focal_init=np.full((1, 3), 700.0), progress=lambda f: at_step.append(syncs()))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert pose == 0
    assert len(at_step) > 5 and (at_step[-1] - at_step[0]) / (len(at_step) - 1) < 3
