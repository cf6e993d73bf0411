"""Starting values: per-view pose by PnP (OpenCV) on the current shape, and a coarse shared focal."""
from __future__ import annotations

import numpy as np
import torch

from .problem import Problem, State


def _np(x):
    return x.detach().cpu().numpy()


def pnp_init(adj, pb: Problem, st: State):
    """(R, t) of every view by OpenCV's SQPnP then iterative refinement on the non-contour landmarks of the
    state's shape, seen by the state's focal."""
    import cv2

    B, V = pb.obs.shape[:2]
    eye = torch.eye(3, dtype=adj.dt, device=adj.dev).expand(B, V, 3, 3)
    P, _ = adj.points(pb, st.replace(R=eye, t=torch.zeros(B, V, 3, dtype=adj.dt, device=adj.dev)))
    f = _np(pb.focal(st))
    Pn, on, vn = _np(P), _np(pb.obs), _np(pb.vis)
    cx, cy = _np(pb.cx), _np(pb.cy)
    Rs, ts = np.zeros((B, V, 3, 3)), np.zeros((B, V, 3))
    for b in range(B):
        for v in range(V):
            m = (vn[b, v] > 0) & ~adj.spec.contour & ~adj.spec.iris
            Kmat = np.array([[f[b, v], 0, cx[b, v]], [0, f[b, v], cy[b, v]], [0, 0, 1]])
            if m.sum() < 6:  # padded view: put it somewhere harmless
                Rs[b, v], ts[b, v] = np.diag([1.0, -1, -1]), [0, 0, 100.0]
                continue
            ok, rvec, tvec = cv2.solvePnP(Pn[b, v, m], on[b, v, m], Kmat, None, flags=cv2.SOLVEPNP_SQPNP)
            ok, rvec, tvec = cv2.solvePnP(Pn[b, v, m], on[b, v, m], Kmat, None, rvec, tvec, True,
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
