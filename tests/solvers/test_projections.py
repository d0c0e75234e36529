"""Exact l1-ball projection (Duchi et al. 2008) against independent references."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from recon_core.errors import BadInput
from recon_core.solvers.projections import project_l1_ball, project_state_l1


def _slsqp_reference(v: np.ndarray, r: float) -> np.ndarray:
    """argmin ||x - v||^2 s.t. ||x||_1 <= r, as a smooth QP in x = p - q, p, q >= 0, sum(p+q) <= r."""
    d = v.size
    f = lambda u: float(np.sum((u[:d] - u[d:] - v) ** 2))  # noqa: E731
    g = lambda u: np.concatenate([2 * (u[:d] - u[d:] - v), -2 * (u[:d] - u[d:] - v)])  # noqa: E731
    u0 = np.concatenate([np.maximum(v, 0), np.maximum(-v, 0)]) * min(1.0, r / max(np.abs(v).sum(), 1e-12))
    cons = [{"type": "ineq", "fun": lambda u: r - u.sum(), "jac": lambda u: -np.ones_like(u)}]
    res = minimize(f, u0, jac=g, bounds=[(0, None)] * (2 * d), constraints=cons, method="SLSQP",
                   options={"ftol": 1e-12, "maxiter": 1000})
    assert res.success, res.message
    return res.x[:d] - res.x[d:]


def _bisection_reference(v: np.ndarray, r: float) -> np.ndarray:
    """Dual bisection: x = sign(v) max(|v| - t, 0) with t >= 0 s.t. ||x||_1 = r (no sorting)."""
    a = np.abs(v)
    if a.sum() <= r:
        return v.copy()
    lo, hi = 0.0, a.max()
    for _ in range(200):
        t = 0.5 * (lo + hi)
        if np.maximum(a - t, 0).sum() > r:
            lo = t
        else:
            hi = t
    return np.sign(v) * np.maximum(a - 0.5 * (lo + hi), 0)


@pytest.mark.parametrize("d", [1, 3, 8])
@pytest.mark.parametrize("radius", [0.1, 0.7, 2.0, 50.0])
def test_matches_scipy_qp(d, radius):
    rng = np.random.default_rng(d * 100 + int(radius * 10))
    v = rng.normal(size=(6, d)) * rng.uniform(0.1, 3, size=(6, 1))
    out = project_l1_ball(torch.from_numpy(v), radius).numpy()
    for i in range(v.shape[0]):
        np.testing.assert_allclose(out[i], _slsqp_reference(v[i], radius), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("radius", [1e-3, 1.0, 30.0, 400.0])
def test_matches_bisection_large(dtype, radius):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(4, 2000, generator=g, dtype=torch.float64) * torch.tensor([[0.01], [0.1], [1.0], [5.0]], dtype=torch.float64)
    out = project_l1_ball(v.to(dtype), radius)
    assert out.dtype == dtype
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for i in range(4):
        ref = _bisection_reference(v[i].to(dtype).double().numpy(), radius)
        np.testing.assert_allclose(out[i].double().numpy(), ref, atol=tol * max(1.0, radius / 100))


def test_inside_unchanged_on_boundary_and_idempotent():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(8, 50, generator=g, dtype=torch.float64)
    norms = v.abs().sum(1)
    r = float(norms.median())  # about half the rows inside
    out = project_l1_ball(v, r)
    inside = norms <= r
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside], v[inside])  # bit for bit
    torch.testing.assert_close(out[~inside].abs().sum(1), torch.full(((~inside).sum(),), r, dtype=torch.float64))
    assert bool((out.abs().sum(1) <= r * (1 + 1e-12)).all())
    torch.testing.assert_close(project_l1_ball(out, r), out, atol=1e-12, rtol=0)
    # the projection never flips a sign and only shrinks magnitudes
    assert bool((out * v >= 0).all()) and bool((out.abs() <= v.abs()).all())


def test_radius_zero_inf_and_errors():
    v = torch.randn(3, 7)
    assert torch.equal(project_l1_ball(v, 0.0), torch.zeros_like(v))
    assert torch.equal(project_l1_ball(v, float("inf")), v)
    with pytest.raises(BadInput, match="radius must be a number >= 0"):
        project_l1_ball(v, -1.0)
    with pytest.raises(BadInput, match="radius must be a number >= 0"):
        project_l1_ball(v, float("nan"))
    with pytest.raises(BadInput, match=r"batch of vectors \(N, D\)"):
        project_l1_ball(torch.randn(7), 1.0)


def test_project_state_per_entry_per_restart():
    g = torch.Generator().manual_seed(3)
    center = OrderedDict(h=torch.randn(3, 4, 2, 2, generator=g), c=torch.randn(3, 5, generator=g))
    state = OrderedDict((k, v + torch.randn(v.shape, generator=g)) for k, v in center.items())
    # restart 1 of entry c starts inside the ball: it must be returned exactly
    state["c"][1] = center["c"][1] + 0.01
    r = 1.5
    out = project_state_l1(state, center, r)
    assert list(out) == ["h", "c"]
    for k in out:
        dev = (out[k] - center[k]).reshape(3, -1)
        assert bool((dev.abs().sum(1) <= r * (1 + 1e-5)).all())
        expected = center[k] + project_l1_ball((state[k] - center[k]).reshape(3, -1), r).reshape(state[k].shape)
        torch.testing.assert_close(out[k][[0, 2]], expected[[0, 2]])
    assert torch.equal(out["c"][1], state["c"][1])
    assert not torch.equal(out["h"], state["h"])  # inputs untouched, output projected
    with pytest.raises(BadInput, match="different entries"):
        project_state_l1(state, OrderedDict(h=center["h"]), r)
    with pytest.raises(BadInput, match="radius must be a number >= 0"):
        project_state_l1(state, center, -0.5)


def test_project_state_skips_the_sort_when_every_restart_is_inside(monkeypatch):
    """All restarts inside the ball: the state comes back as given (a copy) without running the
    sort-based projection; one restart outside: the projection runs."""
    import recon_core.solvers.projections as P

    g = torch.Generator().manual_seed(4)
    center = OrderedDict(h=torch.randn(2, 3, 4, generator=g))
    state = OrderedDict(h=center["h"] + 0.01 * torch.randn(2, 3, 4, generator=g))
    calls = []
    real = P.project_l1_ball
    monkeypatch.setattr(P, "project_l1_ball", lambda v, r: calls.append(v.shape) or real(v, r))
    out = P.project_state_l1(state, center, 5.0)
    assert calls == [] and torch.equal(out["h"], state["h"]) and out["h"] is not state["h"]
    state["h"][1] += 10.0
    out = P.project_state_l1(state, center, 5.0)
    assert calls == [(2, 12)] and torch.equal(out["h"][0], state["h"][0])
    assert float((out["h"][1] - center["h"][1]).abs().sum()) <= 5.0 * (1 + 1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_michelot_and_the_sorted_threshold_agree(monkeypatch, dtype):
    """The two exact thresholds (Michelot's iterations; Duchi et al.'s sort, the fallback when
    the iterations run out) give the same projection, on ILO-sized rows just outside the ball
    and on heavy-tailed ones."""
    import recon_core.solvers.projections as P

    g = torch.Generator().manual_seed(5)
    v = torch.cat([torch.randn(3, 16384, generator=g, dtype=torch.float64),
                   torch.randn(3, 16384, generator=g, dtype=torch.float64) ** 5]).to(dtype)
    r = float(v.abs().sum(1).min()) * 0.8
    fast = P.project_l1_ball(v, r)
    monkeypatch.setattr(P, "MICHELOT_MAX_ITER", 1)  # run out at once: the sort decides
    slow = P.project_l1_ball(v, r)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(fast, slow, rtol=0, atol=tol * float(v.abs().max()))
    torch.testing.assert_close(fast.double().abs().sum(1), torch.full((6,), r, dtype=torch.float64), rtol=1e-6, atol=0)
