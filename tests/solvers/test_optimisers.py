"""recon's Adam and SGD: torch.optim's arithmetic bit for bit, without torch.optim's import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recon_core.solvers.common import SGD, Adam


def _run(make, dtype, steps=40):
    """Minimise a non-quadratic loss over two parameter groups with a decaying lr; every 7th step
    one parameter gets no gradient (its update is skipped, as in torch)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, generator=g, dtype=dtype), torch.randn(7, generator=g, dtype=dtype)
    ps = [a.requires_grad_(True), b.requires_grad_(True)]
    opt = make([{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.03}])
    for k in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = ps[0].pow(2).sum() if k % 7 == 0 else (ps[0].sin() * 3).pow(2).sum() + (ps[1] - 1).pow(4).sum()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] *= 0.97
        opt.step()
    return ps, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ours, theirs", [(Adam, torch.optim.Adam), (SGD, torch.optim.SGD)])
def test_iterates_equal_torch_optim_bit_for_bit(ours, theirs, dtype):
    mine, opt = _run(ours, dtype)
    ref, _ = _run(theirs, dtype)
    for x, y in zip(mine, ref):
        assert torch.equal(x, y)
    assert not torch.equal(mine[0], _run(ours, dtype, steps=39)[0][0])  # the steps did move it
    if ours is Adam:
        assert opt.state[mine[0]]["step"] == 40.0 and opt.state[mine[1]]["step"] == 40.0 - 6


def test_zero_grad_without_set_to_none_zeroes():
    p = torch.ones(3, requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.sum().backward()
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(3))
    assert opt.param_groups[0]["lr"] == 0.1 and opt.defaults == {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8}


def test_adam_methods_do_not_import_torch_dynamo():
    """torch.optim's optimisers import torch._dynamo when constructed (over a second): the Adam
    schedules (csgm, ilo, iagan's stage 2, the deep decoder) must not pay it."""
    code = (
        "import sys, torch\n"
        "from tests.conftest import tiny_prior\n"
        "from recon_core.operators import build\n"
        "from recon_core.solvers import Problem, get_method, make_config\n"
        "g = tiny_prior('dcgan')\n"
        "x = g(g.sample_latent(1, torch.Generator().manual_seed(0))).detach()\n"
        "A = build('cs-gaussian', tuple(x.shape[1:]), seed=0, ratio=0.3)\n"
        "pb = Problem(A, A.A(x), 0.0)\n"
        "for m, kw in [('csgm', {'steps': 3}), ('ilo', {'steps': (2, 2, 2)}), ('iagan', {'csgm_steps': 2, 'steps': 2}),\n"
        "              ('deep-decoder', {'steps': 3}), ('hybrid', {'steps': 2, 'n_pre': 2})]:\n"
        "    from dataclasses import replace\n"
        "    cfg = replace(make_config(m, 'paper', 'dcgan', g.cut_points), **kw)\n"
        "    get_method(m)[1](pb, g, cfg, seed=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def _reference_optimise(loss_fn, init, steps, lr, prune_step=0, project=None):
    """optimise_state's Adam path as it ran before its state became one flat tensor: one Adam
    parameter per state tensor, the best iterate copied tensor by tensor, rows pruned to the
    lowest current loss at ``prune_step`` (one group)."""
    from recon_core.solvers.common import Adam as RAdam

    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = RAdam(list(params.values()), lr=lr)
    live = torch.arange(next(iter(init.values())).shape[0])
    best_loss = torch.full((len(live),), float("inf"), dtype=torch.float64)
    best = {k: v.clone() for k, v in init.items()}

    def record(st, out):
        better = out.detach().double() < best_loss[live]
        best_loss[live[better]] = out.detach().double()[better]
        for k, v in st.items():
            best[k][live[better]] = v.detach()[better]

    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        out = loss_fn(params, live)
        record(params, out)
        out.sum().backward()
        opt.step()
        if project is not None:
            with torch.no_grad():
                for k, v in project(params, live).items():
                    params[k].copy_(v)
        if step == steps:
            with torch.no_grad():
                record(params, loss_fn(params, live))
        elif step == prune_step:
            keep = out.detach().argmin().reshape(1)
            new = {k: v.detach()[keep].clone().requires_grad_(True) for k, v in params.items()}
            opt2 = RAdam(list(new.values()), lr=lr)
            for old_p, new_p in zip(params.values(), new.values()):
                opt2.state[new_p] = {n: (t[keep].clone() if torch.is_tensor(t) and t.dim() > 0 else t) for n, t in opt.state[old_p].items()}
            params, opt, live = new, opt2, live[keep]
    return best, best_loss


@pytest.mark.parametrize("prune, projected", [(False, False), (True, False), (False, True), (True, True)])
def test_flat_adam_state_equals_one_parameter_per_tensor(prune, projected):
    """optimise_state runs Adam on one flat (rows, D) tensor whose views are the state's tensors:
    per coordinate the same arithmetic as one Adam parameter per tensor, so the best iterates
    and losses are bit for bit those of the per-tensor loop (with pruning and a projection)."""
    from recon_core.solvers.common import optimise_state

    g = torch.Generator().manual_seed(0)
    init = {"w": torch.randn(3, 4, 5, generator=g), "b": torch.randn(3, 5, generator=g), "s": torch.randn(3, 2, generator=g)}
    target = torch.randn(3, 5, generator=g)

    def loss(st, rows):
        h = torch.tanh(torch.einsum("rij,rj->ri", st["w"], st["b"])) * st["s"][:, :1] + st["s"][:, 1:]
        return (h - target[rows, :4]).pow(2).sum(1) + 0.1 * st["b"].pow(4).sum(1)

    project = (lambda st, rows: {"b": st["b"].clamp(-0.8, 0.8)}) if projected else None
    steps = 25
    best, losses, _, _ = optimise_state(loss, init, optimizer="adam", lr=0.05, steps=steps, with_rows=True, project=project,
                                        fast={"prune_after": 0.4} if prune else None)
    ref, ref_losses = _reference_optimise(loss, init, steps, 0.05, prune_step=10 if prune else 0, project=project)
    assert torch.equal(losses, ref_losses)
    for k in init:
        assert torch.equal(best[k], ref[k]) and best[k].is_contiguous()
    assert not torch.equal(best["w"], init["w"])  # it moved
