"""Hybrid GAN + Deep Decoder (Daniels, Hand, Heckel): x = alpha G(z) + beta DD(theta).

Algorithm 1 of the paper: ``n_pre`` Adam steps inverting G alone (over z, the generator frozen)
and the Deep Decoder alone (over theta), then alpha = beta = 0.5 and ``steps`` joint Adam steps
over (z, theta, alpha, beta). Defaults are the paper's: n_pre 500, n 5000, Adam lr 1e-2 for every
variable (its appendix: "all experiments use a learning rate 1e-2"). The paper's G(z) is the
pretrained generator, here the adapter output in [0, 1]; its weights stay fixed.

Deep Decoder: the paper uses "a 4 layer deep decoder with k channels, k chosen so that |theta| <
m; thus ... even our entire model is underparameterized". We read "4 layers" as the reference
code's ``num_channels_up=[k]*4`` (depth 4 in ``priors.deep_decoder``'s count) and choose the
largest k with |theta| + |z| + 2 < m, so the whole hybrid model is under-parameterised.

Restarts run as one batch (z, the decoder weights, alpha and beta all carry a leading restart
axis; see ``priors.deep_decoder``). Selection uses the measurement loss of the joint stage only.
Both presets run Algorithm 1's schedule; ``FAST_CANDIDATE`` (its stages at half length, pruned to
the best restart early in the joint stage, bfloat16 first where native) is measured by
benchmarks/speed.py but is not a default: it lost PSNR on compressed sensing on the report set.
The loss is computed on alpha G + beta DD as in the paper (no clamping inside the objective, so
gradients never vanish at the range bounds); the returned x_hat is clamped to [0, 1], and
``extra["final_loss"]`` is the measurement loss of that clamped estimate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch

from ..errors import BadInput
from ..events import Event, EventSink, null_sink
from ..priors import deep_decoder as dd
from .common import (
    MethodConfig, opt, require_prior, Problem, Result, bf16_tail, check_positive, check_schedule, divergence_advice, fast_options, frozen, group_diverged,
    group_history, kept_rows, measurement_loss, must_split, native_bf16, noise_floors, one_by_one, optimise_state, problem_seeds, rows_of, seeded_rng,
    stack_problems, timer,
)

#: Adam is the paper's; lbfgs-ls the fast schedule
OPTIMIZERS = ("adam", "lbfgs-ls")

#: the paper re-initialises both mixing weights to 0.5 after the separate pre-inversions
MIX_INIT = 0.5

#: a fast schedule measured but not adopted (``solvers.fast_candidate``): Algorithm 1's Adam
#: stages at half length (250 + 250 separate steps, 2500 joint), only the best restart going on
#: after 10 % of the joint stage, and the first 90 % of every stage evaluated with the bfloat16
#: copy of the generator where the device computes bfloat16 natively. Tuned on 4 images outside
#: the speed report set (benchmarks/tune_fast.py images 0-3, seed 0; tune_fast.jsonl
#: ``adam-250-2500-p10-b90@s14``: +0.11 / +0.02 / +0.07 dB); on the report set (speed_hybrid.md)
#: it lost 0.24 dB on compressed sensing at 0.33-0.35 x the paper's time, so the fast preset
#: keeps the paper schedule
FAST_CANDIDATE = {"n_pre": 250, "steps": 2500, "prune_after": 0.1, "bf16_share": 0.9}


@dataclass
class HybridConfig(MethodConfig):
    """Hybrid settings. n_pre: separate pre-inversion steps for G and DD; steps: joint steps;
    lr: Adam lr for every variable; init: z init (prior|cn|zero|normal|uniform); dd_width: decoder
    channels (None = largest keeping the whole model under-parameterised); dd_depth: decoder
    upsampling layers; restarts: batched. optimizer adam|lbfgs-ls for all three stages: with
    lbfgs-ls (the fast schedule) n_pre and steps are budgets of batched evaluations, lr is unused,
    and prune_after / stop_tol apply (pruning in the joint stage only).

    Whose defaults: Daniels, Hand, Heckel, Algorithm 1 and its appendix (n_pre 500, n 5000, Adam lr
    1e-2, a 4-layer decoder under-parameterised); 3 restarts is recon's choice (as for every method
    in the Generator Surgery paper's comparison), the paper states none."""

    #: both step counts belong to the optimiser (lbfgs-ls counts evaluations): see MethodConfig
    SCHEDULES = (("optimizer", "steps"), ("optimizer", "n_pre"))

    n_pre: int = opt(500, 'Separate pre-inversion steps of G and of the Deep Decoder.')
    steps: int = 5000
    lr: float = 0.01
    restarts: int = 3
    init: str = "prior"
    dd_width: Optional[int] = opt(None, 'Deep Decoder channels (None: the largest keeping the model under-parameterised).')
    dd_depth: int = opt(4, 'Deep Decoder upsampling layers.')
    optimizer: str = "adam"
    prune_after: float = 0.0
    stop_tol: float = 1e-3
    bf16_share: float = opt(0.0, "Share of every stage's steps evaluated with a bfloat16 copy of the generator (and cs-gaussian's bfloat16 matrix) where the device computes bfloat16 natively (0 = off; iterates and restarts are chosen on float32 losses).")


def _mix(prior, state, net_input, tail=None) -> torch.Tensor:
    """alpha G(z) + beta DD(theta) for a batched joint state -> (R, C, H, W) (unclamped);
    ``tail(z, 0)`` replaces ``prior.tail`` when given (the bfloat16 copy's)."""
    z = OrderedDict((k[2:], v) for k, v in state.items() if k.startswith("g."))
    theta = OrderedDict((k[3:], v) for k, v in state.items() if k.startswith("dd."))
    a = state["alpha"].reshape(-1, 1, 1, 1)
    b = state["beta"].reshape(-1, 1, 1, 1)
    return a * (tail or prior.tail)(z, 0) + b * dd.decode(theta, net_input)


def solve(problem: Problem, prior, config: HybridConfig = HybridConfig(), on_event: EventSink = null_sink,
          seed: int = 0) -> Result:
    """Invert alpha G(z) + beta DD(theta) on ``problem``; returns the restart with the lowest
    joint-stage measurement loss. x_hat (1, C, H, W) in [0, 1]; extra has alpha, beta (floats)."""
    return solve_batch([problem], prior, config, on_event, seed)[0]


def solve_batch(problems: Sequence[Problem], prior, config: HybridConfig = HybridConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """The hybrid on B problems at once (B x restarts rows in each stage). Problem j gets what
    ``solve(problems[j], seed=seeds[j])`` computes (Adam and the selections act row by row), up
    to floating-point reassociation; seeds as in common.problem_seeds. Returns one Result per
    problem (wall_time: the batch's; extra["batch"] = B when B > 1).

    Longer than 80 lines: its three stages (separate pre-inversions, joint fit, selection) share
    the per-row bookkeeping of every restart of every problem."""
    clock = timer()
    require_prior(prior, "hybrid")
    check_schedule(config, OPTIMIZERS)
    check_positive("n_pre", config.n_pre, integer=True)
    A, y, B = stack_problems(problems)
    if tuple(A.img_shape) != (prior.meta.channels, prior.meta.resolution, prior.meta.resolution):
        raise BadInput(f"the operator takes {tuple(A.img_shape)} images but the prior makes "
                       f"{(prior.meta.channels, prior.meta.resolution, prior.meta.resolution)}")
    if must_split(config.optimizer == "lbfgs-ls", A, problems):
        return one_by_one(solve_batch, problems, seed, prior=prior, config=config, on_event=on_event)
    R = int(config.restarts)
    n_z = prior.latent_dim(0)
    if config.dd_width is None:
        budget = A.m - n_z - 2  # parameters left for the decoder after z, alpha and beta
        if budget < 1:
            raise BadInput(f"m = {A.m} measurements leave no parameters for the deep decoder after the "
                           f"{n_z}-d latent; give dd_width explicitly or use more measurements")
        width = dd.choose_width(A.img_shape, budget, config.dd_depth)
    else:
        width = config.dd_width
    zs, thetas, inputs = [], [], []
    for s in problem_seeds(seed, B):  # problem j draws as a single solve with its seed would
        rng = seeded_rng(s)
        zs.append(prior.init_state(0, R, init=config.init, rng=rng))
        place = {"device": y.device, "dtype": next(iter(zs[-1].values())).dtype}
        thetas.append(dd.init_params(A.img_shape, width, config.dd_depth, R, rng, **place))
        inputs.append(dd.init_input(A.img_shape, width, config.dd_depth, R, rng, **place))
    z0 = OrderedDict((k, torch.cat([z[k] for z in zs])) for k in zs[0])
    theta0 = OrderedDict((k, torch.cat([t[k] for t in thetas])) for k in thetas[0])
    net_input = torch.cat(inputs)
    y_rows = rows_of(y, R)
    floors = noise_floors(problems, R)
    histories: List[List[dict]] = [[] for _ in range(B)]

    def loss(x, rows, coarse=False):
        return measurement_loss(A, y_rows if len(rows) == len(y_rows) else y_rows[rows], x, coarse=coarse)

    # low precision first (bf16_share): the first share of every stage evaluates G with a
    # bfloat16 copy (and cs-gaussian's residual with its bfloat16 matrix), then optimise_state
    # re-scores the best iterates in float32 and goes on in float32
    low = bf16_tail(prior, cut=0) if config.bf16_share and native_bf16(y.device) else None
    bf16_evals = [0] * B

    def stage(fn, init, phase, steps, prune_after, info, coarse_fn=None):
        """One stage of Algorithm 1 with per-problem histories tagged with the stage."""
        def report(step, best, div):
            group_history(histories, best, div, B, {"step": step, "phase": phase})
            ok = best[~div]
            on_event(Event(phase=f"hybrid:{phase}", step=step, total=steps, loss=float(ok.min()) if ok.numel() else float("nan"),
                           extra={"diverged": int(div.sum())}))

        fast = fast_options(prune_after, config.stop_tol, floors, B)
        if low is not None and int(config.bf16_share * steps):
            fast.update(coarse_fn=coarse_fn, coarse_evals=int(config.bf16_share * steps))
        out = optimise_state(fn, init, optimizer=config.optimizer, lr=config.lr, steps=steps, phase=f"hybrid:{phase}",
                             on_event=on_event, with_rows=True, info=info, report=None if config.optimizer == "lbfgs-ls" else report,
                             fast=fast)
        for j, n in enumerate(info.get("coarse_evaluations", [0] * B)):
            bf16_evals[j] += n
        if config.optimizer == "lbfgs-ls":
            for j, h in enumerate(info["group_history"]):
                histories[j] += [dict(e, phase=phase) for e in h]
        return out

    with frozen(prior):
        # Algorithm 1, lines 1-6: the two pre-inversions are independent problems, run one after
        # the other (the paper interleaves their Adam steps, which gives the same iterates); every
        # restart goes on from both, so they are never pruned
        info_g, info_dd, info = {}, {}, {}
        z_pre, loss_g, _, _ = stage(lambda s, rows: loss(prior.tail(s, 0), rows), z0, "pre-gan", int(config.n_pre), 0.0, info_g,
                                    lambda s, rows: loss(low(s, 0), rows, coarse=True))
        th_pre, loss_dd, _, _ = stage(lambda p, rows: loss(dd.decode(p, net_input[rows]), rows), theta0, "pre-dd",
                                      int(config.n_pre), 0.0, info_dd, lambda p, rows: loss(dd.decode(p, net_input[rows]), rows, coarse=True))
        joint = OrderedDict()
        joint.update((f"g.{k}", v) for k, v in z_pre.items())
        joint.update((f"dd.{k}", v) for k, v in th_pre.items())
        joint["alpha"] = torch.full((B * R, 1), MIX_INIT, **place)
        joint["beta"] = torch.full((B * R, 1), MIX_INIT, **place)
        best, losses, _, diverged = stage(lambda s, rows: loss(_mix(prior, s, net_input[rows]), rows), joint, "joint",
                                          int(config.steps), config.prune_after, info,
                                          lambda s, rows: loss(_mix(prior, s, net_input[rows], low), rows, coarse=True))
        evals = [sum(d.get("group_evaluations", [d["evaluations"]] * B)[j] for d in (info_g, info_dd, info)) for j in range(B)]
        results = []
        for j, i in enumerate(kept_rows(losses, diverged, B, divergence_advice(config.optimizer, config.lr))):
            rows = slice(j * R, (j + 1) * R)
            state = OrderedDict((k, v[i : i + 1].detach().clone()) for k, v in best.items())
            with torch.no_grad():
                x_hat = _mix(prior, state, net_input[i : i + 1]).clamp(0, 1)
                final = float(measurement_loss(problems[j].A, problems[j].y, x_hat)[0])
            state["dd.input"] = net_input[i : i + 1].clone()
            results.append(Result(
                x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses[rows]], best_restart=i - j * R,
                history=histories[j], diverged=group_diverged(diverged, j, R),
                extra={
                    "alpha": float(state["alpha"].reshape(-1)[0]), "beta": float(state["beta"].reshape(-1)[0]),
                    "evaluations": evals[j], "stop": info["stops"][i], "pre_gan_loss": float(loss_g[i]),
                    "pre_dd_loss": float(loss_dd[i]), "final_loss": final, "dd_width": width, "dd_depth": config.dd_depth,
                    "num_params": dd.num_params(width, config.dd_depth, A.img_shape[0]) + n_z + 2,
                    **({"bf16_evaluations": bf16_evals[j]} if config.bf16_share else {}),
                    **({"batch": B} if B > 1 else {}),
                },
            ))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results
