"""Per-call data of a fit: the Problem (observations, cameras, priors: fixed during the solve) and the State
(the unknowns). Both are per call, so one BundleAdjuster can serve several fits at once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class State:
    """The unknowns of B jobs of V views: identity a (B,K), log-focal per camera group logf (B,G), and per view
    expression b (B,V,E) in [0, 1], rotation R (B,V,3,3) and translation t (B,V,3) (model cm -> camera)."""

    a: torch.Tensor
    logf: torch.Tensor
    b: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor

    def replace(self, **changes) -> "State":
        return dataclasses.replace(self, **changes)

    def select(self, mask: torch.Tensor, other: "State") -> "State":
        """Per job: this state where mask (B,) is True, else other's."""
        def pick(x, y):
            return torch.where(mask.reshape(-1, *([1] * (x.dim() - 1))), x, y)

        return State(*(pick(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)))


@dataclass
class Problem:
    """What the fit is asked to explain, and how much to trust it."""

    obs: torch.Tensor  # (B,V,L,2) landmark pixels
    vis: torch.Tensor  # (B,V,L) 0/1 (or soft) usable landmark, already masked by the spec's valid points
    cx: torch.Tensor  # (B,V) principal point
    cy: torch.Tensor
    onehot: torch.Tensor  # (B,V,G) camera group of each view
    scale: torch.Tensor  # (B,V) px per 1 % of the view's inter-ocular distance
    sigma: torch.Tensor  # (B,1,1) landmark noise, % inter-ocular distance (re-estimated during the fit)
    logf0: torch.Tensor = None  # (B,G) focal prior centre
    focal_w: torch.Tensor = None  # (B,G) focal prior weight
    # identity prior (a - mean)^T precision (a - mean); None: identity_prior * |a|^2
    identity_mean: torch.Tensor = None  # (B,K)
    identity_precision: torch.Tensor = None  # (B,K,K)
    # a detector's own expression scores as a prior: sum w (b - target)^2 (weights 0 where there are none)
    expression_target: torch.Tensor = None  # (B,V,E)
    expression_weight: torch.Tensor = None  # (B,V,E)
    # the face oval at each view's current yaw (adjuster.update_contour): per view, per contour landmark
    contour_mean: torch.Tensor = None  # (B,V,C,3)
    contour_id: torch.Tensor = None  # (B,V,C,3,K)
    contour_exp: torch.Tensor = None  # (B,V,C,3,E)
    landmark_weight: torch.Tensor = None  # (B,V,L) each landmark's weight at its view's yaw (spec.sigma_yaw)

    @property
    def G(self) -> int:
        return self.onehot.shape[-1]

    def focal(self, st: State) -> torch.Tensor:
        """(B,V) focal of each view from its group's log-focal."""
        return (self.onehot * st.logf[:, None, :]).sum(-1).exp()
