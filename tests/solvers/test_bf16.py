"""The fast schedule's low-precision start: minimise_ls switching from a coarse loss to the exact
one, and the solvers' bfloat16 copy of the prior (``bf16_share``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from recon_core.errors import BadInput
from recon_core.generators import registry
from recon_core.solvers import csgm, make_config, surgery
from recon_core.solvers import common
from recon_core.solvers.common import FAST_SCHEDULE, bf16_tail, measurement_loss, native_bf16
from recon_core.solvers.linesearch import minimise_ls
from tests.conftest import tiny_prior
from tests.solvers.test_linesearch import _init, _minimum, _problem, _rows_loss


def _counted(fn, calls: list):
    def loss(state):
        calls.append(state["x"].shape[0])
        return fn(state)

    return loss


def _scaled(scale: float):
    """A coarse loss that disagrees with the exact one by a factor (value and gradient)."""
    base = _rows_loss(None)
    return lambda state: base(state) * scale


def _quantised(step: float, rows=None):
    """The exact loss's gradient, but its value rounded to ``step`` (for the rows ``rows``, all
    when None): progress below ``step`` is invisible to the line search."""
    base = _rows_loss(None)

    def loss(state):
        v = base(state)
        q = v + (torch.round(v / step) * step - v).detach()
        if rows is None:
            return q
        pick = torch.isin(state["i"][:, 0].round().long(), torch.tensor(rows))
        return torch.where(pick, q, v)

    return loss


def test_the_switch_evaluates_exactly_then_selects_on_the_exact_loss():
    fine_calls, coarse_calls = [], []
    fine = _counted(_rows_loss(None), fine_calls)
    best, losses, _, _, info = minimise_ls(fine, _init(), max_evals=40, prune_after=0.5, stop_tol=0,
                                           coarse_fn=_counted(_scaled(0.5), coarse_calls), coarse_evals=10)
    (spent,) = info["coarse_evaluations"]
    # the switch comes at the first iteration starting after 10 evaluations (a line search
    # under way finishes on the coarse loss)
    assert 10 <= spent < 20 and info["evaluations"] == 40 and len(coarse_calls) == spent
    # after the switch: one re-scoring of the 3 rows' best iterates, then exact evaluations only
    assert fine_calls[0] == 3 and len(fine_calls) == 1 + 40 - spent
    # every returned loss is the exact loss of the returned state (the coarse one is half of it)
    with torch.no_grad():
        exact = _rows_loss(None)(best)
    torch.testing.assert_close(losses, exact, rtol=1e-12, atol=0)
    kept = next(i for i, why in enumerate(info["stops"]) if why != "pruned")
    assert float(losses[kept]) == float(losses.min())


def test_a_row_stalled_by_the_coarse_loss_switches_early_and_reaches_the_exact_minimum():
    _, losses, _, _, info = minimise_ls(_rows_loss(None), _init(), max_evals=400, prune_after=0, stop_tol=1e-12,
                                        coarse_fn=_quantised(0.5), coarse_evals=300)
    assert info["coarse_evaluations"][0] < 300  # switched before its share was spent
    for r in range(3):
        assert float(losses[r]) == pytest.approx(_minimum(r), rel=1e-6, abs=1e-9)


def test_groups_switching_at_different_times_get_what_each_gets_alone():
    """Row 0 (group 0) stalls on its coarse loss and switches early while the others are still
    coarse: the evaluations mixing both losses give each row what it gets alone."""
    coarse = _quantised(5.0, rows=[0])
    _, together, _, _, info = minimise_ls(_rows_loss(None), _init(), max_evals=120, prune_after=0, stop_tol=1e-9,
                                          groups=3, coarse_fn=coarse, coarse_evals=60)
    assert info["coarse_evaluations"][0] < min(info["coarse_evaluations"][1:])
    for r in range(3):
        _, alone, _, _, got = minimise_ls(_rows_loss(None), _init((r,)), max_evals=120, prune_after=0, stop_tol=1e-9,
                                          coarse_fn=coarse, coarse_evals=60)
        assert got["coarse_evaluations"] == [info["coarse_evaluations"][r]]
        assert float(alone[0]) == pytest.approx(float(together[r]), rel=1e-9)


def test_rows_that_stop_before_the_switch_are_rescored_exactly():
    best, losses, _, _, info = minimise_ls(_rows_loss(None), _init(), max_evals=50, prune_after=0, stop_tol=0,
                                           noise_floor=1e3, coarse_fn=_scaled(0.5), coarse_evals=20)
    assert info["stops"] == ["noise"] * 3 and info["coarse_evaluations"] == [1]
    with torch.no_grad():
        torch.testing.assert_close(losses, _rows_loss(None)(best), rtol=1e-12, atol=0)


@pytest.mark.parametrize("value", [-1, 10, 2.5, True])
def test_bad_coarse_evals(value):
    with pytest.raises(BadInput, match=r"coarse_evals must be an integer from 0 to max_evals - 1 \(9\), got"):
        minimise_ls(_rows_loss(None), _init(), max_evals=10, coarse_fn=_scaled(1.0), coarse_evals=value)


@pytest.mark.parametrize("arch", registry.names())
def test_bf16_tail_of_every_adapter(arch):
    """The bfloat16 copy computes the same image closely, in the prior's dtype, with gradients
    reaching the float32 state; the prior itself is left in float32."""
    g = tiny_prior(arch)
    for p in g.parameters():
        p.requires_grad_(False)
    cut = min(1, len(g.blocks) - 1)
    state = {k: v.requires_grad_(v.is_floating_point()) for k, v in g.init_state(cut, 2, init="prior", rng=torch.Generator().manual_seed(0)).items()}
    out = bf16_tail(g, cut)(state)
    ref = g.tail(state, cut)
    assert out.dtype == ref.dtype == torch.float32 and out.shape == ref.shape
    assert float((out - ref).detach().abs().max()) < 0.1
    floats = [v for v in state.values() if v.requires_grad]
    grads = torch.autograd.grad(out.sum(), floats)
    assert all(gr.dtype == torch.float32 and bool(torch.isfinite(gr).all()) and float(gr.abs().sum()) > 0 for gr in grads)
    assert all(p.dtype == torch.float32 for p in g.parameters())


def test_bf16_copy_builds_no_weight_gradients():
    """The copy is frozen even when the prior's weights require grad (as a loaded prior's do):
    a backward() through it (Adam's way) must reach the state only."""
    g = tiny_prior("dcgan")
    assert all(p.requires_grad for p in g.parameters())
    tail = bf16_tail(g, 0)
    z = g.init_state(0, 2, init="prior", rng=torch.Generator().manual_seed(0))["z"].requires_grad_(True)
    tail({"z": z}).sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert not any(p.requires_grad or p.grad is not None for p in tail.module.parameters())
    assert all(p.requires_grad for p in g.parameters())  # the prior's own flags are left alone


@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_bf16_share_is_used_where_native_and_recorded(method, monkeypatch):
    g = tiny_prior("dcgan")
    before = {k: v.clone() for k, v in g.state_dict().items()}
    pb, _ = _problem(g)
    mod = {"csgm": csgm, "surgery": surgery}[method]
    base = replace(make_config(method, "paper", "dcgan", g.cut_points), **{**FAST_SCHEDULE, "steps": 30, "bf16_share": 0.0})
    plain = mod.solve(pb, g, base, seed=2)
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    low = mod.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    # bfloat16 until the first iteration that starts after 15 evaluations: the line search under
    # way then may take up to max_backtracks (12) evaluations, all with the loss it started on
    assert 0 < low.extra["bf16_evaluations"] < 15 + 12 and plain.extra["bf16_evaluations"] == 0
    assert low.extra["evaluations"] <= 30
    # the kept restart's loss is the float32 measurement loss of the returned image
    with torch.no_grad():
        exact = float(measurement_loss(pb.A, pb.y, low.x_hat))
    assert low.losses[low.best_restart] == pytest.approx(exact, rel=1e-5)
    assert all(torch.equal(v, g.state_dict()[k]) and v.dtype == g.state_dict()[k].dtype for k, v in before.items())
    # where bfloat16 is not native, the share is not used: the float32 solve, exactly
    monkeypatch.setattr(common, "native_bf16", lambda device: False)
    off = mod.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    assert off.extra["bf16_evaluations"] == 0 and torch.equal(off.x_hat, plain.x_hat)


@pytest.mark.parametrize("method", ["csgm", "surgery", "hybrid"])
@pytest.mark.parametrize("value, match", [
    (1.0, r"bf16_share must be a number in \[0, 1\) .* got 1.0"),
    (-0.1, r"bf16_share must be a number in \[0, 1\) .* got -0.1"),
    (float("nan"), r"bf16_share must be a number in \[0, 1\) .* got nan"),
    ("0.5", r"bf16_share must be a number in \[0, 1\) .* got '0.5'"),
])
def test_bad_bf16_share_is_refused_where_the_config_is_made(method, value, match):
    with pytest.raises(BadInput, match=match):
        replace(make_config(method, "paper", "dcgan"), bf16_share=value)


def test_native_bf16_follows_the_cpu_probes(monkeypatch):
    assert native_bf16("meta") is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert native_bf16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bf16("cpu") is True


@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_coarse_evaluations_ask_the_operator_for_its_bfloat16_form(method, monkeypatch):
    """The bfloat16 evaluations ask ``residual_energy`` for its coarse form (cs-gaussian's
    bfloat16 copies of A), every float32 evaluation for the exact one; none where not native."""
    from recon_core.operators.gaussian import GaussianCS

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    mod = {"csgm": csgm, "surgery": surgery}[method]
    cfg = replace(make_config(method, "paper", "dcgan", g.cut_points), **{**FAST_SCHEDULE, "steps": 30, "bf16_share": 0.5})
    calls = []
    orig = GaussianCS.residual_energy

    def spy(self, x, y, coarse=False):
        calls.append(coarse)
        return orig(self, x, y, coarse)

    monkeypatch.setattr(GaussianCS, "residual_energy", spy)
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    r = mod.solve(pb, g, cfg, seed=2)
    flags = list(calls)
    n_coarse = sum(flags)
    assert n_coarse == r.extra["bf16_evaluations"] > 0
    assert flags[:n_coarse] == [True] * n_coarse and not any(flags[n_coarse:])  # coarse first, then exact
    calls.clear()
    monkeypatch.setattr(common, "native_bf16", lambda device: False)
    mod.solve(pb, g, cfg, seed=2)
    assert calls and not any(calls)


def _adam(loss, coarse=None, coarse_evals=0, steps=30, info=None):
    return common.optimise_state(loss, _init(), optimizer="adam", lr=0.05, steps=steps, info=info,
                                 fast={"coarse_fn": coarse, "coarse_evals": coarse_evals} if coarse else None)


def test_adam_with_a_coarse_start_switches_and_selects_on_the_exact_loss():
    """optimise_state's Adam path: the coarse loss for the first coarse_evals steps, then the
    exact one; the best iterates are re-scored at the switch, so the losses returned are the exact
    loss of the states returned."""
    fine_calls, coarse_calls = [], []
    info = {}
    best, losses, _, _ = _adam(_counted(_rows_loss(None), fine_calls), _counted(_scaled(0.5), coarse_calls), 10, info=info)
    # 10 coarse steps; then 1 re-scoring + 20 steps + the final evaluation, exact
    assert len(coarse_calls) == 10 and len(fine_calls) == 22 and info["coarse_evaluations"] == [10]
    with torch.no_grad():
        exact = _rows_loss(None)(best).double()
    torch.testing.assert_close(losses, exact)
    # with the coarse loss equal to the exact one, the switch changes nothing (bit for bit)
    same, same_losses, _, _ = _adam(_rows_loss(None), _rows_loss(None), 10)
    plain, plain_losses, _, _ = _adam(_rows_loss(None))
    assert all(torch.equal(same[k], plain[k]) for k in plain) and torch.equal(same_losses, plain_losses)


@pytest.mark.parametrize("value", [-1, 30, 2.5])
def test_adam_bad_coarse_evals(value):
    with pytest.raises(BadInput, match=r"coarse_evals must be an integer from 0 to steps - 1 \(29\), got"):
        _adam(_rows_loss(None), _scaled(1.0), value)


def test_ilo_bf16_share_runs_every_round_low_first_where_native(monkeypatch):
    """ILO's bf16_share: the first share of every round's steps with the bfloat16 copy (and the
    operator's coarse residual), recorded; the kept restart's loss is the float32 loss of the
    returned image; where bfloat16 is not native the share is not used (the float32 solve, exactly)."""
    from recon_core.solvers import ilo

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    base = ilo.ILOConfig(steps=(20, 10, 10), radii=(5.0, 10.0), restarts=2)
    plain = ilo.solve(pb, g, base, seed=3)
    monkeypatch.setattr(ilo, "native_bf16", lambda device: True)
    asked = []
    orig = type(pb.A).residual_energy

    def spy(self, x, y, coarse=False):
        asked.append(coarse)
        return orig(self, x, y, coarse)

    monkeypatch.setattr(type(pb.A), "residual_energy", spy)
    low = ilo.solve(pb, g, replace(base, bf16_share=0.5), seed=3)
    assert low.extra["bf16_evaluations"] == 10 + 5 + 5 == asked.count(True) and "bf16_evaluations" not in plain.extra
    with torch.no_grad():
        exact = float(measurement_loss(pb.A, pb.y, low.x_hat))
    assert low.losses[low.best_restart] == pytest.approx(exact, rel=1e-3)  # ILO's own residual form
    monkeypatch.setattr(ilo, "native_bf16", lambda device: False)
    off = ilo.solve(pb, g, replace(base, bf16_share=0.5), seed=3)
    assert off.extra["bf16_evaluations"] == 0 and torch.equal(off.x_hat, plain.x_hat)
    with pytest.raises(BadInput, match=r"bf16_share must be a number in \[0, 1\)"):
        ilo.solve(pb, g, replace(base, bf16_share=1.0), seed=3)


def test_ilo_bf16_share_with_line_search_rounds(monkeypatch):
    from recon_core.solvers import ilo

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    monkeypatch.setattr(ilo, "native_bf16", lambda device: True)
    cfg = ilo.ILOConfig(steps=(20, 10, 10), radii=(5.0, 10.0), restarts=2, optimizer="lbfgs-ls", bf16_share=0.5)
    res = ilo.solve(pb, g, cfg, seed=3)
    assert 0 < res.extra["bf16_evaluations"] < res.extra["evaluations"] <= 40 + 3
    with torch.no_grad():
        exact = float(measurement_loss(pb.A, pb.y, res.x_hat))
    assert res.losses[res.best_restart] == pytest.approx(exact, rel=1e-3)


def test_csgm_adam_schedule_with_bf16_share(monkeypatch):
    """The paper's Adam schedule with a bfloat16 start: the first share of its steps low, the
    kept restart's loss the float32 loss of the returned image; not native: the float32 solve,
    exactly; the fixed-step L-BFGS ignores the share."""
    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    base = replace(make_config("csgm", "paper", "dcgan"), steps=20)
    plain = csgm.solve(pb, g, base, seed=2)
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    low = csgm.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    assert low.extra["bf16_evaluations"] == 10 and "bf16_evaluations" not in plain.extra
    with torch.no_grad():
        exact = float(measurement_loss(pb.A, pb.y, low.x_hat))
    # rel 1e-3, not tighter: the residual is ~1e-5 of ||y||^2, so float32 rounding of the batched
    # vs the single-image forward (kernels differ between CPUs: 1e-5 apart on one without AMX)
    # is amplified; a bfloat16-scored loss would be off by far more (8 mantissa bits)
    assert low.losses[low.best_restart] == pytest.approx(exact, rel=1e-3)
    lb = replace(base, optimizer="lbfgs", steps=2, lbfgs_max_iter=3)
    assert torch.equal(csgm.solve(pb, g, replace(lb, bf16_share=0.5), seed=2).x_hat, csgm.solve(pb, g, lb, seed=2).x_hat)
    monkeypatch.setattr(common, "native_bf16", lambda device: False)
    off = csgm.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    assert off.extra["bf16_evaluations"] == 0 and torch.equal(off.x_hat, plain.x_hat)


def test_hybrid_bf16_share_runs_every_stage_low_first_where_native(monkeypatch):
    """The hybrid's bfloat16 start: the first share of each of its three stages low (counted in
    bf16_evaluations), the kept restart's loss the float32 loss of its (unclamped) mix; not
    native: the float32 solve, exactly."""
    from recon_core.solvers import hybrid

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    base = hybrid.HybridConfig(n_pre=10, steps=20, restarts=2, dd_depth=2)
    plain = hybrid.solve(pb, g, base, seed=2)
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    monkeypatch.setattr(hybrid, "native_bf16", lambda device: True)
    low = hybrid.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    assert low.extra["bf16_evaluations"] == 5 + 5 + 10 and "bf16_evaluations" not in plain.extra
    assert not torch.equal(low.x_hat, plain.x_hat)
    with torch.no_grad():
        mix = hybrid._mix(g, low.state, low.state["dd.input"])
        exact = float(measurement_loss(pb.A, pb.y, mix))
    assert low.losses[low.best_restart] == pytest.approx(exact, rel=1e-5)
    monkeypatch.setattr(hybrid, "native_bf16", lambda device: False)
    off = hybrid.solve(pb, g, replace(base, bf16_share=0.5), seed=2)
    assert off.extra["bf16_evaluations"] == 0 and torch.equal(off.x_hat, plain.x_hat)
