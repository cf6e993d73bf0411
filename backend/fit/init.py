"""Starting values: per-view pose by PnP on the current shape (OpenCV on the CPU, one batched solve on a GPU),
and a coarse shared focal."""
from __future__ import annotations

import numpy as np
import torch

from .problem import Problem, State
from .rotations import so3_exp


def batched_pnp(P, obs, mask, f, cx, cy, iterations: int = 8):
    """Camera poses (R (...,3,3), t (...,3)) of many views at once: points P (...,L,3) seen at pixels obs (...,L,2)
    where mask (...,L) by pinhole cameras f, cx, cy (...). A scaled-orthographic start (the weighted affine fit
    of the points, orthonormalised) then damped Gauss-Newton on the perspective reprojection error: every view in
    one batched solve on the fit's device. Nothing reads back to the host (the *_ex solve, a closed-form 2 x 2
    orthonormalisation instead of an SVD), so on a GPU it queues without waiting.

    It lands where OpenCV's SQPnP plus iterative refinement does (rendered photos through MediaPipe: 0.00 deg
    median, 0.03 deg max apart; python -m bench.pose_init; tests/test_fit_device_path.py: up to 90 deg of yaw, and
    faces 60 deg off the optical axis of an ultra-wide lens)."""
    dt, dev = P.dtype, P.device
    m = mask.to(dt)[..., None]
    x = (obs - torch.stack([cx, cy], -1)[..., None, :]) / f[..., None, None]
    n = m.sum(-2).clamp_min(1)
    Pm, xm = (m * P).sum(-2) / n, (m * x).sum(-2) / n
    Pc = P - Pm[..., None, :]
    # affine camera A (2x3): x - xm = A (P - Pm); its rows are the scaled first two rows of R
    C = (m * Pc).transpose(-1, -2) @ Pc + 1e-9 * torch.eye(3, dtype=dt, device=dev)
    A = torch.linalg.solve_ex(C, (m * Pc).transpose(-1, -2) @ (x - xm[..., None, :])).result.transpose(-1, -2)
    # nearest orthonormal rows (A A^T)^(-1/2) A, and the scale = mean singular value, in closed form for 2 x 2
    M = A @ A.transpose(-1, -2)
    root_det = (M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] ** 2).clamp_min(1e-30).sqrt()
    tr = (M[..., 0, 0] + M[..., 1, 1] + 2 * root_det).clamp_min(1e-30).sqrt()  # = sum of the singular values
    sq = (M + root_det[..., None, None] * torch.eye(2, dtype=dt, device=dev)) / tr[..., None, None]  # sqrt(M)
    sq_inv = torch.stack([torch.stack([sq[..., 1, 1], -sq[..., 0, 1]], -1),
                          torch.stack([-sq[..., 1, 0], sq[..., 0, 0]], -1)], -2) / root_det[..., None, None]
    r12 = sq_inv @ A
    R = torch.cat([r12, torch.linalg.cross(r12[..., 0, :], r12[..., 1, :])[..., None, :]], -2)
    s = (tr / 2).clamp_min(1e-9)
    t = torch.cat([xm / s[..., None], 1 / s[..., None]], -1) - (R @ Pm[..., None])[..., 0]

    def cost_of(R, t):
        X = P @ R.transpose(-1, -2) + t[..., None, :]
        e = (X[..., :2] / X[..., 2:].clamp_min(1e-6) - x) * m
        behind = ((X[..., 2] <= 0) & (m[..., 0] > 0)).any(-1)  # a used point behind the camera: never taken
        return X, e, (e ** 2).sum((-1, -2)) + 1e30 * behind

    X, e, cost = cost_of(R, t)
    lam = torch.full(cost.shape, 1e-3, dtype=dt, device=dev)
    eye6 = torch.eye(6, dtype=dt, device=dev)
    for _ in range(iterations):
        # d(u, v)/dX of the projection, then the rotation part through X = exp(w) R P + t: du/dw = (RP) x du/dX
        z = X[..., 2:].clamp_min(1e-6)
        iz = m / z
        zero = torch.zeros_like(iz)
        du = torch.cat([iz, zero, -X[..., :1] * iz / z], -1)
        dv = torch.cat([zero, iz, -X[..., 1:2] * iz / z], -1)
        q = X - t[..., None, :]
        J = torch.stack([torch.cat([torch.linalg.cross(q, du), du], -1),
                         torch.cat([torch.linalg.cross(q, dv), dv], -1)], -2).flatten(-3, -2)  # (..., 2L, 6)
        H = J.transpose(-1, -2) @ J
        g = (J.transpose(-1, -2) @ e.flatten(-2)[..., None])[..., 0]
        d = -torch.linalg.solve_ex(H + lam[..., None, None] * (H * eye6 + 1e-12 * eye6), g).result
        R1, t1 = so3_exp(d[..., :3]) @ R, t + d[..., 3:]
        X1, e1, cost1 = cost_of(R1, t1)
        ok = cost1 < cost
        R, t = torch.where(ok[..., None, None], R1, R), torch.where(ok[..., None], t1, t)
        X, e = torch.where(ok[..., None, None], X1, X), torch.where(ok[..., None, None], e1, e)
        cost = torch.where(ok, cost1, cost)
        # a rejected step is retried much shorter: with a mild increase it would nearly repeat itself
        lam = torch.where(ok, lam / 3, lam * 10).clamp(1e-9, 1e9)
    return R, t, cost


def pnp_init(adj, pb: Problem, st: State):
    """(R, t) of every view on the non-contour landmarks of the state's shape, seen by the state's focal.

    Where reading values back is free (the CPU) OpenCV's PnP runs view by view: for the usual 1-10 views it takes
    0.3-0.7 ms a fit against 2-5 ms for the batched solve, whose fixed steps cost the same for any batch (at 200
    views or 64 jobs the batched one is 1.6x faster, a few ms in a fit of seconds). On a GPU the views go through
    batched_pnp in one solve that never waits for the device (python -m bench.pose_init)."""
    return (pnp_opencv if adj.host_reads_cheap else pnp_batched)(adj, pb, st)


def _mean_pose_points(adj, pb: Problem, st: State):
    """The state's landmarks in model space (no pose) and which of them place the camera: seen, not on the face
    oval (it slides with the view), not the iris (it turns with the gaze)."""
    B, V = pb.obs.shape[:2]
    eye = torch.eye(3, dtype=adj.dt, device=adj.dev).expand(B, V, 3, 3)
    P, _ = adj.points(pb, st.replace(R=eye, t=torch.zeros(B, V, 3, dtype=adj.dt, device=adj.dev)))
    return P, (pb.vis > 0) & ~adj.contour & ~adj.iris


# a view with too few points to place (a padded view of a ragged batch) goes somewhere harmless: facing the
# camera, 1 m away
MIN_POINTS = 6


def pnp_batched(adj, pb: Problem, st: State):
    P, mask = _mean_pose_points(adj, pb, st)
    f = pb.focal(st)
    # float64: the normal equations of a distant face are badly scaled in float32 (depth against the rotation)
    d = torch.float64
    R, t, _ = batched_pnp(P.to(d), pb.obs.to(d), mask, f.to(d), pb.cx.to(d), pb.cy.to(d))
    axis = torch.arange(3, device=adj.dev)  # the fallback built on the device: a host copy would wait on a GPU
    facing = torch.diag(torch.where(axis == 0, 1.0, -1.0).to(d))
    few = (mask.sum(-1) < MIN_POINTS)[..., None]
    R = torch.where(few[..., None], facing, R)
    t = torch.where(few, torch.where(axis == 2, 100.0, 0.0).to(d), t)
    return R.to(adj.dt), t.to(adj.dt)


def pnp_opencv(adj, pb: Problem, st: State):
    """OpenCV's SQPnP (globally optimal) then its iterative refinement, one view at a time on the host."""
    import cv2

    P, mask = _mean_pose_points(adj, pb, st)
    B, V = pb.obs.shape[:2]
    f = pb.focal(st).detach().cpu().numpy()
    Pn, on, mn = (x.detach().cpu().numpy() for x in (P, pb.obs, mask))
    cx, cy = pb.cx.cpu().numpy(), pb.cy.cpu().numpy()
    Rs, ts = np.zeros((B, V, 3, 3)), np.zeros((B, V, 3))
    for b in range(B):
        for v in range(V):
            m = mn[b, v]
            if m.sum() < MIN_POINTS:
                Rs[b, v], ts[b, v] = np.diag([1.0, -1, -1]), [0, 0, 100.0]
                continue
            K = np.array([[f[b, v], 0, cx[b, v]], [0, f[b, v], cy[b, v]], [0, 0, 1]])
            _, rvec, tvec = cv2.solvePnP(Pn[b, v, m], on[b, v, m], K, None, flags=cv2.SOLVEPNP_SQPNP)
            _, rvec, tvec = cv2.solvePnP(Pn[b, v, m], on[b, v, m], K, None, rvec, tvec, True,
                                         flags=cv2.SOLVEPNP_ITERATIVE)
            Rs[b, v], ts[b, v] = cv2.Rodrigues(rvec)[0], tvec.ravel()
    return torch.as_tensor(Rs, dtype=adj.dt, device=adj.dev), torch.as_tensor(ts, dtype=adj.dt, device=adj.dev)


def search_focal(adj, pb: Problem, logf0: torch.Tensor) -> torch.Tensor:
    """Coarse 1-D search of a shared focal by PnP on the mean face: PnP error is flat in focal for a face, but it
    reliably rules out grossly wrong fields of view."""
    B, V = pb.obs.shape[:2]
    dt, dev = adj.dt, adj.dev
    cand = torch.log(torch.tensor([0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0], dtype=dt, device=dev))
    errs = []
    for dl in cand:
        st = State(a=torch.zeros(B, adj.K, dtype=dt, device=dev), logf=logf0 + dl,
                   b=torch.zeros(B, V, adj.E, dtype=dt, device=dev), R=None, t=None)
        R, t = pnp_init(adj, pb, st)
        st = st.replace(R=R, t=t)
        e = adj.reprojection_px(pb, st) / pb.scale[..., None]
        errs.append(((e ** 2) * (pb.vis > 0)).sum((1, 2)))
    errs = torch.stack(errs, 1)  # (B, C)
    # prefer the middle of the flat valley: pick the smallest error within 2 % of the best
    ok = errs <= errs.min(1, keepdim=True).values * 1.02
    idx = torch.where(ok, torch.arange(len(cand), device=dev).to(dt) - 2, torch.full_like(errs, 1e9))
    pick = idx.abs().argmin(1)
    return logf0 + cand[pick][:, None]
