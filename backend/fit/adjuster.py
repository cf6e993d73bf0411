"""Multi-view landmark bundle adjustment of the ICT model (shared identity, per-view everything else).

Unknowns per job: identity a (K, shared, Gaussian prior), one log-focal per camera group (shared by views of
the same camera, weak prior towards the initial guess or a strong one from EXIF), and per view: expression
b_v (53, bounded to [0,1], L1 + L2 prior), rotation R_v and translation t_v.

Solver: Levenberg-Marquardt with an analytic Jacobian on the Schur complement (solver.py). Writing the
Jacobian by hand instead of using scipy.optimize.least_squares or autograd is measurably faster here (no
finite differences, no dense 60k x 4k Jacobian for long sequences) and keeps the solve on the GPU. scipy's
bounded least_squares (trf) would handle the [0,1] expression bounds for us but not the block structure.

Residuals are landmark reprojection errors in percent of the view's inter-ocular distance, so priors mean the
same thing for a 224 px crop and a 4000 px phone photo. Robustness: Huber weights by IRLS. Contour (jawline /
face-oval) landmarks are not fixed surface points: their weight falls with the angle between the surface
normal and the viewing ray, so at large yaw the side turning away stops pulling the model, and any landmark
whose surface point faces away from the camera is dropped.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..face_model import ANTAGONISTS, FACE_VERTICES, FaceModel, TorchFaceModel
from ..landmarks.base import EYE_CORNERS
from .init import pnp_init, search_focal
from .problem import Problem, State
from .rotations import skew, so3_exp
from .solver import damped_step, pin_at_bounds
from .spec import LandmarkSpec


@dataclass
class FitConfig:
    n_identity: int = 100
    landmark_sigma: float = 1.0  # starting guess of the detector noise, % of inter-ocular distance
    adaptive_sigma: bool = True  # re-estimate the noise from the residuals (robust MAD) at each reweighting
    sigma_range: tuple = (0.3, 3.0)
    identity_prior: float = 1.0  # weight of |a|^2 (a in units of the mode's std)
    expression_l2: float = 0.5
    expression_l1: float = 1.0
    focal_prior: float = 4.0  # weight of (log f - log f0)^2 when f0 is a guess
    focal_prior_exif: float = 400.0  # ... when f0 comes from EXIF or the caller
    # Without EXIF: centre the focal prior on a real camera of this 35 mm-equivalent focal (diagonal convention:
    # f_px = mm * image diagonal / 43.27) instead of on the best of the focal probes; None keeps the probe.
    focal_prior_equiv_mm: float | None = None
    huber: float = 3.0  # in units of landmark_sigma
    contour_weight: float = 0.5
    rigid_iterations: int = 3
    # rigid phase on pose + focal only (a 6-per-view + focal system) instead of the full system under heavy
    # shape priors: a fraction of the cost, and measured as accurate (bench subjects, 3 views: 0.39 vs 0.44 mm)
    frozen_shape_rigid: bool = True
    # with bounded expression steps 10 reach what 20-40 do. With noise 6 would do (bench subjects, 1 and 3 views,
    # 1-3 px: within 0.01 mm), but on clean landmarks the focal still slides along its valley after 6 or 8
    # (tests/test_fitting_solver.py: 5 % short, 0.16 mm instead of 0.04 mm). 14 since the landmarks weigh by view
    # yaw (spec.sigma_yaw): a frontal view then outweighs the side views that fix the focal, and after 10 a clean
    # 3-view scene was still 2.4 % short (12: 0.3 % but 1.7 % above the long run's cost; 14: at it)
    iterations: int = 14
    reweight_every: int = 5
    tolerance: float = 1e-4  # stop when a whole reweighting round lowers the cost by less than this
    fix_identity: bool = False
    fix_focal: bool = False
    temporal_smoothing: float = 0.0  # weight of |b_v - b_{v+1}|^2 (video frames in order)
    # antagonist shapes (eyeWide/eyeBlink, jawLeft/jawRight, ...: ANTAGONISTS) cost 2 w b_i b_j together: a face
    # cannot do both, and a rig that receives both does neither
    antagonist_weight: float = 0.0
    # scale of the detector's own expression scores as a prior (per shape weights from the calibration); 0 = off
    blendshape_prior: float = 0.0
    # ... and the largest per-shape spread it uses (%): on rendered faces MediaPipe misjudges the shapes it reads from
    # appearance (squint from the cheek, brows from wrinkles) that our renders lack, so their measured spread
    # would silence it on real photos, where those cues exist
    blendshape_sigma_cap: float = 0.2
    device: str = "cpu"
    dtype: torch.dtype = torch.float32


@dataclass
class FitResult:
    identity: np.ndarray  # (B, K)
    expression: np.ndarray  # (B, V, E)
    R: np.ndarray  # (B, V, 3, 3)
    t: np.ndarray  # (B, V, 3)
    focal: np.ndarray  # (B, V)
    cx: np.ndarray
    cy: np.ndarray
    reprojection_px: np.ndarray  # (B, V, L) per landmark, nan where unused
    weights: np.ndarray  # (B, V, L) final landmark weights
    iterations: int
    cost: np.ndarray  # (B,)
    history: list = field(default_factory=list)
    identity_cov: np.ndarray | None = None  # (B, K, K) posterior covariance of the identity (Laplace)
    sigma: np.ndarray | None = None  # (B,) landmark noise the fit settled on, % of eye distance


def _np(x):
    return x.detach().cpu().numpy()


class BundleAdjuster:
    """Fits B independent jobs of V views each (pad with zero-weight views for ragged batches).

    The adjuster holds the model's landmark bases and the configuration only; everything of one call lives in
    that call's Problem and State."""

    def __init__(self, model: FaceModel, spec: LandmarkSpec, config: FitConfig | None = None):
        self.model, self.spec, self.cfg = model, spec, config or FitConfig()
        self._probers: dict[int, BundleAdjuster] = {}  # cheaper twins for focal probes, by identity modes
        c = self.cfg
        dev, dt = torch.device(c.device), c.dtype
        self.dev, self.dt = dev, dt
        # reading a value back to Python is free on the CPU and a wait for the whole queue on a GPU: the solver
        # skips work it can see is not needed only where looking is free
        self.host_reads_cheap = dev.type == "cpu"
        self.lm = TorchFaceModel(model, dev, dt, vertex_ids=spec.vertex_ids, bary_weights=spec.bary,
                                 n_identity=c.n_identity)
        L = len(spec.valid)
        self.L, self.K, self.E = L, c.n_identity, model.n_expression
        # iris centres ride on the rigid eyeballs the eyeLook* weights turn; the detector's calibrated response
        if spec.expression_offsets is not None:
            gb = torch.as_tensor(np.ascontiguousarray(spec.expression_offsets.transpose(1, 0, 2).reshape(self.E, L * 3)),
                                 dtype=dt, device=dev)
            self.lm.B_exp = self.lm.B_exp + gb
        self.lm_w = torch.as_tensor(spec.weights(), dtype=dt, device=dev)
        self.sigma_yaw = None if spec.sigma_yaw is None else torch.as_tensor(spec.sigma_yaw, dtype=dt, device=dev)
        self.sigma_ref = spec.reference_sigma
        self.iris = torch.as_tensor(spec.iris, device=dev)
        self.table = spec.contour_ids is not None
        if self.table:
            C, nb = spec.contour_tri.shape[:2]
            ct = TorchFaceModel(model, dev, dt, vertex_ids=spec.contour_tri.reshape(-1, 3),
                                bary_weights=spec.contour_bary.reshape(-1, 3), n_identity=c.n_identity)
            self.c_ids = torch.as_tensor(spec.contour_ids, device=dev).long()
            self.c_bins = torch.as_tensor(spec.contour_yaw_bins, dtype=dt, device=dev)
            self.c_mean = ct.mean.reshape(C, nb, 3)
            self.c_id = ct.B_id.reshape(self.K, C, nb, 3).permute(1, 2, 3, 0).contiguous()  # (C,nb,3,K)
            self.c_exp = ct.B_exp.reshape(self.E, C, nb, 3).permute(1, 2, 3, 0).contiguous()
        names = model.expression_names
        pairs = [(names.index(a), names.index(b)) for a, b in ANTAGONISTS if a in names and b in names]
        self.ant_i = torch.as_tensor([i for i, _ in pairs], device=dev).long()
        self.ant_j = torch.as_tensor([j for _, j in pairs], device=dev).long()
        # bases as (L, 3, K) / (L, 3, E) for the Jacobian
        self.B_id = self.lm.B_id.reshape(self.K, L, 3).permute(1, 2, 0).contiguous()
        self.B_ex = self.lm.B_exp.reshape(self.E, L, 3).permute(1, 2, 0).contiguous()
        # normals at landmarks: from the triangles around each landmark's first vertex only (a few per
        # landmark), so reweighting costs microseconds instead of a whole-face normal pass
        tris = model.triangles()
        tris = tris[(tris < FACE_VERTICES[1]).all(1)]
        first = spec.vertex_ids[:, 0]
        lm_idx, tri_idx = np.nonzero((tris[None, :, :] == first[:, None, None]).any(-1))
        ring = tris[tri_idx]
        used = np.unique(ring)
        self._ring_tm = TorchFaceModel(model, dev, dt, vertex_ids=used, n_identity=c.n_identity)
        remap = -np.ones(model.n_vertices, np.int64)
        remap[used] = np.arange(len(used))
        self._ring_tris = torch.as_tensor(remap[ring], device=dev)
        self._ring_lm = torch.as_tensor(lm_idx, device=dev)
        self.valid = torch.as_tensor(spec.valid, device=dev)
        self.contour = torch.as_tensor(spec.contour, device=dev)

    # ---------------------------------------------------------------- public API
    def fit_multistart(self, points, visible, sizes, focal_init=None, focal_known=None, groups=None, init=None,
                       progress=None, cancel=None, starts=(0.8, 1.2, 1.8, 2.6), probe_iterations=2,
                       probe_identity=40, priors=None) -> FitResult:
        """Like fit(), but when the focal is unknown it first runs a short fit from several focal guesses
        (one batched solve) and continues from the lowest cost. A face's depth relief barely constrains
        the field of view, and a single start can settle in a wrong-focal valley the shape compensates."""
        if focal_known is not None and np.all(focal_known):
            return self.fit(points, visible, sizes, focal_init, focal_known, groups, init, progress, cancel, priors)
        points, visible, sizes = np.asarray(points), np.asarray(visible), np.asarray(sizes, np.float64)
        B, V, C = points.shape[0], points.shape[1], len(starts)
        rep = lambda x: None if x is None else np.repeat(np.asarray(x), C, axis=0)  # noqa: E731
        base = sizes.max(-1)
        centre = None
        if self.cfg.focal_prior_equiv_mm:
            centre = self.cfg.focal_prior_equiv_mm * np.hypot(sizes[..., 0], sizes[..., 1]) / 43.27
            base = centre
        f_try = np.stack([base[b] * k for b in range(B) for k in starts])  # job-major, like np.repeat
        # The probes run on a cheap twin: with bounded steps it ranks the guesses as well as the full model,
        # measured on 24 bench subjects, 1 view, 0-3 px: mean face error within 0.015 mm, at half the time.
        # 2 probe iterations after the rigid phase rank as well as 3 or 6 (24 subjects, 1 and 3 views, 1 and
        # 3 px: mean error within 0.02 mm).
        prober = self._prober(probe_identity, probe_iterations)
        p_init = None if init is None else {k: rep(v) for k, v in init.items()}
        if p_init is not None and p_init.get("identity") is not None:
            p_init["identity"] = p_init["identity"][:, :prober.K]
        p_priors = None if priors is None else {k: rep(v) for k, v in priors.items() if v is not None}
        r = prober.fit(rep(points), rep(visible), rep(sizes), f_try, np.zeros((B * C, V), bool), rep(groups),
                       p_init, None, cancel, p_priors, rep(centre))
        best = r.cost.reshape(B, C).argmin(1)
        pick = np.arange(B) * C + best
        f_best = r.focal[pick]
        return self.fit(points, visible, sizes, f_best, focal_known, groups, init, progress, cancel, priors, centre)

    def _prober(self, n_identity, iterations):
        """A cheaper twin for the focal probes: fewer identity modes (the Hessian's cost grows with their
        square), fixed sigma, a pose-and-focal-only rigid phase and a few iterations; enough to rank focal
        guesses by cost."""
        key = min(n_identity, self.K)
        cfg = dataclasses.replace(self.cfg, n_identity=key, adaptive_sigma=False, iterations=iterations,
                                  frozen_shape_rigid=True)
        # built once and kept: every multistart fit of this adjuster uses it
        if key not in self._probers:
            self._probers[key] = BundleAdjuster(self.model, self.spec, cfg)
        self._probers[key].cfg = cfg
        return self._probers[key]

    def fit(self, points, visible, sizes, focal_init=None, focal_known=None, groups=None, init=None,
            progress=None, cancel=None, priors=None, focal_centre=None) -> FitResult:
        """points (B,V,L,2) px; visible (B,V,L) bool/float (0 for missing views/landmarks);
        sizes (B,V,2) (w,h); focal_init (B,V) guess or None; focal_known (B,V) bool: focal from EXIF/caller;
        groups (B,V) int camera group of each view (views in a group share one focal).
        init: optional dict with identity (B,K) / expression (B,V,E) / R, t starting values.
        priors: optional dict: "expression" (B,V,E) the detector's own scores (nan where none), used with
        cfg.blendshape_prior; "identity_mean" (B,K) and "identity_precision" (B,K,K) replace |a|^2.
        focal_centre: (B,V) centre of the focal prior where the focal is not known (default: focal_init)."""
        c, dev, dt = self.cfg, self.dev, self.dt
        pb = self._problem(points, visible, sizes, groups)
        self._set_priors(pb, priors)
        B, V = pb.obs.shape[:2]
        if focal_init is None:
            f0v = pb.cx.new_tensor(np.asarray(sizes)).max(-1).values * 1.0
            known = torch.zeros(B, V, dtype=torch.bool, device=dev)
        else:
            f0v = torch.as_tensor(np.asarray(focal_init), dtype=dt, device=dev)
            known = torch.as_tensor(np.asarray(focal_known if focal_known is not None else np.zeros((B, V))),
                                    device=dev).bool()
        cnt = pb.onehot.sum(1).clamp_min(1)
        logf0 = (pb.onehot * f0v.log()[..., None]).sum(1) / cnt  # (B,G)
        known_g = (pb.onehot * known[..., None].to(dt)).sum(1) > 0
        if focal_init is None:
            logf0 = search_focal(self, pb, logf0)
        start = logf0
        if focal_centre is not None:  # a prior over real cameras where the focal is unknown; the start stays
            fc = torch.as_tensor(np.asarray(focal_centre), dtype=dt, device=dev)
            logfc = (pb.onehot * fc.log()[..., None]).sum(1) / cnt
            logf0 = torch.where(known_g, logf0, logfc)
        pb.logf0 = logf0
        pb.focal_w = torch.where(known_g, torch.full_like(logf0, c.focal_prior_exif),
                                 torch.full_like(logf0, c.focal_prior))
        st = self._initial_state(pb, init, start)
        history = []
        lam = torch.full((B,), 1e-3, dtype=dt, device=dev)
        w = pb.vis.clone()
        total = c.rigid_iterations + c.iterations
        reweigh = lambda i: i % c.reweight_every == 0 or i == c.rigid_iterations  # noqa: E731
        it, round_start = 0, None
        for it in range(total):
            if cancel is not None and cancel():
                from ..errors import CancelledError

                raise CancelledError("cancelled by the user")
            rigid = it < c.rigid_iterations
            if reweigh(it):
                self.update_contour(pb, st)
                if c.adaptive_sigma and not rigid:
                    pb.sigma = self.estimate_sigma(pb, st)
                w = self.landmark_weights(pb, st)
                round_start = None
            if rigid and c.frozen_shape_rigid:
                st, lam, cost = self._lm_step_rigid(pb, st, w, lam)
            else:
                st, lam, cost = self._lm_step(pb, st, w, lam, rigid)
            history.append(cost.mean())  # read back once per round, below, and at the end: no wait per step
            # judge convergence over one reweighting round (same weights and sigma, so costs compare), at its
            # last step
            if round_start is None:
                round_start = history[-1]
            elif not rigid and reweigh(it + 1):
                first, last = torch.stack([round_start, history[-1]]).tolist()
                if first - last <= c.tolerance * first:
                    break
            if progress is not None:
                progress((it + 1) / total)
        err = self.reprojection_px(pb, st) * (pb.vis > 0)
        err = torch.where(pb.vis > 0, err, torch.full_like(err, float("nan")))
        return FitResult(
            identity=_np(st.a), expression=_np(st.b), R=_np(st.R), t=_np(st.t), focal=_np(pb.focal(st)),
            cx=_np(pb.cx), cy=_np(pb.cy), reprojection_px=_np(err), weights=_np(w), iterations=it + 1,
            cost=_np(cost), history=torch.stack(history).tolist(),
            identity_cov=_np(self.identity_covariance(pb, st, w)),
            sigma=_np(pb.sigma.reshape(-1)))

    # ---------------------------------------------------------------- set-up
    def _problem(self, points, visible, sizes, groups) -> Problem:
        c, dev, dt = self.cfg, self.dev, self.dt
        obs = torch.as_tensor(np.asarray(points), dtype=dt, device=dev)
        B, V = obs.shape[:2]
        vis = torch.as_tensor(np.asarray(visible), dtype=dt, device=dev) * self.valid.to(dt)
        sizes = torch.as_tensor(np.asarray(sizes), dtype=dt, device=dev)
        obs = torch.nan_to_num(obs)
        groups = torch.zeros(B, V, dtype=torch.long, device=dev) if groups is None else torch.as_tensor(
            np.asarray(groups), device=dev).long()
        G = int(groups.max()) + 1
        return Problem(obs=obs, vis=vis, cx=(sizes[..., 0] - 1) / 2, cy=(sizes[..., 1] - 1) / 2,
                       onehot=torch.nn.functional.one_hot(groups, G).to(dt), scale=self._view_scale(obs, vis),
                       sigma=torch.full((B, 1, 1), c.landmark_sigma, dtype=dt, device=dev))

    def _set_priors(self, pb: Problem, priors):
        c, dev, dt = self.cfg, self.dev, self.dt
        priors = priors or {}
        if priors.get("identity_precision") is not None:
            pb.identity_mean = torch.as_tensor(np.asarray(priors["identity_mean"])[:, :self.K], dtype=dt, device=dev)
            pb.identity_precision = torch.as_tensor(np.asarray(priors["identity_precision"])[:, :self.K, :self.K],
                                                    dtype=dt, device=dev)
        scores = priors.get("expression")
        if scores is not None and c.blendshape_prior > 0 and self.spec.blendshape_sigma is not None:
            s = torch.as_tensor(np.asarray(scores, np.float64), dtype=dt, device=dev)
            have = torch.isfinite(s)
            sig = torch.as_tensor(np.minimum(self.spec.blendshape_sigma, c.blendshape_sigma_cap), dtype=dt, device=dev)
            w = c.blendshape_prior / sig ** 2
            pb.expression_target = torch.where(have, s, torch.zeros_like(s)).clamp(0, 1)
            pb.expression_weight = torch.where(have, w.expand_as(s), torch.zeros_like(s))

    def _initial_state(self, pb: Problem, init, logf_start) -> State:
        dev, dt = self.dev, self.dt
        B, V = pb.obs.shape[:2]
        init = init or {}
        a = torch.zeros(B, self.K, dtype=dt, device=dev)
        b = torch.zeros(B, V, self.E, dtype=dt, device=dev)
        if init.get("identity") is not None:
            a = torch.as_tensor(np.asarray(init["identity"])[:, : self.K], dtype=dt, device=dev).clone()
        if init.get("expression") is not None:
            b = torch.as_tensor(np.asarray(init["expression"]), dtype=dt, device=dev).clamp(0, 1).clone()
        st = State(a=a, logf=logf_start.clone(), b=b, R=None, t=None)
        if init.get("R") is not None:
            return st.replace(R=torch.as_tensor(np.asarray(init["R"]), dtype=dt, device=dev).clone(),
                              t=torch.as_tensor(np.asarray(init["t"]), dtype=dt, device=dev).clone())
        R, t = pnp_init(self, pb, st)
        return st.replace(R=R, t=t)

    def _view_scale(self, obs, vis):
        """px per 1 % of the view's inter-ocular distance, from the observed eye corners."""
        a, b = EYE_CORNERS[self.spec.format]
        iod = (obs[..., a, :] - obs[..., b, :]).norm(dim=-1)
        iod = torch.where((vis[..., a] > 0) & (vis[..., b] > 0) & (iod > 1), iod, torch.full_like(iod, 100.0))
        return (iod / 100.0).clamp_min(0.05)

    # ---------------------------------------------------------------- model and residuals
    def update_contour(self, pb: Problem, st: State):
        """Take the face oval from the calibration's table at each view's current view yaw (the silhouette moves
        over the face as the head turns), and each landmark's weight at that yaw. Held fixed between
        reweightings, so each LM step sees one model."""
        if not self.table:
            return
        cam = -(st.R.transpose(-1, -2) @ st.t[..., None])[..., 0]  # camera centre; the head's centre is at z = 5
        yaw = torch.rad2deg(torch.atan2(cam[..., 0], cam[..., 2] - 5.0)).clamp(self.c_bins[0], self.c_bins[-1])
        k = (torch.searchsorted(self.c_bins, yaw.contiguous()) - 1).clamp(0, len(self.c_bins) - 2)
        a = (yaw - self.c_bins[k]) / (self.c_bins[k + 1] - self.c_bins[k])
        w = torch.zeros(*yaw.shape, len(self.c_bins), dtype=self.dt, device=self.dev)
        w.scatter_(-1, k[..., None], (1 - a)[..., None])
        w.scatter_add_(-1, (k + 1)[..., None], a[..., None])
        if self.sigma_yaw is not None:
            sig = torch.einsum("bvk,lk->bvl", w, self.sigma_yaw)
            # not normalised per view: a view whose points are noisier (a profile's guessed far side) should weigh
            # less against the others (rendered 3-photo sets: 3.38 mm median shape error as is, 3.65 mm with each
            # view's weights rescaled to a median of 1)
            pb.landmark_weight = ((self.sigma_ref / sig.clamp_min(1e-6)) ** 2).clamp(0.01, 4.0)
        pb.contour_mean = torch.einsum("bvk,ckd->bvcd", w, self.c_mean)
        pb.contour_id = torch.einsum("bvk,ckdj->bvcdj", w, self.c_id)
        pb.contour_exp = torch.einsum("bvk,ckdj->bvcdj", w, self.c_exp)

    def points(self, pb: Problem, st: State):
        """Model landmarks (B,V,L,3) in model space and camera space."""
        B, V = st.b.shape[:2]
        P = self.lm.mean + (st.a @ self.lm.B_id).reshape(B, 1, self.L, 3) + (st.b @ self.lm.B_exp).reshape(
            B, V, self.L, 3)
        if pb.contour_mean is not None:
            Pc = pb.contour_mean + torch.einsum("bk,bvcdk->bvcd", st.a, pb.contour_id) + torch.einsum(
                "bve,bvcde->bvcd", st.b, pb.contour_exp)
            P = P.index_copy(2, self.c_ids, Pc)
        Xc = torch.einsum("bvij,bvlj->bvli", st.R, P) + st.t[:, :, None, :]
        return P, Xc

    def project(self, pb: Problem, st: State, Xc):
        f = pb.focal(st)[..., None]
        z = Xc[..., 2].clamp_min(1e-3)
        return torch.stack([f * Xc[..., 0] / z + pb.cx[..., None], f * Xc[..., 1] / z + pb.cy[..., None]], -1)

    def reprojection_px(self, pb: Problem, st: State):
        _, Xc = self.points(pb, st)
        return (self.project(pb, st, Xc) - pb.obs).norm(dim=-1)

    def noise_weight(self, pb: Problem):
        """Each landmark's inverse noise variance: at its view's yaw where calibrated (update_contour), else fixed."""
        return self.lm_w if pb.landmark_weight is None else pb.landmark_weight

    def landmark_weights(self, pb: Problem, st: State):
        """IRLS Huber weights x contour/visibility weights."""
        c = self.cfg
        P, Xc = self.points(pb, st)
        lm_w = self.noise_weight(pb)
        r = self.reprojection_px(pb, st) / pb.scale[..., None] / pb.sigma * lm_w.sqrt()
        huber = torch.where(r <= c.huber, torch.ones_like(r), c.huber / r.clamp_min(1e-9))
        # surface normals at the landmarks, rotated into the camera
        B, V = pb.obs.shape[:2]
        rv = (self._ring_tm.mean.reshape(1, -1) + st.a @ self._ring_tm.B_id)[:, None] + st.b @ self._ring_tm.B_exp
        rv = rv.reshape(B, V, -1, 3)
        a, b_, c_ = (rv[..., self._ring_tris[:, k], :] for k in range(3))
        fn = torch.cross(b_ - a, c_ - a, dim=-1)
        n = torch.zeros(B, V, self.L, 3, dtype=self.dt, device=self.dev).index_add_(2, self._ring_lm, fn)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        n_cam = torch.einsum("bvij,bvlj->bvli", st.R, n)
        ray = Xc / Xc.norm(dim=-1, keepdim=True)
        facing = -(n_cam * ray).sum(-1)  # 1 = faces the camera, 0 = grazing, <0 = faces away
        if self.table:  # the calibrated oval already sits where the silhouette is at this yaw
            cw = torch.full_like(facing, c.contour_weight)
        else:
            cw = (facing / 0.5).clamp(0, 1) ** 2 * c.contour_weight
        # the iris centres sit inside the eye: their ring of lid triangles says nothing about their visibility
        w = torch.where(self.contour, cw, ((facing > -0.05) | self.iris).to(self.dt))
        return pb.vis * huber * w * lm_w

    def estimate_sigma(self, pb: Problem, st: State):
        """Noise scale from the residuals (1.4826 x median absolute coordinate residual, % IOD): the priors
        then weigh as much as the data deserve - clean landmarks are trusted more, noisy ones less."""
        _, Xc = self.points(pb, st)
        r = ((self.project(pb, st, Xc) - pb.obs) / pb.scale[..., None, None]).abs()  # (B,V,L,2)
        r = r * self.noise_weight(pb).sqrt()[..., None]  # each landmark in units of its own noise
        use = ((pb.vis > 0) & ~self.contour & ~self.iris)[..., None].expand_as(r)
        r = torch.where(use, r, torch.full_like(r, float("nan"))).reshape(r.shape[0], -1)
        sig = 1.4826 * torch.nanmedian(r, dim=1).values
        lo, hi = self.cfg.sigma_range
        return torch.nan_to_num(sig, nan=self.cfg.landmark_sigma).clamp(lo, hi).reshape(-1, 1, 1)

    def _projection_jacobian(self, pb: Problem, st: State, Xc, sw):
        """d(uv)/d(Xc) (B,V,L,2,3), scaled by the residual weights sw (B,V,L,1)."""
        f = pb.focal(st)[..., None]
        iz = 1 / Xc[..., 2].clamp_min(1e-3)
        Jp = torch.zeros(*Xc.shape[:-1], 2, 3, dtype=self.dt, device=self.dev)
        Jp[..., 0, 0] = f * iz
        Jp[..., 0, 2] = -f * Xc[..., 0] * iz * iz
        Jp[..., 1, 1] = f * iz
        Jp[..., 1, 2] = -f * Xc[..., 1] * iz * iz
        return Jp * sw[..., None]

    def _residuals_and_jacobian(self, pb: Problem, st: State, w):
        """Weighted residuals e (B,V,L,2) and Jacobian blocks: global (identity, focal) and local
        (expression, rotation, translation)."""
        P, Xc = self.points(pb, st)
        uv = self.project(pb, st, Xc)
        sw = (w.clamp_min(0).sqrt() / (pb.scale[..., None] * pb.sigma))[..., None]  # (B,V,L,1)
        e = (uv - pb.obs) * sw
        Jp = self._projection_jacobian(pb, st, Xc, sw)
        JpR = Jp @ st.R[:, :, None]  # (B,V,L,2,3) d(uv)/d(P)
        J_rot = -Jp @ skew(Xc - st.t[:, :, None, :])  # left perturbation
        J_t = Jp
        # (2x3) @ (3xK) per landmark as three broadcast multiply-adds: far faster than batched tiny matmuls
        J_exp = sum(JpR[..., c:c + 1] * self.B_ex[:, None, c, :] for c in range(3))  # (B,V,L,2,E)
        J_f = (uv - torch.stack([pb.cx, pb.cy], -1)[:, :, None, :]) * sw  # d/dlogf
        J_id = sum(JpR[..., c:c + 1] * self.B_id[:, None, c, :] for c in range(3))  # (B,V,L,2,K)
        if pb.contour_mean is not None:  # the oval's rows come from each view's own table entry
            JpR_c = JpR.index_select(2, self.c_ids)
            J_id = J_id.index_copy(2, self.c_ids, torch.einsum("bvcij,bvcjk->bvcik", JpR_c, pb.contour_id))
            J_exp = J_exp.index_copy(2, self.c_ids, torch.einsum("bvcij,bvcjk->bvcik", JpR_c, pb.contour_exp))
        J_g = torch.cat([J_id, J_f[..., None] * pb.onehot[:, :, None, None, :]], -1)  # (B,V,L,2,K+G)
        J_l = torch.cat([J_exp, J_rot, J_t], -1)  # (B,V,L,2,E+6)
        return e, J_g, J_l

    def _prior_cost(self, pb: Problem, st: State):
        c = self.cfg
        if pb.identity_precision is not None:
            d = st.a - pb.identity_mean
            cost = (d[:, None, :] @ pb.identity_precision @ d[..., None])[:, 0, 0]
        else:
            cost = c.identity_prior * (st.a ** 2).sum(-1)
        cost = cost + (pb.focal_w * (st.logf - pb.logf0) ** 2).sum(-1)
        cost = cost + c.expression_l2 * (st.b ** 2).sum((1, 2)) + 2 * c.expression_l1 * st.b.sum((1, 2))
        if c.temporal_smoothing > 0 and st.b.shape[1] > 1:
            cost = cost + c.temporal_smoothing * ((st.b[:, 1:] - st.b[:, :-1]) ** 2).sum((1, 2))
        if c.antagonist_weight > 0 and len(self.ant_i):
            cost = cost + 2 * c.antagonist_weight * (st.b[..., self.ant_i] * st.b[..., self.ant_j]).sum((1, 2))
        if pb.expression_weight is not None:
            cost = cost + (pb.expression_weight * (st.b - pb.expression_target) ** 2).sum((1, 2))
        return cost

    def cost(self, pb: Problem, st: State, w):
        _, Xc = self.points(pb, st)
        r = (self.project(pb, st, Xc) - pb.obs) / (pb.scale[..., None, None] * pb.sigma[..., None])
        return (w[..., None] * r ** 2).sum((1, 2, 3)) + self._prior_cost(pb, st)

    def identity_covariance(self, pb: Problem, st: State, w) -> torch.Tensor:
        """(B,K,K) posterior covariance of the identity at the solution: the inverse of the Schur complement of the
        undamped Gauss-Newton Hessian, expression weights on a bound held there. Its spread, carried through the
        identity basis, is how far the fitted shape can be trusted (pipeline: shape_uncertainty)."""
        H = self._normal_equations(pb, st, w, rigid=False)
        Hgg, Hgl, Hll = H[0], H[1], H[2]
        eye = torch.eye(Hll.shape[-1], dtype=self.dt, device=self.dev)
        Hll_inv = torch.cholesky_inverse(torch.linalg.cholesky(Hll + 1e-6 * eye))
        S = Hgg - (Hgl @ Hll_inv @ Hgl.transpose(-1, -2)).sum(1)
        K = self.K
        cov = torch.linalg.inv(S + 1e-9 * torch.eye(S.shape[-1], dtype=self.dt, device=self.dev))
        return cov[:, :K, :K]

    def view_information(self, points, visible, sizes, res: FitResult, groups=None, priors=None) -> dict:
        """What each view says about the identity at a fitted solution `res`: per view the Schur-reduced
        Gauss-Newton precision S_v (B,V,K,K) and gradient r_v (B,V,K) of its data term (its expression and pose
        eliminated, the focal held), and the total precision (prior + sum S_v). The identity check removes one
        view's information from the total to get the others' posterior without refitting them."""
        pb = self._problem(points, visible, sizes, groups)
        self._set_priors(pb, priors)
        B, V = pb.obs.shape[:2]
        f = torch.as_tensor(np.asarray(res.focal), dtype=self.dt, device=self.dev)
        logf = ((pb.onehot * f.log()[..., None]).sum(1) / pb.onehot.sum(1).clamp_min(1))
        t_ = lambda x: torch.as_tensor(np.asarray(x), dtype=self.dt, device=self.dev)  # noqa: E731
        st = State(a=t_(res.identity)[:, :self.K], logf=logf, b=t_(res.expression), R=t_(res.R), t=t_(res.t))
        pb.logf0, pb.focal_w = logf, torch.full_like(logf, self.cfg.focal_prior)
        if res.sigma is not None:
            pb.sigma = t_(res.sigma).reshape(-1, 1, 1)
        self.update_contour(pb, st)
        w = self.landmark_weights(pb, st)
        K, E = self.K, self.E
        e, J_g, J_l = self._residuals_and_jacobian(pb, st, w)
        Jg = J_g.reshape(B, V, -1, J_g.shape[-1])[..., :K]
        Jl = J_l.reshape(B, V, -1, E + 6)
        ev = e.reshape(B, V, -1, 1)
        Hgg, Hgl, Hll = Jg.transpose(-1, -2) @ Jg, Jg.transpose(-1, -2) @ Jl, Jl.transpose(-1, -2) @ Jl
        gg, gl = (Jg.transpose(-1, -2) @ ev)[..., 0], (Jl.transpose(-1, -2) @ ev)[..., 0]
        c = self.cfg
        eyeE = torch.eye(E, dtype=self.dt, device=self.dev)
        Hll[..., :E, :E] += c.expression_l2 * eyeE
        gl[..., :E] += c.expression_l2 * st.b + c.expression_l1
        if pb.expression_weight is not None:
            Hll[..., :E, :E] += torch.diag_embed(pb.expression_weight)
            gl[..., :E] += pb.expression_weight * (st.b - pb.expression_target)
        Hll, Hgl, gl = pin_at_bounds(st.b, Hll, Hgl, gl)
        eyeL = torch.eye(E + 6, dtype=self.dt, device=self.dev)
        Hll_inv = torch.cholesky_inverse(torch.linalg.cholesky(Hll + 1e-6 * eyeL))
        S = Hgg - Hgl @ Hll_inv @ Hgl.transpose(-1, -2)
        r = gg - (Hgl @ (Hll_inv @ gl[..., None]))[..., 0]
        if pb.identity_precision is not None:
            prior = pb.identity_precision
        else:
            prior = c.identity_prior * torch.eye(K, dtype=self.dt, device=self.dev).expand(B, K, K)
        return {"view_precision": _np(S).astype(np.float64), "view_gradient": _np(r).astype(np.float64),
                "precision": _np(prior + S.sum(1)).astype(np.float64)}

    # ---------------------------------------------------------------- steps
    def _lm_step(self, pb: Problem, st: State, w, lam, rigid):
        Hgg, Hgl, Hll, gg, gl = self._normal_equations(pb, st, w, rigid)
        # Expression weights are bounded to [0, 1] (solver.py says why the step handles the bounds itself).
        # Measured on 24 bench subjects at 1 px: 3 views 0.38 mm mean face error in 6-10 iterations (clamp-only
        # solver: 0.45 mm after 20), 1 view 0.67 mm (0.91 mm); median focal error 1 % (4 %) with 3 views, 5-8 %
        # (12 %) with one.
        Hll, Hgl, gl = pin_at_bounds(st.b, Hll, Hgl, gl)
        inf = torch.full((*st.b.shape[:2], 6), math.inf, dtype=self.dt, device=self.dev)
        bounds = (torch.cat([-st.b, -inf], -1), torch.cat([1 - st.b, inf], -1))
        return damped_step(st, lambda s: self.cost(pb, s, w), lam, Hgg, Hgl, Hll, gg, gl,
                           lambda dg, dl: self._apply(st, dg, dl), bounds, skip_needless_solves=self.host_reads_cheap)

    def _normal_equations(self, pb: Problem, st: State, w, rigid):
        """Gauss-Newton blocks (Hgg, Hgl, Hll, gg, gl) of the full problem, priors included (half of everything:
        cost = |e|^2 + priors, so gradient and Hessian carry a factor 2 we drop throughout)."""
        c = self.cfg
        B, V = pb.obs.shape[:2]
        K, G, E = self.K, pb.G, self.E
        e, J_g, J_l = self._residuals_and_jacobian(pb, st, w)
        Jg = J_g.reshape(B, V, -1, K + G)
        Jl = J_l.reshape(B, V, -1, E + 6)
        ev = e.reshape(B, V, -1)
        # plain matmuls: einsum's generic path costs more than the arithmetic at these sizes
        JgT = Jg.transpose(-1, -2)
        JlT = Jl.transpose(-1, -2)
        Hgg = (JgT @ Jg).sum(1)
        Hgl = JgT @ Jl
        Hll = JlT @ Jl
        gg = (JgT @ ev[..., None]).sum(1)[..., 0]
        gl = (JlT @ ev[..., None])[..., 0]
        ident_w = c.identity_prior * (100.0 if rigid else 1.0)
        ex_w2 = c.expression_l2 * (100.0 if rigid else 1.0)
        eyeK = torch.eye(K, dtype=self.dt, device=self.dev)
        eyeE = torch.eye(E, dtype=self.dt, device=self.dev)
        if pb.identity_precision is not None:
            Hgg[:, :K, :K] += pb.identity_precision
            gg[:, :K] += (pb.identity_precision @ (st.a - pb.identity_mean)[..., None])[..., 0]
        else:
            Hgg[:, :K, :K] += ident_w * eyeK
            gg[:, :K] += ident_w * st.a
        Hgg[:, K:, K:] += torch.diag_embed(pb.focal_w)
        gg[:, K:] += pb.focal_w * (st.logf - pb.logf0)
        Hll[:, :, :E, :E] += ex_w2 * eyeE
        gl[:, :, :E] += ex_w2 * st.b + c.expression_l1
        if c.antagonist_weight > 0 and len(self.ant_i):
            # gradient only: the product's Hessian is indefinite; the damping keeps the step honest
            gl[:, :, :E] = gl[:, :, :E].index_add(-1, self.ant_i, c.antagonist_weight * st.b[..., self.ant_j])
            gl[:, :, :E] = gl[:, :, :E].index_add(-1, self.ant_j, c.antagonist_weight * st.b[..., self.ant_i])
        if pb.expression_weight is not None:
            Hll[:, :, :E, :E] += torch.diag_embed(pb.expression_weight)
            gl[:, :, :E] += pb.expression_weight * (st.b - pb.expression_target)
        if c.fix_identity:
            Hgg[:, :K, :K] += 1e9 * eyeK
        if c.fix_focal:
            Hgg[:, K:, K:] += 1e9 * torch.eye(G, dtype=self.dt, device=self.dev)
        if c.temporal_smoothing > 0 and V > 1:
            # couples neighbouring views; handled approximately by a diagonal term + exact gradient
            ts = c.temporal_smoothing
            db = torch.zeros_like(st.b)
            db[:, 1:] += st.b[:, 1:] - st.b[:, :-1]
            db[:, :-1] += st.b[:, :-1] - st.b[:, 1:]
            gl[:, :, :E] += ts * db
            nb = torch.full((V,), 2.0, dtype=self.dt, device=self.dev)
            nb[0] = nb[-1] = 1.0
            Hll[:, :, :E, :E] += ts * nb[None, :, None, None] * eyeE
        return Hgg, Hgl, Hll, gg, gl

    def _lm_step_rigid(self, pb: Problem, st: State, w, lam):
        """LM step on pose and focal only, shape frozen: the same Schur structure with a (G) global and a
        (6) per-view block instead of (K+G) and (E+6), so the rigid phase costs a fraction of a full step."""
        c = self.cfg
        B, V = pb.obs.shape[:2]
        G = pb.G
        P, Xc = self.points(pb, st)
        uv = self.project(pb, st, Xc)
        sw = (w.clamp_min(0).sqrt() / (pb.scale[..., None] * pb.sigma))[..., None]
        e = ((uv - pb.obs) * sw).reshape(B, V, -1)
        Jp = self._projection_jacobian(pb, st, Xc, sw)
        Jl = torch.cat([-Jp @ skew(Xc - st.t[:, :, None, :]), Jp], -1).reshape(B, V, -1, 6)
        J_f = (uv - torch.stack([pb.cx, pb.cy], -1)[:, :, None, :]) * sw
        Jg = (J_f[..., None] * pb.onehot[:, :, None, None, :]).reshape(B, V, -1, G)
        JgT, JlT = Jg.transpose(-1, -2), Jl.transpose(-1, -2)
        Hgg = (JgT @ Jg).sum(1) + torch.diag_embed(pb.focal_w)
        gg = (JgT @ e[..., None]).sum(1)[..., 0] + pb.focal_w * (st.logf - pb.logf0)
        if c.fix_focal:
            Hgg = Hgg + 1e9 * torch.eye(G, dtype=self.dt, device=self.dev)
        Hgl, Hll, gl = JgT @ Jl, JlT @ Jl, (JlT @ e[..., None])[..., 0]
        return damped_step(st, lambda s: self.cost(pb, s, w), lam, Hgg, Hgl, Hll, gg, gl, lambda dg, dl: st.replace(
            logf=st.logf + dg, R=so3_exp(dl[..., :3]) @ st.R, t=st.t + dl[..., 3:]))

    def _apply(self, st: State, dg, dl) -> State:
        K, E = self.K, self.E
        return State(a=st.a + dg[:, :K], logf=st.logf + dg[:, K:], b=(st.b + dl[..., :E]).clamp(0.0, 1.0),
                     R=so3_exp(dl[..., E:E + 3]) @ st.R, t=st.t + dl[..., E + 3:])
