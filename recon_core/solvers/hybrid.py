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
The loss is computed on alpha G + beta DD as in the paper (no clamping inside the objective, so
gradients never vanish at the range bounds); the returned x_hat is clamped to [0, 1], and
``extra["final_loss"]`` is the measurement loss of that clamped estimate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import BadInput, UnknownName
from ..events import EventSink, null_sink
from ..priors import deep_decoder as dd
from .common import (
    Problem, Result, check_positive, fast_options, frozen, measurement_loss, optimise_state, pick_best, seeded_rng,
    timer,
)

#: Adam is the paper's; lbfgs-ls the fast schedule
OPTIMIZERS = ("adam", "lbfgs-ls")

#: the paper re-initialises both mixing weights to 0.5 after the separate pre-inversions
MIX_INIT = 0.5


@dataclass
class HybridConfig:
    """Hybrid settings. n_pre: separate pre-inversion steps for G and DD; steps: joint steps;
    lr: Adam lr for every variable; init: z init (prior|cn|zero|normal|uniform); dd_width: decoder
    channels (None = largest keeping the whole model under-parameterised); dd_depth: decoder
    upsampling layers; restarts: batched. optimizer adam|lbfgs-ls for all three stages: with
    lbfgs-ls (the fast schedule) n_pre and steps are budgets of batched evaluations, lr is unused,
    and prune_after / stop_tol apply (pruning in the joint stage only)."""

    n_pre: int = 500
    steps: int = 5000
    lr: float = 0.01
    restarts: int = 3
    init: str = "prior"
    dd_width: Optional[int] = None
    dd_depth: int = 4
    optimizer: str = "adam"
    prune_after: float = 0.0
    stop_tol: float = 1e-3


def _mix(prior, state, net_input) -> torch.Tensor:
    """alpha G(z) + beta DD(theta) for a batched joint state -> (R, C, H, W) (unclamped)."""
    z = OrderedDict((k[2:], v) for k, v in state.items() if k.startswith("g."))
    theta = OrderedDict((k[3:], v) for k, v in state.items() if k.startswith("dd."))
    a = state["alpha"].reshape(-1, 1, 1, 1)
    b = state["beta"].reshape(-1, 1, 1, 1)
    return a * prior.tail(z, 0) + b * dd.decode(theta, net_input)


def solve(problem: Problem, prior, config: HybridConfig = HybridConfig(), on_event: EventSink = null_sink,
          seed: int = 0) -> Result:
    """Invert alpha G(z) + beta DD(theta) on ``problem``; returns the restart with the lowest
    joint-stage measurement loss. x_hat (1, C, H, W) in [0, 1]; extra has alpha, beta (floats)."""
    clock = timer()
    if prior is None:
        raise BadInput("the hybrid method needs a generator prior")
    check_positive("restarts", config.restarts, integer=True)
    check_positive("n_pre", config.n_pre, integer=True)
    check_positive("steps", config.steps, integer=True)
    check_positive("lr", config.lr)
    if config.optimizer not in OPTIMIZERS:
        raise UnknownName("hybrid optimizer", config.optimizer, OPTIMIZERS)
    A, y = problem.A, problem.y
    if tuple(A.img_shape) != (prior.meta.channels, prior.meta.resolution, prior.meta.resolution):
        raise BadInput(f"the operator takes {tuple(A.img_shape)} images but the prior makes "
                       f"{(prior.meta.channels, prior.meta.resolution, prior.meta.resolution)}")
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
    rng = seeded_rng(seed)
    z0 = prior.init_state(0, R, init=config.init, rng=rng)
    place = {"device": y.device, "dtype": next(iter(z0.values())).dtype}
    theta0 = dd.init_params(A.img_shape, width, config.dd_depth, R, rng, **place)
    net_input = dd.init_input(A.img_shape, width, config.dd_depth, R, rng, **place)

    floor = A.m * problem.noise_std ** 2
    # every restart goes on from both pre-inversions, so they are never pruned
    pre = {"optimizer": config.optimizer, "lr": config.lr, "steps": int(config.n_pre), "on_event": on_event,
           "with_rows": True, "fast": fast_options(0.0, config.stop_tol, floor)}
    with frozen(prior):
        # Algorithm 1, lines 1-6: the two pre-inversions are independent problems, run one after
        # the other (the paper interleaves their Adam steps, which gives the same iterates)
        info_g, info_dd, info = {}, {}, {}
        z_pre, loss_g, hist_g, _ = optimise_state(
            lambda s, rows: measurement_loss(A, y, prior.tail(s, 0)), z0, phase="hybrid:pre-gan", info=info_g, **pre)
        th_pre, loss_dd, hist_dd, _ = optimise_state(
            lambda p, rows: measurement_loss(A, y, dd.decode(p, net_input[rows])), theta0, phase="hybrid:pre-dd",
            info=info_dd, **pre)
        joint = OrderedDict()
        joint.update((f"g.{k}", v) for k, v in z_pre.items())
        joint.update((f"dd.{k}", v) for k, v in th_pre.items())
        joint["alpha"] = torch.full((R, 1), MIX_INIT, **place)
        joint["beta"] = torch.full((R, 1), MIX_INIT, **place)
        best, losses, hist_j, diverged = optimise_state(
            lambda s, rows: measurement_loss(A, y, _mix(prior, s, net_input[rows])), joint, optimizer=config.optimizer,
            lr=config.lr, steps=int(config.steps), phase="hybrid:joint", on_event=on_event, with_rows=True,
            info=info, fast=fast_options(config.prune_after, config.stop_tol, floor),
        )
        i, state = pick_best(best, losses, diverged, config.lr)
        with torch.no_grad():
            x_hat = _mix(prior, state, net_input[i : i + 1]).clamp(0, 1)
            final = float(measurement_loss(A, y, x_hat)[0])
    history = ([dict(h, phase="pre-gan") for h in hist_g] + [dict(h, phase="pre-dd") for h in hist_dd]
               + [dict(h, phase="joint") for h in hist_j])
    state["dd.input"] = net_input[i : i + 1].clone()
    return Result(
        x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses], best_restart=i, history=history,
        wall_time=clock(), diverged=diverged,
        extra={
            "alpha": float(state["alpha"].reshape(-1)[0]), "beta": float(state["beta"].reshape(-1)[0]),
            "evaluations": info_g["evaluations"] + info_dd["evaluations"] + info["evaluations"], "stop": info["stops"][i], "pre_gan_loss": float(loss_g[i]), "pre_dd_loss": float(loss_dd[i]), "final_loss": final,
            "dd_width": width, "dd_depth": config.dd_depth,
            "num_params": dd.num_params(width, config.dd_depth, A.img_shape[0]) + n_z + 2,
        },
    )
