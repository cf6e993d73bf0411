"""What the GPU path depends on, checked on the CPU: the GPU's pose start is one batched solve that lands where
OpenCV's PnP (the CPU's start) does, a fit reads few values back to the host per step (each read waits for a GPU's whole queue), skipping
those reads changes nothing, and a caller's config keeps its device. tests/test_cuda_parity.py compares CPU and
CUDA where CUDA is present."""
import contextlib

import numpy as np
import pytest
import torch

from backend.fit import BundleAdjuster, landmark_spec
from backend.fit.init import pnp_batched, pnp_init, pnp_opencv
from backend.fit.presets import product_config
from backend.fit.problem import State
from bench.accuracy import rot_angle
from bench.synthetic import make_scene

HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


@contextlib.contextmanager
def counting_host_reads():
    """Counts every read of a tensor's value into Python (on a GPU each is a synchronisation)."""
    n = [0]
    saved = {k: getattr(torch.Tensor, k) for k in HOST_READS}

    def counted(f):
        def g(self, *a, **kw):
            n[0] += 1
            return f(self, *a, **kw)
        return g

    for k, f in saved.items():
        setattr(torch.Tensor, k, counted(f))
    try:
        yield n
    finally:
        for k, f in saved.items():
            setattr(torch.Tensor, k, f)


def scene(model, spec, n_views, seed, focal=None, max_yaw=60.0, size=512, off_axis_cm=(0.0, 0.0)):
    rng = np.random.default_rng(seed)
    s = make_scene(rng, model, spec, list(rng.uniform(-max_yaw, max_yaw, n_views)),
                   pitches=list(rng.uniform(-15, 15, n_views)), noise_px=1.0, size=size, focal=focal,
                   off_axis_cm=off_axis_cm)
    return s, np.stack([v["points"] for v in s["views"]])[None]


def mean_face_state(adj, B, V, focal):
    return State(a=torch.zeros(B, adj.K), logf=torch.full((B, 1), float(np.log(focal))), b=torch.zeros(B, V, adj.E),
                 R=None, t=None)


@pytest.mark.parametrize("focal, frame, max_yaw, off_axis", [
    (300.0, 512, 60.0, (0, 0)), (700.0, 512, 60.0, (0, 0)), (3000.0, 512, 60.0, (0, 0)), (700.0, 512, 90.0, (0, 0)),
    (700.0, 1400, 60.0, (43, 25)), (400.0, 1400, 70.0, (70, 40))])
def test_batched_pose_start_lands_where_opencv_pnp_does(model, focal, frame, max_yaw, off_axis):
    """Wide-angle close-ups to long lenses, heads turned up to 90 deg, a face in the corner of a wide frame (about
    40 deg off the optical axis), 1 px noise: every view of 3 jobs in one solve, within 0.05 deg and 0.5 mm of
    OpenCV's SQPnP + iterative refinement run view by view, with no value read back to Python."""
    spec = landmark_spec("ibug68", model)
    adj = BundleAdjuster(model, spec, product_config("ibug68", 8))
    pts = np.concatenate([scene(model, spec, 8, seed, focal, max_yaw, frame, off_axis)[1] for seed in range(3)])
    pb = adj._problem(pts, np.ones(pts.shape[:3]), np.full((3, 8, 2), float(frame)), None)
    st = mean_face_state(adj, 3, 8, focal)
    with counting_host_reads() as reads:
        R, t = pnp_batched(adj, pb, st)
    R_cv, t_cv = pnp_opencv(adj, pb, st)
    angles = [rot_angle(R[b, v].double().numpy() @ R_cv[b, v].double().numpy().T) for b in range(3) for v in range(8)]
    assert max(angles) < 0.05
    assert float((t - t_cv).norm(dim=-1).max()) < 0.05  # cm
    assert reads[0] == 0


def test_pose_start_with_missing_points_and_padded_views(model):
    """Views that see only part of the face (a random half of the points) match OpenCV's pose on those points; a
    view with fewer than 6 points (a padded view of a ragged batch) goes to the harmless pose facing the camera
    1 m away, as before; and the focal search picks the same focal with either start."""
    from backend.fit.init import search_focal

    spec = landmark_spec("ibug68", model)
    adj = BundleAdjuster(model, spec, product_config("ibug68", 4))
    _, pts = scene(model, spec, 4, 11, 900.0)
    vis = (np.random.default_rng(3).random(pts.shape[:3]) < 0.5).astype(float)
    vis[0, 3] = 0
    vis[0, 3, :5] = 1
    pb = adj._problem(pts, vis, np.full((1, 4, 2), 512.0), None)
    st = mean_face_state(adj, 1, 4, 900.0)
    R, t = pnp_batched(adj, pb, st)
    R_cv, t_cv = pnp_opencv(adj, pb, st)
    for v in range(3):
        assert rot_angle(R[0, v].double().numpy() @ R_cv[0, v].double().numpy().T) < 0.05
    for pose in ((R, t), (R_cv, t_cv)):
        np.testing.assert_array_equal(pose[0][0, 3].numpy(), np.diag([1.0, -1, -1]))
        np.testing.assert_array_equal(pose[1][0, 3].numpy(), [0, 0, 100.0])

    logf0 = torch.full((1, 1), float(np.log(512.0)))
    picked_cv = search_focal(adj, pb, logf0)  # the CPU's start: OpenCV
    adj.host_reads_cheap = False  # as on a GPU: the batched start
    assert torch.equal(search_focal(adj, pb, logf0), picked_cv)


def test_the_start_is_opencv_where_reads_are_free_and_batched_elsewhere(model):
    spec = landmark_spec("ibug68", model)
    adj = BundleAdjuster(model, spec, product_config("ibug68", 3))
    _, pts = scene(model, spec, 3, 2, 900.0)
    pb = adj._problem(pts, np.ones(pts.shape[:3]), np.full((1, 3, 2), 512.0), None)
    st = mean_face_state(adj, 1, 3, 900.0)
    assert adj.host_reads_cheap  # a CPU adjuster
    for cheap, pnp in ((True, pnp_opencv), (False, pnp_batched)):
        adj.host_reads_cheap = cheap
        R, t = pnp_init(adj, pb, st)
        R_ref, t_ref = pnp(adj, pb, st)
        assert torch.equal(R, R_ref) and torch.equal(t, t_ref)


def test_a_fit_reads_back_little_per_step_and_skipping_reads_changes_nothing(model):
    """Where reads are expensive (a GPU) the solver re-solves instead of asking whether a bound was crossed, and the
    cost history is read once per reweighting round: fewer than 3 reads per LM iteration, against 5-6 where
    reading is free (the CPU), and 5.8-6.0 before this work. From the same start (the pose starts differ by design:
    test above) the fit is bit-identical either way."""
    spec = landmark_spec("ibug68", model)
    sc, pts = scene(model, spec, 3, 5)
    start = {"R": np.stack([v["R"] for v in sc["views"]])[None], "t": np.stack([v["t"] for v in sc["views"]])[None]}
    fits, per_step = {}, {}
    for cheap in (True, False):
        ba = BundleAdjuster(model, spec, product_config("ibug68", 3))
        ba.host_reads_cheap = cheap
        with counting_host_reads() as reads:
            fits[cheap] = ba.fit(pts, np.ones(pts.shape[:3]), np.full((1, 3, 2), 512.0),
                                 focal_init=np.full((1, 3), 700.0), init=start)
        per_step[cheap] = reads[0] / fits[cheap].iterations
    assert per_step[False] < 3 < per_step[True]
    # the convergence test still stops a fit at the end of a reweighting round (any round, with this tolerance)
    from dataclasses import replace

    cfg = replace(product_config("ibug68", 3), tolerance=1.0)
    ba = BundleAdjuster(model, spec, cfg)
    ba.host_reads_cheap = False
    short = ba.fit(pts, np.ones(pts.shape[:3]), np.full((1, 3, 2), 512.0), focal_init=np.full((1, 3), 700.0))
    assert short.iterations == cfg.reweight_every
    for k in ("identity", "expression", "R", "t", "focal"):
        np.testing.assert_array_equal(getattr(fits[True], k), getattr(fits[False], k))
    assert fits[True].history == fits[False].history


def test_fit_views_keeps_the_device_of_a_callers_config(model, monkeypatch):
    """device=None leaves a passed config's device alone (it used to be overwritten with "cpu"); an explicit device
    still wins; the tracker does the same."""
    from dataclasses import replace

    from backend.fit import adjuster, tracking
    from backend.pipeline import fit_views
    from tests.test_many_views import many_views

    seen = []
    real_init = adjuster.BundleAdjuster.__init__

    def spy(self, model, spec, config=None):
        seen.append(config.device)
        real_init(self, model, spec, replace(config, device="cpu"))  # the fit itself runs here, on the CPU
        self.cfg = config  # what the adjuster passes on (its cheaper twins for the focal probes)

    monkeypatch.setattr(adjuster.BundleAdjuster, "__init__", spy)
    views = many_views(model, 2)
    cfg = replace(product_config("ibug68", 2), device="cuda:1")
    fit_views(views, config=cfg)
    assert set(seen) == {"cuda:1"}
    seen.clear()
    _, spec, res = fit_views(views, device="cuda:0", config=cfg)
    assert set(seen) == {"cuda:0"}
    seen.clear()
    pts = np.stack([v.detection.points for v in views])
    tracking.fit_frames(model, spec, res.identity[0], float(res.focal[0, 0]), pts, np.ones(2, bool), (512, 512),
                        config=replace(product_config("ibug68", 1), device="cuda:1"))
    assert set(seen) == {"cuda:1"}
