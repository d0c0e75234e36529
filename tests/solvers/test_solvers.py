"""CSGM, Generator Surgery and the shared machinery (batched restarts, L-BFGS, divergence)."""

from __future__ import annotations

import math

import pytest
import torch

from recon_core.errors import BadInput, SolverDiverged
from recon_core.operators import build
from recon_core.solvers import Problem, csgm, get_method, surgery
from recon_core.solvers.common import BatchedLBFGS, measurement_loss
from recon_core.errors import UnknownName
from tests.conftest import tiny_prior


def _problem(g, ratio=0.3, seed=0):
    """Measurements of an image in the prior's range (so the loss can go to ~0)."""
    x = g(g.sample_latent(1, torch.Generator().manual_seed(123))).detach()
    A = build("cs-gaussian", tuple(x.shape[1:]), seed=seed, ratio=ratio)
    return Problem(A, A.A(x)), x


def test_batched_lbfgs_matches_torch_lbfgs_per_restart():
    """Each row of the batch follows exactly what torch.optim.LBFGS does for it alone."""
    torch.manual_seed(0)
    M = torch.randn(3, 6, 6, dtype=torch.float64)
    b = torch.randn(3, 6, dtype=torch.float64)

    def f_rows(x):  # a different smooth non-quadratic function per row
        r = torch.einsum("rij,rj->ri", M, x) - b
        return r.pow(2).sum(1) + 0.1 * x.pow(4).sum(1)

    x0 = torch.randn(3, 6, dtype=torch.float64)

    def closure(x):
        x = x.detach().requires_grad_(True)
        f = f_rows(x)
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    lb = BatchedLBFGS(lr=0.05, max_iter=20, history_size=5)
    x = x0.clone()
    for _ in range(4):
        x = lb.step(x, closure)
    for r in range(3):
        p = x0[r].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([p], lr=0.05, max_iter=20, history_size=5)

        def cl():
            opt.zero_grad()
            loss = f_rows(torch.stack([p if i == r else x0[i] for i in range(3)]))[r]
            loss.backward()
            return loss

        for _ in range(4):
            opt.step(cl)
        torch.testing.assert_close(x[r], p.detach(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_methods_decrease_measurement_loss(method):
    g = tiny_prior()
    pb, x = _problem(g)
    cfg_cls, solve = get_method(method)
    cfg = cfg_cls(steps=10 if method == "surgery" else 100, restarts=2)
    res = solve(pb, g, cfg, seed=0)
    init = g.init_state(getattr(cfg, "cut", 0), 2, cfg.init, torch.Generator().manual_seed(0))
    with torch.no_grad():
        start = measurement_loss(pb.A, pb.y, g.tail(init, getattr(cfg, "cut", 0)))
    assert min(res.losses) < 0.2 * float(start.min())
    assert res.x_hat.shape == x.shape and 0 <= res.x_hat.min() and res.x_hat.max() <= 1
    assert len(res.losses) == 2 and res.losses[res.best_restart] == min(res.losses)
    # the reported loss is the loss of the returned estimate
    with torch.no_grad():
        assert math.isclose(float(measurement_loss(pb.A, pb.y, res.x_hat)), min(res.losses), rel_tol=1e-3, abs_tol=1e-6)
    assert res.history and res.history[-1]["loss"] == pytest.approx(min(res.losses), rel=1e-6)


def test_surgery_cut0_is_csgm():
    g = tiny_prior()
    pb, _ = _problem(g)
    a = csgm.solve(pb, g, csgm.CSGMConfig(steps=20, restarts=2, init="cn"), seed=5)
    b = surgery.solve(pb, g, surgery.SurgeryConfig(cut=0, optimizer="adam", lr=0.1, steps=20, restarts=2, init="cn"), seed=5)
    assert torch.equal(a.x_hat, b.x_hat) and a.losses == b.losses


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_restarts_are_independent(optimizer):
    """Restart i of a batch gives the same result as the same init optimised alone."""
    # float64: in float32, batched and single convolutions round differently and L-BFGS
    # amplifies that; in float64 the two runs must agree to rounding
    g = tiny_prior().double()
    pb, _ = _problem(g)
    y = pb.y.double()
    init = {k: v.double() for k, v in g.init_state(1, 3, "cn", torch.Generator().manual_seed(0)).items()}
    from recon_core.solvers.common import frozen, optimise_state

    def run(state):
        with frozen(g):
            return optimise_state(lambda s: measurement_loss(pb.A, y, g.tail(s, 1)), state, optimizer=optimizer,
                                  lr=0.05, steps=5, phase="t")

    _, batch_loss, _, _ = run(init)
    _, alone, _, _ = run({k: v[1:2] for k, v in init.items()})
    assert float(alone[0]) == pytest.approx(float(batch_loss[1]), rel=1e-9)


def test_prior_untouched_and_grad_flags_restored():
    g = tiny_prior()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    pb, _ = _problem(g)
    surgery.solve(pb, g, surgery.SurgeryConfig(steps=2, restarts=1))
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert all(p.requires_grad for p in g.parameters())


def test_surgery_beats_csgm_out_of_range_image():
    """On an image outside the tiny prior's range, cutting (more freedom) fits the measurements
    far better than the latent alone."""
    g = tiny_prior()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    A = build("cs-gaussian", (3, 32, 32), seed=0, ratio=0.2)
    pb = Problem(A, A.A(x))
    a = csgm.solve(pb, g, csgm.CSGMConfig(steps=100, restarts=1))
    b = surgery.solve(pb, g, surgery.SurgeryConfig(cut=2, steps=10, restarts=1))
    assert min(b.losses) < 0.5 * min(a.losses)


def test_divergence_dropped_and_reported():
    g = tiny_prior()
    pb, _ = _problem(g)
    calls = {"n": 0}
    A = pb.A

    class Poison:
        """A loss that becomes NaN for restart 0 after a few evaluations."""

    orig = A._A

    def poisoned(x):
        calls["n"] += 1
        y = orig(x)
        if calls["n"] > 3:
            y = y.clone()
            y[0] = float("nan")
        return y

    A._A = poisoned
    res = csgm.solve(pb, g, csgm.CSGMConfig(steps=10, restarts=2))
    assert res.diverged == [0] and math.isnan(res.losses[0]) and res.best_restart == 1
    A._A = lambda x: orig(x) * float("nan")
    with pytest.raises(SolverDiverged, match="every restart diverged.*smaller learning rate"):
        csgm.solve(pb, g, csgm.CSGMConfig(steps=3, restarts=2))
    del Poison


def test_bad_settings():
    g = tiny_prior()
    pb, _ = _problem(g)
    with pytest.raises(BadInput, match="unknown optimizer 'rmsprop'"):
        csgm.solve(pb, g, csgm.CSGMConfig(optimizer="rmsprop"))
    with pytest.raises(BadInput, match="lr must be a positive number"):
        csgm.solve(pb, g, csgm.CSGMConfig(lr=-1))
    with pytest.raises(BadInput, match="steps must be a positive integer"):
        csgm.solve(pb, g, csgm.CSGMConfig(steps=0))
    with pytest.raises(BadInput, match="restarts must be a positive integer"):
        csgm.solve(pb, g, csgm.CSGMConfig(restarts=0))
    with pytest.raises(BadInput, match="outside the cut points"):
        surgery.solve(pb, g, surgery.SurgeryConfig(cut=9))
    with pytest.raises(BadInput, match="z_reg must be"):
        csgm.solve(pb, g, csgm.CSGMConfig(z_reg=-1.0))
    with pytest.raises(UnknownName, match="did you mean 'surgery'"):
        get_method("surgey")
    with pytest.raises(BadInput, match="one image"):
        Problem(pb.A, pb.y.repeat(2, 1))


def test_events_emitted():
    g = tiny_prior()
    pb, _ = _problem(g)
    ev = []
    surgery.solve(pb, g, surgery.SurgeryConfig(steps=3, restarts=1), on_event=ev.append)
    assert [e.step for e in ev] == [1, 2, 3] and all(e.total == 3 and e.phase == "surgery:c1" for e in ev)
