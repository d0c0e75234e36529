"""ILO and mGANprior on tiny problems: loss decrease, l1 constraint, geodesic loss, errors."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from recon_core.errors import BadInput, MissingWeights
from recon_core.generators.base import BlockInfo, GeneratorAdapter, GeneratorMeta
from recon_core.operators import build
from recon_core.solvers import Problem, csgm, get_method, ilo, mgan
from recon_core.solvers.common import measurement_loss
from recon_core.solvers.losses import geodesic_loss, lpips_loss, mse_loss
from tests.conftest import tiny_prior


def _problem(ratio=0.3, outside=True):
    """Measurements of an image *outside* the tiny prior's range (made by another random prior),
    so that intermediate layers have something to gain, or (outside=False) of one in its range."""
    other = tiny_prior(seed=1 if outside else 0)
    with torch.no_grad():
        x = other(other.sample_latent(1, torch.Generator().manual_seed(5)))
    A = build("cs-gaussian", tuple(x.shape[1:]), seed=0, ratio=ratio)
    return Problem(A, A.A(x)), x


class ToyW(GeneratorAdapter):
    """A two-block toy with a w+ latent (3 layers x 6) and a conditioning vector c (5,) that
    block 0 passes through: exercises the generic handling of state entries (no DCGAN)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(6, 4 * 8 * 8)
        self.mod = nn.Linear(6, 4)
        self.bias = nn.Linear(5, 1)
        self.conv = nn.Conv2d(4, 1, 3, padding=1)
        self.meta = GeneratorMeta(architecture="toyw", resolution=8, channels=1)
        self.eval()

    def block_infos(self):
        lat = {"w": (3, 6), "c": (5,)}
        mid = {"h": (4, 8, 8), "w": (3, 6), "c": (5,)}
        roles = {"w": "w+", "c": "conditioning", "h": "features", "img": "image"}
        return [BlockInfo("b0", lat, mid, roles), BlockInfo("b1", mid, {"img": (1, 8, 8)}, roles)]

    def run_block(self, i, state):
        w, c = state["w"], state["c"]
        if i == 0:
            return OrderedDict(h=self.lin(w[:, 0]).view(-1, 4, 8, 8), w=w, c=c)
        s = self.mod(w[:, 1:].mean(1))[:, :, None, None]
        img = torch.tanh(self.conv(state["h"] * (1 + s)) + self.bias(c)[:, :, None, None])
        return OrderedDict(img=img)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
def _geocross_loop(w):
    """Naive per-restart, per-pair reference of the GEOCROSS formula."""
    R, L, D = w.shape
    out = []
    for r in range(R):
        tot = 0.0
        for i in range(L):
            for j in range(L):
                a, b = (w[r, i] - w[r, j]).norm(), (w[r, i] + w[r, j]).norm()
                tot += float(2 * torch.atan2(a, b)) ** 2 * D
        out.append(tot / (L * L) / 8)
    return torch.tensor(out, dtype=w.dtype)


def test_geodesic_loss_on_the_layer_axis():
    g = torch.Generator().manual_seed(0)
    same = torch.randn(1, 1, 8, generator=g, dtype=torch.float64).expand(1, 5, 8)
    diff = torch.randn(1, 5, 8, generator=g, dtype=torch.float64)
    w = torch.cat([same, diff]).clone().requires_grad_(True)  # restart 0: identical layers
    loss = geodesic_loss(w)
    assert loss.shape == (2,)
    assert float(loss[0].detach()) == 0.0 and float(loss[1].detach()) > 0.1
    torch.testing.assert_close(loss.detach(), _geocross_loop(w.detach()))
    # per restart: swapping the restarts swaps the values (a batch-axis slice would mix them)
    torch.testing.assert_close(geodesic_loss(w.detach().flip(0)), loss.detach().flip(0))
    loss.sum().backward()
    assert torch.isfinite(w.grad).all() and float(w.grad[0].abs().max()) == 0.0
    # a single layer has nothing to compare; a non-w+ tensor is refused
    assert float(geodesic_loss(torch.randn(2, 1, 8)).abs().max()) == 0.0
    with pytest.raises(BadInput, match="n_layers, dim"):
        geodesic_loss(torch.randn(2, 8))


def test_mse_and_lpips_loss_per_restart():
    A = build("cs-gaussian", (3, 32, 32), seed=0, ratio=0.2)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = A.A(x[:1])
    m = mse_loss(A, y, x)
    torch.testing.assert_close(m, measurement_loss(A, y, x) / A.m)
    assert float(m[0]) < 1e-10 < float(m[1])
    try:
        lp = lpips_loss(x, x[:1])
    except MissingWeights:
        pytest.skip("LPIPS backbone not installed")
    assert lp.shape == (3,) and float(lp[0]) < 1e-6 < float(lp[1])


# ---------------------------------------------------------------------------------------------
# ILO
# ---------------------------------------------------------------------------------------------
SMALL = dict(steps=(40, 25, 25), radii=(5.0, 10.0), restarts=2)


def test_ilo_decreases_measurement_loss_and_emits_events():
    g = tiny_prior()
    pb, x = _problem()
    events = []
    before = {k: v.clone() for k, v in g.state_dict().items()}
    res = ilo.solve(pb, g, ilo.ILOConfig(**SMALL), on_event=events.append, seed=0)
    rounds = res.extra["rounds"]
    assert [r["cut"] for r in rounds] == [0, 1, 2] and rounds[1]["radius"] == 5.0
    start = res.history[0]["loss"]  # the best loss after step 1 = the loss of the initial latents
    assert min(res.losses) < 0.7 * start
    # deeper rounds improve on round 0 (CSGM) for an image outside the range
    assert min(res.losses) < 0.8 * min(rounds[0]["best_losses"])
    assert res.losses[res.best_restart] == min(res.losses) and len(res.losses) == 2
    assert res.extra["stop"] == "steps"  # the paper's Adam rounds run every step (metrics.json's solve.stop)
    with torch.no_grad():
        got = float(measurement_loss(pb.A, pb.y, res.x_hat))
    assert math.isclose(got, min(res.losses), rel_tol=1e-3)
    assert res.x_hat.shape == x.shape and 0 <= res.x_hat.min() and res.x_hat.max() <= 1
    assert set(res.state) == set(g.state_shapes(res.extra["cut"]))
    phases = [e.phase for e in events]
    assert phases.count("ilo:round0") == 40 and phases.count("ilo:round1") == 25 and phases.count("ilo:round2") == 25
    assert events[-1].loss == pytest.approx(min(res.losses)) and res.history[-1]["loss"] == pytest.approx(min(res.losses))
    # the prior is neither trained nor left with gradients switched off
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert all(p.requires_grad for p in g.parameters())


def test_ilo_round0_is_csgm():
    """Round 0 with the schedule off runs the CSGM trajectory (same init, same Adam steps; the
    loss is the mean instead of the sum, which Adam does not see but for its epsilon). The tiny
    prior's output layer is scaled up so that gradients of the mean loss sit well above Adam's
    epsilon (on the raw tiny prior they are ~1e-6 and epsilon alone makes the runs drift apart)."""
    g = tiny_prior()
    with torch.no_grad():
        g.main[-2].weight.mul_(20)
    pb, _ = _problem()

    def run(restarts):
        cfg = ilo.ILOConfig(layers=(0,), steps=(40,), radii=(), lr_rampup=0, lr_rampdown=0, restarts=restarts)
        return ilo.solve(pb, g, cfg, seed=3), csgm.solve(pb, g, csgm.CSGMConfig(steps=40, restarts=restarts), seed=3)

    a, b = run(1)
    torch.testing.assert_close(a.state["z"], b.state["z"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.x_hat, b.x_hat, atol=1e-4, rtol=0)
    assert a.losses == pytest.approx(b.losses, rel=1e-4)
    a, b = run(3)  # every restart follows its CSGM twin
    assert a.losses == pytest.approx(b.losses, rel=1e-4)


def test_ilo_state_stays_in_l1_ball_around_previous_solution():
    g = tiny_prior()
    pb, _ = _problem()
    radius = 0.5
    base = dict(lr_rampup=0.05, restarts=1)
    r0 = ilo.solve(pb, g, ilo.ILOConfig(layers=(0,), steps=(40,), radii=(), **base), seed=1)
    r1 = ilo.solve(pb, g, ilo.ILOConfig(layers=(0, 1), steps=(40, 30), radii=(radius,), **base), seed=1)
    assert r1.extra["rounds"][0]["best_losses"] == r0.losses  # same round 0
    assert r1.extra["best_round"] == 1 and r1.losses[0] < r0.losses[0]
    with torch.no_grad():
        center = g.head(r0.state, 1)
    for k, v in r1.state.items():
        dev = float((v - center[k]).abs().sum())
        assert dev <= radius * (1 + 1e-5)
        assert dev > 0.9 * radius  # the constraint is active: without it the step would go further


def test_ilo_project_range_and_sna_track_the_clean_measurement_loss():
    g = tiny_prior()
    pb, _ = _problem(outside=False)
    events = []
    cfg = ilo.ILOConfig(steps=(30, 20, 20), radii=(3.0, 6.0), restarts=2, project_range=True, range_steps=15, sna_std=0.005)
    res = ilo.solve(pb, g, cfg, on_event=events.append, seed=0)
    phases = {e.phase for e in events}
    assert {"ilo:round0", "ilo:range1", "ilo:round1", "ilo:round2"} <= phases and "ilo:range2" not in phases
    resid = res.extra["rounds"][1]["range_residual"]
    assert len(resid) == 2 and all(0 <= v < 1 for v in resid)
    # SNA perturbs the optimised loss only: the reported loss is that of the noise-free estimate
    with torch.no_grad():
        got = float(measurement_loss(pb.A, pb.y, res.x_hat))
    assert math.isclose(got, min(res.losses), rel_tol=1e-3)
    assert min(res.losses) < 0.5 * res.history[0]["loss"]


def test_ilo_mse_lpips_runs():
    g = tiny_prior()
    pb, _ = _problem()
    cfg = ilo.ILOConfig(layers=(0, 1), steps=(6, 4), radii=(3.0,), restarts=2, loss="mse+lpips", lpips_weight=0.5)
    try:
        res = ilo.solve(pb, g, cfg, seed=0)
    except MissingWeights:
        pytest.skip("LPIPS backbone not installed")
    assert all(math.isfinite(v) for v in res.losses)


def test_ilo_geodesic_applies_to_a_w_plus_entry(monkeypatch):
    """The geodesic term is added exactly when the optimised state has a "w" entry of per-sample
    shape (n_layers, dim), found by name and shape on any adapter (here a toy, not StyleGAN)."""
    calls = []
    real = ilo.geodesic_loss

    def spy(w):
        calls.append(tuple(w.shape))
        return real(w)

    monkeypatch.setattr(ilo, "geodesic_loss", spy)
    toy = ToyW()
    with torch.no_grad():
        x = toy(toy.sample_latent(1, torch.Generator().manual_seed(9)))
    A = build("cs-gaussian", (1, 8, 8), seed=0, ratio=0.5)
    pb = Problem(A, A.A(x))
    res = {}
    for weight in (0.0, 1.0):
        calls.clear()
        cfg = ilo.ILOConfig(layers=(0, 1), steps=(10, 5), radii=(2.0,), restarts=2, geodesic_weight=weight)
        res[weight] = ilo.solve(pb, toy, cfg, seed=0)
        # every objective evaluation of both rounds (steps + the final re-evaluation of each round)
        assert calls == ([(2, 3, 6)] * (10 + 1 + 5 + 1) if weight else [])
    assert res[1.0].losses != res[0.0].losses
    calls.clear()
    g = tiny_prior()
    ilo.solve(_problem()[0], g, ilo.ILOConfig(steps=(3, 2, 2), radii=(1.0, 1.0), restarts=1), seed=0)
    assert calls == []  # DCGAN states have no w+ entry


def test_ilo_bad_settings():
    g = tiny_prior()  # cut points 0..3
    pb, _ = _problem()

    def run(**kw):
        ilo.solve(pb, g, ilo.ILOConfig(**{**SMALL, **kw}), seed=0)

    with pytest.raises(BadInput, match="steps has 2 entries but layers has 3"):
        run(steps=(10, 10))
    with pytest.raises(BadInput, match="radii has 1 entries"):
        run(radii=(1.0,))
    with pytest.raises(BadInput, match="l1 radius must be a number >= 0"):
        run(radii=(1.0, -2.0))
    with pytest.raises(BadInput, match="ILO layer 7 is outside the cut points of dcgan"):
        run(layers=(0, 1, 7))
    with pytest.raises(BadInput, match="must start with 0"):
        run(layers=(1, 2, 3))
    with pytest.raises(BadInput, match="non-decreasing"):
        run(layers=(0, 2, 1))
    with pytest.raises(BadInput, match="lpips_weight must be a number >= 0"):
        run(lpips_weight=-1.0)
    with pytest.raises(BadInput, match="unknown ILO loss"):
        run(loss="lpips")
    with pytest.raises(BadInput, match="sna_std must be a number >= 0"):
        run(sna_std=-0.1)
    with pytest.raises(BadInput, match="lr_rampup must be a fraction"):
        run(lr_rampup=2.0)


def test_lr_schedule_shape():
    f = ilo.ilo_lr_schedule(100)
    assert f(0) == 0.0 and f(5) == pytest.approx(1.0) and f(25) == pytest.approx(1.0)
    assert 0 < f(70) < 1 and f(99) < 0.01
    assert all(f(i) >= f(i + 1) for i in range(25, 99))
    flat = ilo.ilo_lr_schedule(10, 0, 0)
    assert all(flat(i) == 1.0 for i in range(10))


# ---------------------------------------------------------------------------------------------
# mGANprior
# ---------------------------------------------------------------------------------------------
def test_mgan_decreases_measurement_loss():
    g = tiny_prior()
    pb, x = _problem(outside=False)
    events = []
    cfg = mgan.MGANConfig(n_codes=4, layer=1, steps=120, restarts=2)
    res = mgan.solve(pb, g, cfg, on_event=events.append, seed=0)
    assert min(res.losses) < 0.5 * res.history[0]["loss"]
    assert [e.phase for e in events] == ["mgan"] * 120
    assert res.state["z"].shape == (1, 4, 8)
    c = g.state_shapes(1)["h"][0]
    assert res.state["alpha:h"].shape == (1, 4, c, 1, 1)
    with torch.no_grad():
        got = float(measurement_loss(pb.A, pb.y, res.x_hat))
        again = mgan.compose(g, res.state, 1, 1, 4)
    assert math.isclose(got, min(res.losses), rel_tol=1e-3)
    torch.testing.assert_close(again, res.x_hat)
    assert res.x_hat.shape == x.shape


def test_mgan_generic_entries_and_sgd():
    """Vector entries get one scalar per code; the reference's SGD works on the mean loss."""
    toy = ToyW()
    with torch.no_grad():
        x = toy(toy.sample_latent(1, torch.Generator().manual_seed(9)))
    A = build("cs-gaussian", (1, 8, 8), seed=0, ratio=0.5)
    pb = Problem(A, A.A(x))
    res = mgan.solve(pb, toy, mgan.MGANConfig(n_codes=3, steps=60, restarts=2, optimizer="sgd", lr=1.0), seed=0)
    assert res.state["alpha:h"].shape == (1, 3, 4, 1, 1)
    assert res.state["alpha:w"].shape == (1, 3, 3, 1)
    assert res.state["alpha:c"].shape == (1, 3, 1)
    assert res.state["w"].shape == (1, 3, 3, 6) and res.state["c"].shape == (1, 3, 5)
    assert min(res.losses) < res.history[0]["loss"]


def test_mgan_bad_settings():
    g = tiny_prior()
    pb, _ = _problem()

    def run(**kw):
        mgan.solve(pb, g, mgan.MGANConfig(**{"steps": 5, "restarts": 1, **kw}), seed=0)

    with pytest.raises(BadInput, match="layer 0 is not an intermediate cut point"):
        run(layer=0)
    with pytest.raises(BadInput, match="layer 9 is not an intermediate cut point"):
        run(layer=9)
    with pytest.raises(BadInput, match="n_codes must be a positive integer"):
        run(n_codes=0)
    with pytest.raises(BadInput, match="unknown optimizer 'rmsprop'"):
        run(optimizer="rmsprop")
    with pytest.raises(BadInput, match="lpips_weight must be a number >= 0"):
        run(lpips_weight=-0.5)


def test_registered():
    assert get_method("ilo") == (ilo.ILOConfig, ilo.solve)
    assert get_method("mgan") == (mgan.MGANConfig, mgan.solve)
