"""The fast schedule: line-search L-BFGS per restart, pruning, stopping rules, presets."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields, replace

import pytest
import torch

from recon_core.errors import BadInput, UnknownName
from recon_core.operators import build
from recon_core.solvers import FAST_METHODS, METHODS, Problem, csgm, effective_preset, make_config, surgery
from recon_core.solvers.common import FAST_SCHEDULE
from recon_core.solvers.linesearch import STOP_REASONS, minimise_ls
from tests.conftest import tiny_prior

torch.manual_seed(0)
_M = torch.randn(3, 8, 8, dtype=torch.float64) + 3 * torch.eye(8, dtype=torch.float64)
_B = torch.randn(3, 8, dtype=torch.float64)


def _rows_loss(rows):
    """A different strictly convex, non-quadratic function per row: loss_fn over a subset of rows
    needs to know which rows it gets, so the state carries the row index in a second entry."""

    def loss(state):
        x, idx = state["x"], state["i"][:, 0].round().long()
        r = torch.einsum("rij,rj->ri", _M[idx], x) - _B[idx]
        return r.pow(2).sum(1) + 0.05 * x.pow(4).sum(1)

    return loss


def _init(rows=(0, 1, 2)):
    return OrderedDict(x=torch.zeros(len(rows), 8, dtype=torch.float64),
                       i=torch.tensor(rows, dtype=torch.float64)[:, None])


def _minimum(row):
    x = torch.zeros(1, 8, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")
    f = lambda: (torch.einsum("ij,rj->ri", _M[row], x) - _B[row]).pow(2).sum() + 0.05 * x.pow(4).sum()  # noqa: E731

    def closure():
        opt.zero_grad()
        v = f()
        v.backward()
        return v

    opt.step(closure)
    return float(f().detach())


def test_each_restart_reaches_its_own_minimum():
    best, losses, hist, diverged, info = minimise_ls(_rows_loss(None), _init(), max_evals=400, prune_after=0, stop_tol=1e-12)
    assert diverged == []
    for r in range(3):
        assert float(losses[r]) == pytest.approx(_minimum(r), rel=1e-6, abs=1e-9)
    assert hist[-1]["loss"] == pytest.approx(float(losses.min()))
    assert info["evaluations"] <= 400 and set(info["stops"]) <= set(STOP_REASONS)


def test_restarts_are_independent_of_their_batch():
    """Solving rows together gives each row what it gets alone (own history, own step sizes,
    own stopping iteration), while the budget does not bind: bit for bit, although together some
    iterations backtrack on a subset of the rows (masked updates) where alone a row's iterations
    mostly accept their first trial (whole-tensor updates)."""
    sizes = []

    def loss(state, rows):
        sizes.append(len(rows))
        return _rows_loss(None)(state)

    best, together, _, _, _ = minimise_ls(loss, _init(), max_evals=1000, prune_after=0, stop_tol=1e-2, with_rows=True)
    assert any(b > a for a, b in zip(sizes, sizes[1:]))  # a backtrack on some rows, then all again
    for r in range(3):
        one, alone, _, _, _ = minimise_ls(_rows_loss(None), _init((r,)), max_evals=1000, prune_after=0, stop_tol=1e-2)
        assert float(alone[0]) == float(together[r]) and torch.equal(one["x"][0], best["x"][r])


def test_stop_reasons():
    loss = _rows_loss(None)
    *_, info = minimise_ls(loss, _init(), max_evals=5, prune_after=0, stop_tol=0)
    assert info["stops"] == ["budget"] * 3 and info["evaluations"] == 5
    *_, info = minimise_ls(loss, _init(), max_evals=200, prune_after=0, stop_tol=0.5)
    assert info["stops"] == ["converged"] * 3
    _, losses, _, _, info = minimise_ls(loss, _init(), max_evals=40, prune_after=0.2, stop_tol=0)
    assert sorted(info["stops"]).count("pruned") == 2
    kept = next(i for i, why in enumerate(info["stops"]) if why != "pruned")
    assert float(losses[kept]) == float(losses.min())
    _, losses, _, _, info = minimise_ls(loss, _init(), max_evals=200, prune_after=0, stop_tol=0, noise_floor=1e3)
    assert info["stops"] == ["noise"] * 3 and info["evaluations"] == 1


def test_diverged_restart_is_left_out():
    def loss(state):
        v = _rows_loss(None)(state)
        return torch.where(state["i"][:, 0] == 1, torch.full_like(v, float("nan")), v)

    _, losses, _, diverged, info = minimise_ls(loss, _init(), max_evals=30, prune_after=0)
    assert diverged == [1] and info["stops"][1] == "diverged"
    assert torch.isnan(losses[1]) and torch.isfinite(losses[[0, 2]]).all()


@pytest.mark.parametrize("kw, match", [
    ({"max_evals": 0}, "max_evals must be a positive integer"),
    ({"max_evals": 10, "prune_after": 1.5}, r"prune_after must be in \[0, 1\]"),
    ({"max_evals": 10, "stop_tol": -1.0}, "stop_tol must be a number >= 0"),
    ({"max_evals": 10, "history": 0}, "history must be a positive integer"),
])
def test_bad_settings(kw, match):
    with pytest.raises(BadInput, match=match):
        minimise_ls(_rows_loss(None), _init(), **kw)


def _problem(g, ratio=0.3, noise_std=0.0):
    x = g(g.sample_latent(1, torch.Generator().manual_seed(123))).detach()
    A = build("cs-gaussian", tuple(x.shape[1:]), seed=0, ratio=ratio)
    return Problem(A, A.A(x), noise_std), x


@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_fast_preset_solves_and_records(method):
    g = tiny_prior("dcgan")
    pb, x = _problem(g)
    cfg = replace(make_config(method, "paper", "dcgan", g.cut_points), **FAST_SCHEDULE)
    mod = {"csgm": csgm, "surgery": surgery}[method]
    fast = mod.solve(pb, g, cfg, seed=1)
    paper = mod.solve(pb, g, make_config(method, "paper", "dcgan", g.cut_points), seed=1)
    if method == "surgery":  # the preset also runs its first 60 % of evaluations in bfloat16 where native
        assert make_config(method, "fast", "dcgan", g.cut_points) == replace(cfg, bf16_share=0.6)
    assert fast.extra["evaluations"] <= cfg.steps and fast.extra["stop"] in STOP_REASONS
    assert paper.extra["stop"] == "steps" and paper.extra["evaluations"] > fast.extra["evaluations"]
    # the kept restart is the one with the lowest measurement loss
    assert fast.losses[fast.best_restart] == min(v for v in fast.losses if v == v)
    # in the prior's range, the fast schedule fits the measurements at least as well as the paper's
    assert min(fast.losses) <= 1.5 * min(paper.losses) + 1e-4


def test_fast_stops_at_noise_level():
    g = tiny_prior("dcgan")
    pb, _ = _problem(g, noise_std=0.05)
    r = surgery.solve(pb, g, make_config("surgery", "fast", "dcgan", g.cut_points), seed=0)
    assert r.extra["stop"] == "noise"
    assert r.losses[r.best_restart] <= pb.A.m * 0.05 ** 2


def test_z_reg_selects_on_measurement_loss():
    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    for opt in ("adam", "lbfgs-ls"):
        r = csgm.solve(pb, g, replace(csgm.CSGMConfig(), optimizer=opt, steps=20, z_reg=5.0), seed=0)
        with torch.no_grad():
            meas = float((pb.A.A(r.x_hat) - pb.y).pow(2).sum())
        assert r.losses[r.best_restart] == pytest.approx(meas, rel=1e-4)


def test_presets():
    from recon_core.solvers import fast_candidate

    assert set(FAST_METHODS) == {"surgery", "mgan", "iagan", "ilo", "csgm"}
    # csgm's fast preset: the paper's Adam schedule, bfloat16 first (where native)
    assert replace(make_config("csgm", "fast"), bf16_share=0.0) == csgm.CSGMConfig() and make_config("csgm", "fast").bf16_share == 0.9
    assert effective_preset("deep-decoder", "fast") == "paper" and effective_preset("surgery", "fast") == "fast"
    assert make_config("hybrid", "fast") == make_config("hybrid", "paper") and fast_candidate("lasso-dct") is None
    dd_cand = fast_candidate("deep-decoder")  # measured, not adopted: compressed sensing lost
    assert (dd_cand.steps, dd_cand.prune_after) == (1500, 0.1) and make_config("deep-decoder", "fast").steps == 5000
    # the hybrid's measured candidate (not adopted: it lost PSNR on compressed sensing)
    hyb = fast_candidate("hybrid")
    assert (hyb.n_pre, hyb.steps, hyb.prune_after, hyb.bf16_share) == (250, 2500, 0.1, 0.9)
    assert replace(hyb, n_pre=500, steps=5000, prune_after=0.0, bf16_share=0.0) == make_config("hybrid", "paper")
    # ILO's fast preset: the paper's Adam rounds, shorter, bfloat16 first (where native)
    ilo_fast, ilo_paper = make_config("ilo", "fast"), make_config("ilo", "paper")
    assert (ilo_fast.steps, ilo_fast.bf16_share, ilo_paper.steps, ilo_paper.bf16_share) == ((25, 100, 100), 0.9, (300, 200, 100), 0.0)
    assert replace(ilo_fast, steps=ilo_paper.steps, bf16_share=0.0) == ilo_paper
    # a fast preset sits on top of the architecture's paper settings (IAGAN's lrs) and changes the schedule
    cand, paper = make_config("iagan", "fast", "pggan"), make_config("iagan", "paper", "pggan")
    assert cand.lr_theta == paper.lr_theta == 1e-3 and paper.csgm_optimizer == "adam"
    assert (cand.csgm_optimizer, cand.csgm_steps, cand.prune_after, cand.adapt_restarts) == ("lbfgs-ls", 200, 0.3, 1)
    assert fast_candidate("iagan", "pggan") == cand and fast_candidate("ilo") == ilo_fast
    assert fast_candidate("mgan") == make_config("mgan", "fast") and fast_candidate("csgm") == make_config("csgm", "fast")
    assert make_config("surgery", "paper", "dcgan") == surgery.SurgeryConfig()
    fast = make_config("surgery", "fast", "dcgan")  # 3 restarts pruned after 30 % (one restart lost on the report set)
    assert (fast.optimizer, fast.steps, fast.restarts, fast.prune_after, fast.bf16_share) == ("lbfgs-ls", 150, 3, 0.3, 0.6)
    with pytest.raises(UnknownName, match="preset"):
        effective_preset("csgm", "quick")
    with pytest.raises(BadInput, match="unknown optimizer 'lbfgs-xx'"):
        g = tiny_prior("dcgan")
        csgm.solve(_problem(g)[0], g, replace(csgm.CSGMConfig(), optimizer="lbfgs-xx"))


def test_dense_operator_gradient_matches_plain_matmul():
    A = build("cs-gaussian", (3, 8, 8), seed=0, ratio=0.3)
    for rows in (1, 3):
        x = torch.rand(rows, 3, 8, 8, requires_grad=True)
        w = torch.randn(rows, A.m)
        (A.A(x) * w).sum().backward()
        g1 = x.grad.clone()
        x.grad = None
        ((x.reshape(rows, -1) @ A.matrix.T) * w).sum().backward()
        assert torch.allclose(g1, x.grad, atol=1e-5)
        assert torch.allclose(A.A(x), x.reshape(rows, -1) @ A.matrix.T, atol=1e-5)


def test_fast_preset_quality_on_the_real_face_prior(face64):
    """Guard: the default (fast) Surgery on the demo problem (astronaut face, cs-gaussian 0.1,
    cs-norm noise 0.1) stays near the paper schedule's quality. Measured (speed.json, seed 0):
    fast 22.55 dB, paper 22.64 dB; floor 21.5 dB leaves room for thread-count rounding."""
    from recon_core.generators.zoo import load_prior
    from recon_core.metrics import psnr
    from recon_core.operators import NoiseSpec, add_noise

    try:
        G = load_prior("dcgan-faces-64")
    except Exception as e:  # noqa: BLE001 - weights package absent
        pytest.skip(f"face prior unavailable: {e}")
    A = build("cs-gaussian", (3, 64, 64), seed=0, ratio=0.1)
    noise = NoiseSpec("cs-norm", 0.1, seed=1_000_003)
    pb = Problem(A, add_noise(A.A(face64), noise, A), noise.std(A))
    r = surgery.solve(pb, G, make_config("surgery", "fast", "dcgan"), seed=2_000_006)
    assert r.extra["evaluations"] <= 150
    assert float(psnr(face64, r.x_hat.clamp(0, 1))) > 21.5


def _with_rows_loss(state, rows):
    """_rows_loss where the row identities come from ``rows`` instead of the state."""
    x = state["x"]
    r = torch.einsum("rij,rj->ri", _M[rows], x) - _B[rows]
    return r.pow(2).sum(1) + 0.05 * x.pow(4).sum(1)


def test_with_rows_gives_each_row_its_restart_index():
    x0 = OrderedDict(x=torch.zeros(3, 8, dtype=torch.float64))
    _, losses, _, _, info = minimise_ls(_with_rows_loss, x0, max_evals=400, prune_after=0, stop_tol=1e-12, with_rows=True)
    for r in range(3):
        assert float(losses[r]) == pytest.approx(_minimum(r), rel=1e-6, abs=1e-9)


def test_pruning_keeps_the_best_row_of_each_group():
    x0 = OrderedDict(x=torch.zeros(4, 8, dtype=torch.float64))
    rows_loss = lambda st, rows: _with_rows_loss(st, rows % 3)  # noqa: E731
    _, losses, _, _, info = minimise_ls(rows_loss, x0, max_evals=40, prune_after=0.2, stop_tol=0, with_rows=True, groups=2)
    assert [s == "pruned" for s in info["stops"]].count(True) == 2
    for j in (0, 1):
        kept = [i for i in (2 * j, 2 * j + 1) if info["stops"][i] != "pruned"]
        assert len(kept) == 1
    with pytest.raises(BadInput, match="groups must divide the 4 rows"):
        minimise_ls(rows_loss, x0, max_evals=5, with_rows=True, groups=3)


def test_projected_line_search_stays_feasible_and_finds_the_constrained_minimum():
    """min ||x - c||^2 over the l2 ball of radius 1 with |c| = 3: the answer is c / |c|."""
    c = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, -3.0]], dtype=torch.float64)

    def project(st, rows):
        x = st["x"]
        return OrderedDict(x=x / x.norm(dim=1, keepdim=True).clamp_min(1.0))

    seen = []

    def loss(st, rows):
        seen.append(float(st["x"].detach().norm(dim=1).max()))
        return (st["x"] - c[rows]).pow(2).sum(1)

    best, losses, *_ = minimise_ls(loss, OrderedDict(x=torch.zeros(2, 3, dtype=torch.float64)), max_evals=60,
                                   prune_after=0, stop_tol=1e-12, with_rows=True, project=project)
    assert max(seen) <= 1 + 1e-12
    assert torch.allclose(best["x"], c / 3, atol=1e-6)
    assert losses.tolist() == pytest.approx([4.0, 4.0], abs=1e-6)


def test_adam_pruning_continues_the_kept_restart_exactly():
    """Pruned Adam: the kept restart's best state and loss equal the unpruned run's for that
    restart (Adam acts per coordinate and its moments are carried over), the others stop."""
    from recon_core.solvers.common import fast_options, optimise_state

    x0 = OrderedDict(x=torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    full, lf, _, _ = optimise_state(_with_rows_loss, x0, optimizer="adam", lr=0.05, steps=60, with_rows=True)
    info = {}
    pr, lp, _, _ = optimise_state(_with_rows_loss, x0, optimizer="adam", lr=0.05, steps=60, with_rows=True,
                                  fast=fast_options(0.5, 0.0), info=info)
    kept = [i for i, s in enumerate(info["stops"]) if s != "pruned"]
    assert len(kept) == 1 and info["stops"].count("pruned") == 2
    k = kept[0]
    assert float(lp[k]) == pytest.approx(float(lf[k]), rel=1e-12)
    assert torch.allclose(pr["x"][k], full["x"][k], rtol=0, atol=1e-12)
    assert info["evaluations"] == 61


@pytest.mark.parametrize("method", ["ilo", "mgan", "iagan", "deep-decoder", "hybrid"])
def test_fast_schedules_of_the_other_methods_solve_and_record(method):
    """Every method's fast options run (its preset, or the line search / pruning it offers) and
    record evaluations and why the kept restart stopped; the measurement loss of x_hat is the
    one reported for the kept restart where the method reports it so."""
    from recon_core.solvers import get_method

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    small = {"ilo": dict(steps=(6, 5, 5), radii=(3.0, 6.0)), "mgan": dict(steps=12, n_codes=2),
             "iagan": dict(csgm_steps=12, steps=4), "deep-decoder": dict(optimizer="lbfgs-ls", steps=15, prune_after=0.3),
             "hybrid": dict(optimizer="lbfgs-ls", n_pre=6, steps=12, prune_after=0.3)}[method]
    from recon_core.solvers import fast_candidate

    cfg = replace(fast_candidate(method, "dcgan", g.cut_points) or make_config(method, "paper", "dcgan"), **small)
    r = get_method(method)[1](pb, g, cfg, seed=3)
    assert r.x_hat.shape == (1,) + tuple(pb.A.img_shape) and float(r.x_hat.min()) >= 0 and float(r.x_hat.max()) <= 1
    assert r.extra["evaluations"] > 0
    assert r.extra["stop"] in STOP_REASONS + ("steps",)
    if method == "iagan":
        assert len(r.extra["adapted"]) == 1  # the other restarts are not adapted: NaN stage-2 loss
        assert sum(v != v for v in r.losses) == 2


def test_config_for_prior_gives_the_papers_settings():
    """Config.for_prior(meta): the papers' per-architecture settings (and a preset) for Python users."""
    from recon_core.generators.base import GeneratorMeta
    from recon_core.solvers import METHODS, iagan

    began = GeneratorMeta(architecture="began", resolution=64, channels=3)
    assert surgery.SurgeryConfig.for_prior(began) == make_config("surgery", "paper", "began")
    assert (surgery.SurgeryConfig.for_prior(began).lr, surgery.SurgeryConfig.for_prior(began).cut) == (1.0, 2)
    assert surgery.SurgeryConfig.for_prior(began, "fast").optimizer == "lbfgs-ls"
    pggan = GeneratorMeta(architecture="pggan", resolution=64, channels=3)
    assert iagan.IAGANConfig.for_prior(pggan).lr_theta == 1e-3
    for name, (cls, _) in METHODS.items():
        assert cls.for_prior(began) == make_config(name, "paper", "began")


FAST_FIELD_METHODS = [m for m, (c, _) in METHODS.items() if {"prune_after", "stop_tol"} <= {f.name for f in fields(c)}]


def test_every_method_with_fast_settings_is_swept():
    assert set(FAST_FIELD_METHODS) >= {"csgm", "surgery", "ilo", "mgan", "iagan", "deep-decoder", "hybrid"}


@pytest.mark.parametrize("method", FAST_FIELD_METHODS)
@pytest.mark.parametrize("field, value, match", [
    ("prune_after", 1.5, r"prune_after must be in \[0, 1\], got 1.5"),
    ("prune_after", float("nan"), r"prune_after must be in \[0, 1\], got nan"),
    ("prune_after", "0.3", r"prune_after must be in \[0, 1\]"),
    ("stop_tol", -1.0, "stop_tol must be a number >= 0, got -1.0"),
    ("stop_tol", float("inf"), "stop_tol must be a number >= 0, got inf"),
])
def test_fast_settings_are_checked_where_a_config_is_made(method, field, value, match):
    """Every optimizer reads prune_after (Adam prunes too): a bad value is refused when the config
    is made, not accepted silently or after a long first stage."""
    cfg = make_config(method, "paper", "dcgan")
    with pytest.raises(BadInput, match=match):
        replace(cfg, **{field: value})


def test_screened_init_keeps_the_lowest_loss_draws_in_order():
    """The restarts start from the draws of lowest measurement loss (checked against every draw's
    loss computed here), whatever the chunk size; a batch of two problems with different
    operators screens each as if alone."""
    from recon_core.solvers.common import grouped_init, measurement_loss, screened_init

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    pool = grouped_init(g, 1, 12, [5], "cn")
    with torch.no_grad():
        loss = measurement_loss(pb.A, pb.y, g.tail(pool, 1))
    order = loss.argsort()[:3]
    for chunk in (5, 64):
        got = screened_init(g, 1, 3, [5], "cn", 12, pb.A, pb.y, chunk=chunk)
        for k in pool:
            torch.testing.assert_close(got[k], pool[k][order], rtol=0, atol=0)
    A2 = build("cs-gaussian", pb.A.img_shape, seed=1, ratio=0.3)  # same shapes, another matrix
    pb2 = Problem(A2, A2.A(g(g.sample_latent(1, torch.Generator().manual_seed(9))).detach()), 0.0)
    from recon_core.solvers.common import stack_problems

    A, y, _ = stack_problems([pb, pb2])
    both = screened_init(g, 1, 3, [5, 6], "cn", 12, A, y, chunk=5)
    alone = [screened_init(g, 1, 3, [s], "cn", 12, p.A, p.y) for s, p in ((5, pb), (6, pb2))]
    for k in pool:
        torch.testing.assert_close(both[k], torch.cat([a[k] for a in alone]))


@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_screen_starts_from_the_best_draws_and_is_recorded(method):
    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    mod = {"csgm": csgm, "surgery": surgery}[method]
    base = replace(make_config(method, "paper", "dcgan", g.cut_points), **FAST_SCHEDULE)
    # a budget of one evaluation: the losses are those of the starting points
    cfg = replace(base, steps=1, restarts=2, prune_after=0.0)
    plain = mod.solve(pb, g, cfg, seed=3)
    screened = mod.solve(pb, g, replace(cfg, screen=40), seed=3)
    assert screened.extra["screened"] == 40 and "screened" not in plain.extra
    assert sorted(screened.losses) == screened.losses  # the draws in ascending loss order
    assert max(screened.losses) <= min(plain.losses) * 1.0001  # 40 draws include better ones here
    full = mod.solve(pb, g, replace(base, screen=16), seed=3)
    assert full.extra["evaluations"] <= base.steps and full.extra["screened"] == 16


@pytest.mark.parametrize("method", ["csgm", "surgery"])
@pytest.mark.parametrize("value, match", [
    (2, r"screen must be 0 \(off\) or an integer from restarts \(3\) to 4096, got 2"),
    (5000, r"screen must be 0 \(off\) or an integer from restarts \(3\) to 4096, got 5000"),
    (8.5, r"screen must be 0 \(off\) or an integer .* got 8.5"),
    (True, r"screen must be 0 \(off\) or an integer .* got True"),
])
def test_bad_screen_is_refused_where_the_config_is_made(method, value, match):
    with pytest.raises(BadInput, match=match):
        replace(make_config(method, "paper", "dcgan"), screen=value)
