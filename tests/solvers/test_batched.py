"""Batched solving: B problems through every batched method (paper and fast schedules) as one
batch equal B single solves, and
StackedOperator applies one operator per group of rows."""

from __future__ import annotations

import pytest
import torch

from recon_core.errors import BadInput, OperatorError, SolverDiverged
from recon_core.operators import StackedOperator, build
from recon_core.solvers import Problem, csgm, deep_decoder, hybrid, iagan, ilo, mgan, surgery
from recon_core.solvers.common import best_per_group, divergence_advice, problem_seeds, solve_isolated
from tests.conftest import tiny_prior

CONFIGS = {
    "ilo": (ilo, ilo.ILOConfig(layers=(0, 1, 2), steps=(15, 10, 10), radii=(3.0, 6.0), restarts=2,
                               project_range=True, range_steps=5)),
    "mgan": (mgan, mgan.MGANConfig(n_codes=3, layer=1, steps=25, restarts=2)),
    "mgan-fast": (mgan, mgan.MGANConfig(n_codes=3, layer=1, steps=25, restarts=2, optimizer="lbfgs-ls", prune_after=0.3)),
    "ilo-fast": (ilo, ilo.ILOConfig(layers=(0, 1, 2), steps=(10, 8, 8), radii=(3.0, 6.0), restarts=2,
                                    optimizer="lbfgs-ls", prune_after=0.3)),
    "csgm": (csgm, csgm.CSGMConfig(steps=25, restarts=2, z_reg=0.01)),
    "surgery": (surgery, surgery.SurgeryConfig(steps=4, lbfgs_max_iter=5, restarts=2)),
    "surgery-fast": (surgery, surgery.SurgeryConfig(optimizer="lbfgs-ls", steps=20, restarts=3, prune_after=0.3)),
    "deep-decoder": (deep_decoder, deep_decoder.DeepDecoderConfig(steps=15, restarts=2, depth=2, width=8)),
    "iagan": (iagan, iagan.IAGANConfig(csgm_steps=12, steps=4, restarts=2)),
    "iagan-fast": (iagan, iagan.IAGANConfig(csgm_steps=12, steps=4, restarts=2, csgm_optimizer="lbfgs-ls", prune_after=0.3,
                                            adapt_restarts=1)),
    "hybrid": (hybrid, hybrid.HybridConfig(n_pre=5, steps=10, restarts=2, dd_depth=2, dd_width=6)),
    "deep-decoder-fast": (deep_decoder, deep_decoder.DeepDecoderConfig(steps=15, restarts=2, depth=2, width=8, optimizer="lbfgs-ls",
                                                                       prune_after=0.3)),
}


def _images(n):
    other = tiny_prior(seed=1)  # images outside the solving prior's range
    with torch.no_grad():
        return other(other.sample_latent(n, torch.Generator().manual_seed(5)))


def _problems(kind, n, shared, **params):
    x = _images(n)
    ops = [build(kind, tuple(x.shape[1:]), seed=0 if shared else j, **params) for j in range(n)]
    if shared:
        ops = [ops[0]] * n
    return [Problem(A, A.A(x[j : j + 1])) for j, A in enumerate(ops)]


@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("kind,params,shared", [("cs-gaussian", {"ratio": 0.3}, False),
                                                ("inpaint", {"frac": 0.3}, False),
                                                ("superres", {"factor": 2}, True)])
def test_solve_batch_equals_single_solves(method, kind, params, shared):
    mod, cfg = CONFIGS[method]
    g = tiny_prior()
    problems = _problems(kind, 3, shared, **params)
    batched = mod.solve_batch(problems, g, cfg, seed=10)
    assert len(batched) == 3
    for j, (pb, rb) in enumerate(zip(problems, batched)):
        rs = mod.solve(pb, g, cfg, seed=10 + j)
        assert rb.best_restart == rs.best_restart
        assert rb.x_hat.shape == rs.x_hat.shape == (1,) + tuple(pb.A.img_shape)
        torch.testing.assert_close(rb.x_hat, rs.x_hat, atol=2e-4, rtol=1e-3)
        assert rb.losses == pytest.approx(rs.losses, rel=1e-3, abs=1e-6, nan_ok=True)  # NaN: a restart not adapted (iagan)
        assert [h["step"] for h in rb.history] == [h["step"] for h in rs.history]
        assert rb.history[-1]["loss"] == pytest.approx(rs.history[-1]["loss"], rel=1e-3, abs=1e-6)
        # the fast schedule solves problems with different operators one by one (row subsets)
        one_by_one = "lbfgs-ls" in (getattr(cfg, "optimizer", ""), getattr(cfg, "csgm_optimizer", "")) and not shared
        assert rb.extra.get("batch") == (None if one_by_one else 3) and "batch" not in rs.extra
        if method.startswith("ilo"):
            assert rb.extra["best_round"] == rs.extra["best_round"]
            assert [len(r["best_losses"]) for r in rb.extra["rounds"]] == [cfg.restarts] * len(cfg.layers)


def test_solve_batch_refuses_bad_input():
    g = tiny_prior()
    with pytest.raises(BadInput, match="non-empty list of Problem"):
        ilo.solve_batch([], g)
    a = _problems("cs-gaussian", 1, False, ratio=0.3)[0]
    b = _problems("cs-gaussian", 1, False, ratio=0.2)[0]
    with pytest.raises(BadInput, match="operators of one shape"):
        mgan.solve_batch([a, b], g)


def test_best_per_group_and_divergence():
    losses = torch.tensor([3.0, 1.0, float("nan"), 2.0, 5.0, 4.0], dtype=torch.float64)
    assert best_per_group(losses, 3, "try x") == [1, 3, 5]
    losses[4:] = float("nan")
    with pytest.raises(SolverDiverged, match="every restart of problem 2 diverged.*; try x$"):
        best_per_group(losses, 3, "try x")
    with pytest.raises(SolverDiverged, match="^every restart diverged"):
        best_per_group(torch.tensor([float("nan")] * 2), 1, "try x")


def test_divergence_advice_names_what_can_cause_it():
    assert divergence_advice("adam", 0.1) == "try a smaller learning rate than 0.1"
    # the line search picks its own steps: the learning rate is not the cause
    assert divergence_advice("lbfgs-ls", 0.1, z_reg=1e308) == "try a smaller z_reg than 1e+308"
    assert divergence_advice(("adam", "lbfgs-ls"), 0.1, lpips_weight=2.0, geodesic_weight=0.0) == (
        "try a smaller learning rate than 0.1 or a smaller lpips_weight than 2")
    assert "checking y" in divergence_advice(["lbfgs-ls"], 0.1)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-ls"])
def test_huge_loss_weight_diverges_naming_the_weight(optimizer):
    # a z_reg of 1e308 makes every loss inf whatever the step: the error must say so
    problem = _problems("cs-gaussian", 1, False, ratio=0.3)[0]
    config = csgm.CSGMConfig(steps=3, restarts=2, z_reg=1e308, optimizer=optimizer)
    with pytest.raises(SolverDiverged, match="try .*a smaller z_reg than 1e\\+308$") as err:
        csgm.solve(problem, tiny_prior(), config)
    assert ("learning rate" in str(err.value)) == (optimizer == "adam")


@pytest.mark.parametrize("optimizer,advice", [("adam", "try a smaller csgm_lr than 0.1$"),
                                              ("lbfgs-ls", "try checking y and the operator for huge or non-finite values$")])
def test_iagan_stage_one_divergence_advice(optimizer, advice):
    # y of 1e38 overflows the squared loss whatever the step: the line search has no lr to blame
    problem = _problems("inpaint", 1, False, frac=0.5)[0]
    problem = Problem(problem.A, problem.y * 1e38)
    with pytest.raises(SolverDiverged, match="diverged in the CSGM stage; " + advice):
        iagan.solve(problem, tiny_prior(), iagan.IAGANConfig(csgm_steps=5, steps=3, restarts=2, csgm_optimizer=optimizer))


def test_stacked_operator_groups_adjoint_and_pinv():
    parts = [build("cs-gaussian", (1, 8, 8), seed=s, ratio=0.25) for s in range(3)]
    S = StackedOperator(parts)
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    y = S.A(x)
    for j, p in enumerate(parts):
        torch.testing.assert_close(y[2 * j : 2 * j + 2], p.A(x[2 * j : 2 * j + 2]))
    v = torch.randn_like(y)
    lhs = (y * v).sum()
    rhs = (x * S.A_adjoint(v)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-9)
    torch.testing.assert_close(S.A(S.A_dagger(v)), v, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(S.backproject(x, y), x, atol=1e-8, rtol=1e-6)
    assert [p["seed"] for p in S.spec()["parts"]] == [0, 1, 2]
    assert S.to("cpu").A(x).allclose(y)


def test_stacked_operator_errors():
    a = build("cs-gaussian", (1, 8, 8), seed=0, ratio=0.25)
    b = build("cs-gaussian", (1, 8, 8), seed=0, ratio=0.5)
    with pytest.raises(OperatorError, match="at least one operator"):
        StackedOperator([])
    with pytest.raises(OperatorError, match="part 1 maps"):
        StackedOperator([a, b])
    with pytest.raises(OperatorError, match="part 1 is not a LinearOperator"):
        StackedOperator([a, "cs"])
    with pytest.raises(OperatorError, match="does not split into 2 equal groups"):
        StackedOperator([a, a]).A(torch.rand(3, 1, 8, 8))


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_solve_isolated_keeps_the_others_when_one_diverges(method):
    mod, cfg = CONFIGS[method]
    g = tiny_prior()
    problems = _problems("cs-gaussian", 3, False, ratio=0.3)
    orig = problems[1].A._A
    problems[1].A._A = lambda x: orig(x) * float("nan")
    with pytest.raises(SolverDiverged, match="every restart of problem 1 diverged"):
        mod.solve_batch(problems, g, cfg, seed=[4, 4, 4])
    out = solve_isolated(mod.solve_batch, problems, g, cfg, seed=[4, 4, 4])
    assert isinstance(out[1], SolverDiverged) and "every restart diverged" in str(out[1])
    for j in (0, 2):
        alone = mod.solve(problems[j], g, cfg, seed=4)
        torch.testing.assert_close(out[j].x_hat, alone.x_hat)
        assert "batch" not in out[j].extra
    assert isinstance(solve_isolated(mod.solve_batch, problems[1:2], g, cfg, seed=0)[0], SolverDiverged)
    fine = solve_isolated(mod.solve_batch, [problems[0], problems[2]], g, cfg, seed=[4, 4])
    one_by_one = "lbfgs-ls" in (getattr(cfg, "optimizer", ""), getattr(cfg, "csgm_optimizer", ""))  # different operators: see above
    assert [r.extra.get("batch") for r in fine] == [None, None] if one_by_one else [2, 2]
    torch.testing.assert_close(fine[1].x_hat, out[2].x_hat, atol=2e-4, rtol=1e-3)


def test_problem_seeds():
    assert problem_seeds(5, 3) == [5, 6, 7]
    assert problem_seeds([9, 9], 2) == [9, 9]
    for bad in ([1], [1, "2"], True):
        with pytest.raises(BadInput, match="needs an int seed or 2 int seeds"):
            problem_seeds(bad, 2)


def test_mgan_adam_pruning_on_different_operators_equals_single_solves():
    """Adam pruning drops rows; with one operator per problem (a StackedOperator) the kept rows
    stay one group per problem, so the batch still computes each single solve (this path used to
    call a method StackedOperator does not have)."""
    import dataclasses

    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config, mgan
    from tests.conftest import tiny_prior

    g = tiny_prior("dcgan")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pbs = [simulate(x, "cs-gaussian", {"ratio": 0.3}, s)[0] for s in (0, 1)]
    cfg = dataclasses.replace(make_config("mgan", "paper"), steps=6, restarts=2, prune_after=0.5)
    batch = mgan.solve_batch(pbs, g, cfg, seed=[5, 9])
    for pb, s, got in zip(pbs, (5, 9), batch):
        ref = mgan.solve(pb, g, cfg, seed=s)
        assert got.losses == pytest.approx(ref.losses, rel=1e-4)
