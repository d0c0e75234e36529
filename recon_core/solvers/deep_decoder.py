"""Deep Decoder (Heckel & Hand 2019): fit the weights of an untrained decoder to the measurements,
min_theta ||y - A DD(theta)||^2, with Adam (lr 0.01, 5000 steps: the paper's and the reference
code's settings; the Generator Surgery paper's comparison uses the same, depth 5, k = 44 at 64 px).

The width k defaults to the largest one with fewer parameters than measurements (the paper keeps
the decoder under-parameterised, |theta| < m); a given width is used as is, and the result says
whether it is under-parameterised. Restarts run as one batch: every weight has a leading restart
axis and the 1x1 convolutions are per-restart matrix products (see ``priors.deep_decoder``), so
Adam (per coordinate) treats restarts independently, and the minimum-loss iterate of each restart
is kept by ``optimise_state``.

The method learns nothing from data: ``solve`` takes the ``prior`` argument of the common solver
signature and ignores it (the CLI may pass None).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch

from ..events import EventSink, null_sink
from ..priors import deep_decoder as dd
from ..errors import UnknownName
from .common import (Problem, Result, check_positive, fast_options, measurement_loss, optimise_state, pick_best,
                     seeded_rng, timer)

#: Adam is the paper's; lbfgs-ls the fast schedule
OPTIMIZERS = ("adam", "lbfgs-ls")


#: capability: this method uses no generator (the CLI loads none)
NEEDS_PRIOR = False

@dataclass
class DeepDecoderConfig:
    """Deep Decoder settings. width: channels k (None = largest with parameters < m); depth:
    number of upsampling layers (5 at 64 px as in the paper); lr, steps: Adam; restarts: batched.
    optimizer adam|lbfgs-ls: with lbfgs-ls (the fast schedule, common.optimise_state) ``steps``
    is a budget of batched evaluations, lr is unused, and prune_after / stop_tol apply."""

    width: Optional[int] = None
    depth: int = 5
    lr: float = 0.01
    steps: int = 5000
    restarts: int = 3
    optimizer: str = "adam"
    prune_after: float = 0.0
    stop_tol: float = 1e-3


def resolve_width(img_shape, m: int, width: Optional[int], depth: int) -> int:
    """``width`` if given, else the largest width whose decoder has fewer than m parameters."""
    return dd.choose_width(img_shape, m, depth) if width is None else width


def solve(problem: Problem, prior=None, config: DeepDecoderConfig = DeepDecoderConfig(),
          on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Fit ``config.restarts`` decoders to ``problem.y`` (``prior`` is ignored); returns the
    restart with the lowest measurement loss. x_hat: (1, C, H, W) in (0, 1); state: the best
    decoder's weights (batch 1) plus its fixed ``input``."""
    clock = timer()
    check_positive("restarts", config.restarts, integer=True)
    check_positive("steps", config.steps, integer=True)
    check_positive("lr", config.lr)
    A, y = problem.A, problem.y
    width = resolve_width(A.img_shape, A.m, config.width, config.depth)
    R = int(config.restarts)
    rng = seeded_rng(seed)
    place = {"device": y.device, "dtype": y.dtype if y.is_floating_point() else torch.float32}
    params0 = dd.init_params(A.img_shape, width, config.depth, R, rng, **place)
    net_input = dd.init_input(A.img_shape, width, config.depth, R, rng, **place)

    if config.optimizer not in OPTIMIZERS:
        raise UnknownName("deep decoder optimizer", config.optimizer, OPTIMIZERS)
    info: dict = {}
    best, losses, history, diverged = optimise_state(
        lambda p, rows: measurement_loss(A, y, dd.decode(p, net_input[rows])), params0, optimizer=config.optimizer,
        lr=config.lr, steps=int(config.steps), phase="deep-decoder", on_event=on_event, with_rows=True, info=info,
        fast=fast_options(config.prune_after, config.stop_tol, A.m * problem.noise_std ** 2),
    )
    i, state = pick_best(best, losses, diverged, config.lr)
    with torch.no_grad():
        x_hat = dd.decode(state, net_input[i : i + 1])
    state = OrderedDict(state)
    state["input"] = net_input[i : i + 1].clone()
    n_par = dd.num_params(width, config.depth, A.img_shape[0])
    return Result(
        x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses], best_restart=i,
        history=history, wall_time=clock(), diverged=diverged,
        extra={"evaluations": info["evaluations"], "stop": info["stops"][i], "width": width, "depth": config.depth, "num_params": n_par, "m": A.m,
               "under_parameterised": n_par < A.m},
    )
