"""Euclidean projections used by the constrained solvers (ILO's l1 balls).

``project_l1_ball`` is the exact sort-based projection of Duchi, Shalev-Shwartz, Singer and
Chandra (ICML 2008, Fig. 1), applied to every row of a batch independently; ILO (Daras et al.
2021, Sec. 4.1.1) uses it to keep each round's solution inside an l1 ball around the previous
round's. ``project_state_l1`` applies it to every entry of a solver state, per restart.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict

import torch

from ..errors import BadInput, is_real

State = Dict[str, torch.Tensor]


def _check_radius(radius) -> float:
    ok = is_real(radius) and not math.isnan(radius) and radius >= 0
    if not ok:
        raise BadInput(f"l1 radius must be a number >= 0 (inf = unconstrained), got {radius}")
    return float(radius)


@torch.no_grad()
def project_l1_ball(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Project each row of ``v`` (N, D) onto the l1 ball {x : ||x||_1 <= radius}.

    Exact: returns argmin_x ||x - v_i||_2 s.t. ||x||_1 <= radius for every row i (Duchi et al.
    2008, sort-based, O(D log D)). Rows already inside the ball are returned unchanged (bit for
    bit); radius 0 gives zeros; radius inf returns ``v``. Works in float32 and float64 (the
    threshold is computed in float64 so large float32 rows keep their accuracy) and returns
    ``v``'s dtype and device. Not differentiable (a projection step of projected gradient
    descent, applied under no_grad)."""
    radius = _check_radius(radius)
    if v.dim() != 2:
        raise BadInput(f"project_l1_ball takes a batch of vectors (N, D), got shape {tuple(v.shape)}")
    if math.isinf(radius) or v.numel() == 0:
        return v.clone()
    if radius == 0:
        return torch.zeros_like(v)
    x = v.to(torch.float64)
    a = x.abs()
    inside = a.sum(1) <= radius
    # mu sorted in decreasing order; rho = the largest j with mu_j - (sum_{i<=j} mu_i - r) / j > 0
    mu = torch.sort(a, dim=1, descending=True).values
    css = mu.cumsum(1)
    j = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)
    cond = mu * j > (css - radius)
    # cond holds on a prefix in exact arithmetic; the max index is robust to rounding at its
    # end. j = 1 always qualifies when ||v||_1 > r > 0 (mu_1 > mu_1 - r), so rho >= 1
    rho = (cond.to(torch.int64) * torch.arange(1, x.shape[1] + 1, device=x.device)).amax(1).clamp_min(1)
    theta = (css.gather(1, (rho - 1).unsqueeze(1)).squeeze(1) - radius) / rho.to(x.dtype)
    proj = torch.sign(x) * (a - theta.unsqueeze(1)).clamp_min(0)
    out = torch.where(inside.unsqueeze(1), x, proj)
    # rows inside are returned exactly as given (no float64 round trip for them)
    return torch.where(inside.unsqueeze(1), v, out.to(v.dtype))


@torch.no_grad()
def project_state_l1(state: State, center: State, radius: float) -> State:
    """Project every entry of ``state`` onto the l1 ball of ``radius`` around ``center``.

    state, center: dicts of tensors (R, *shape) with the same keys and shapes (R restarts).
    For each entry and each restart r: ``center[k][r] + P(state[k][r] - center[k][r])`` where P
    is ``project_l1_ball`` on the flattened deviation. One ball per entry (not one joint ball
    over all entries), as ILO's code does for each optimised variable (the intermediate
    features, the latents and the noises are each projected separately); the paper tunes one
    radius per variable, here every entry of a round shares the round's radius. Returns a new
    ordered dict; the inputs are not modified."""
    radius = _check_radius(radius)
    if set(state) != set(center):
        raise BadInput(f"state and center have different entries: {sorted(state)} vs {sorted(center)}")
    out = OrderedDict()
    for k, v in state.items():
        c = center[k]
        if c.shape != v.shape:
            raise BadInput(f"state entry '{k}' has shape {tuple(v.shape)} but its center has {tuple(c.shape)}")
        dev = (v - c).reshape(v.shape[0], -1)
        inside = (dev.abs().sum(1) <= radius).reshape((-1,) + (1,) * (v.dim() - 1))
        # restarts already inside keep their exact values (c + (v - c) may differ from v by rounding)
        out[k] = torch.where(inside, v, c + project_l1_ball(dev, radius).reshape(v.shape))
    return out
