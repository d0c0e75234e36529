"""Euclidean projections used by the constrained solvers (ILO's l1 balls).

``project_l1_ball`` is the exact projection (Michelot's algorithm, with the sort-based one of
Duchi, Shalev-Shwartz, Singer and Chandra, ICML 2008, as its fallback), applied to every row of
a batch independently; ILO (Daras et al. 2021, Sec. 4.1.1) uses it to keep each round's solution inside an l1 ball around the previous
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


#: Michelot's iterations before the sort-based form takes over (typical inputs need under 10)
MICHELOT_MAX_ITER = 50


@torch.no_grad()
def project_l1_ball(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Project each row of ``v`` (N, D) onto the l1 ball {x : ||x||_1 <= radius}.

    Exact: returns argmin_x ||x - v_i||_2 s.t. ||x||_1 <= radius for every row i, i.e.
    sign(v) max(|v| - theta, 0) with the threshold theta of the simplex projection of |v|. theta
    comes from Michelot's algorithm (1986; Condat 2016, Algorithm 2): start from every entry,
    set theta = (sum of the active |v_j| - radius) / their count, drop the entries at or below it,
    repeat until none drops -- a finite, exact algorithm whose active set only shrinks, a few
    passes over the row (4-5x faster than sorting it at ILO's sizes, 8192-16384 entries, by hand
    2026-12-03); rows still changing after MICHELOT_MAX_ITER passes get the sort-based threshold
    of Duchi et al. (ICML 2008, Fig. 1). Rows already inside the ball are returned unchanged
    (bit for bit); radius 0 gives zeros; radius inf returns ``v``. Works in float32 and float64
    (the threshold is computed in float64 so large float32 rows keep their accuracy) and returns
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
    active = torch.ones_like(a, dtype=torch.bool)
    theta = (a.sum(1) - radius) / a.shape[1]
    for _ in range(MICHELOT_MAX_ITER):
        # the active set only shrinks (never re-admit an entry), so rounding cannot make it cycle;
        # the largest entry always stays (theta < max |v_j| when radius > 0), so counts stay >= 1
        keep = active & (a > theta.unsqueeze(1))
        if torch.equal(keep, active):
            break
        active = keep
        theta = (torch.where(active, a, 0.0).sum(1) - radius) / active.sum(1)
    else:
        theta = _sorted_threshold(a, radius)
    proj = torch.sign(x) * (a - theta.unsqueeze(1)).clamp_min(0)
    # rows inside are returned exactly as given (no float64 round trip for them)
    return torch.where(inside.unsqueeze(1), v, proj.to(v.dtype))


def _sorted_threshold(a: torch.Tensor, radius: float) -> torch.Tensor:
    """Duchi et al.'s threshold per row of ``a`` = |v| (N, D) float64, for rows with ||v||_1 > radius > 0."""
    # mu sorted in decreasing order; rho = the largest j with mu_j - (sum_{i<=j} mu_i - r) / j > 0
    mu = torch.sort(a, dim=1, descending=True).values
    css = mu.cumsum(1)
    j = torch.arange(1, a.shape[1] + 1, dtype=a.dtype, device=a.device)
    cond = mu * j > (css - radius)
    # cond holds on a prefix in exact arithmetic; the max index is robust to rounding at its
    # end. j = 1 always qualifies when ||v||_1 > r > 0 (mu_1 > mu_1 - r), so rho >= 1
    rho = (cond.to(torch.int64) * torch.arange(1, a.shape[1] + 1, device=a.device)).amax(1).clamp_min(1)
    return (css.gather(1, (rho - 1).unsqueeze(1)).squeeze(1) - radius) / rho.to(a.dtype)


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
        inside = dev.abs().sum(1) <= radius
        if bool(inside.all()):  # nothing to project: skip the sort (most of a projection's cost)
            out[k] = v.clone()
            continue
        # restarts already inside keep their exact values (c + (v - c) may differ from v by rounding)
        out[k] = torch.where(inside.reshape((-1,) + (1,) * (v.dim() - 1)), v, c + project_l1_ball(dev, radius).reshape(v.shape))
    return out
