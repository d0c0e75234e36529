"""mGANprior: multi-code GAN prior (Gu, Shen, Zhou, CVPR 2020).

N latent codes z_1..z_N (cut-0 states of the prior) and per-code channel importances alpha_j at
the composing layer l:

    x = tail( sum_j head(z_j, l) * alpha_j , l )

optimised jointly over all z_j and alpha_j to minimise the measurement loss. Generic over the
adapter's state at l: every entry with >= 2 per-sample dims (C, H, W, ...) gets one weight per
channel, alpha of per-sample shape (C, 1, ..., 1) broadcast over the other axes (the paper's
channel importance); an entry that is a vector (e.g. a conditioning vector carried through) gets
one scalar per code, so it is mixed as a weighted sum of the codes' vectors.

The paper's formula is a plain sum; the reference code (genforce/mganprior,
``PGGAN_multi_z``) also divides the sum by N while initialising alpha to 1/N, which starts from
1/N of the mean feature map. Here alpha starts at 1/N without the extra division (the paper's
formula), so optimisation starts from the codes' mean feature map, on the generator's
activation scale.

Defaults: the Generator Surgery paper's tuned mGANprior settings for DCGAN 64 px (Table 5:
Adam, lr 3e-2, N = 10 codes, composing layer l = 1, 3 restarts as for every baseline there);
2000 steps (METHODS.md: 2000-5000; the surgery paper ran 5000, RTIL 2500 -- fewer keeps a
CPU run reasonable, raise ``steps`` for the full budget). The reference code's own default is
SGD with lr 1 on a *mean* squared error (``optimizer="sgd"``, ``lr=1``): the loss minimised
here is that mean, ||y - A x||^2 / m, so its learning rates carry over; Adam is the default
because the reference lr was tuned for PGGAN and the surgery paper needed Adam to make the
method work on small GANs ("the original settings were not applicable"). Optional
``lpips_weight`` adds LPIPS to the measurement-consistent image (RTIL used 0.5 for inpainting and
super-resolution). Selection: each restart keeps its minimum measurement-loss iterate; the
restart with the lowest measurement loss is returned.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Sequence, Union

import torch

from ..errors import BadInput, is_int, is_real
from ..events import Event, EventSink, null_sink
from .common import (MethodConfig, opt, require_prior, Problem, Result, State, best_per_group, check_fast_settings, check_positive, check_schedule, divergence_advice, fast_options, frozen,
                     group_history, grouped_init, must_split, noise_floors, one_by_one, problem_seeds, rows_of, stack_problems, timer)
from .ilo import OPTIMIZERS as FIRST_ORDER, optimise_tracked

#: the reference code's SGD, the surgery paper's Adam, and the fast schedule
OPTIMIZERS = FIRST_ORDER + ("lbfgs-ls",)
from .losses import lpips_loss, measurement_consistent_reference

ALPHA_PREFIX = "alpha:"

#: named settings: ``paper`` = the dataclass defaults; ``fast`` = the line-search schedule with a
#: budget of 300 batched evaluations, pruned to the best restart after 30 % of it (tuned on
#: images outside the report set: benchmarks/tune_fast.py; measured in benchmarks/speed.py)
PRESETS = {"paper": {}, "fast": {"optimizer": "lbfgs-ls", "steps": 300, "prune_after": 0.3}}


@dataclass
class MGANConfig(MethodConfig):
    """mGANprior settings. n_codes: N >= 1 latent codes per restart; layer: composing cut point
    (>= 1, an intermediate layer); optimizer: adam|sgd; lr > 0; steps >= 1; restarts: run as one
    batch of restarts x n_codes codes; init: latent init (prior|cn|zero|normal|uniform);
    lpips_weight >= 0 (0 = measurement loss only). optimizer lbfgs-ls is the fast schedule
    (``steps`` = budget of batched evaluations, lr unused, prune_after / stop_tol apply).

    Whose defaults: the Generator Surgery paper's Table 5 tuning for DCGAN 64 px (Adam lr 3e-2,
    N = 10, l = 1, 3 restarts) but 2000 steps where that paper ran 5000 (and RTIL 2500; the
    reference code genforce/mganprior: SGD lr 1); no LPIPS term, where RTIL used 0.5 for inpainting
    and super-resolution."""

    n_codes: int = opt(10, 'Number of latent codes composed.')
    layer: int = opt(1, 'Composing layer (a cut point >= 1).')
    optimizer: str = "adam"
    lr: float = 0.03
    steps: int = 2000
    restarts: int = 3
    init: str = "prior"
    lpips_weight: float = opt(0.0, 'Weight of the LPIPS term (0 = measurement loss only).')
    prune_after: float = 0.0
    stop_tol: float = 1e-3


def alpha_shape(shape) -> tuple:
    """Per-code channel-importance shape for a state entry of per-sample ``shape``: (C, 1, ...)
    when the entry has >= 2 dims (one weight per channel), else all ones (one scalar per code)."""
    shape = tuple(shape)
    if len(shape) >= 2:
        return (shape[0],) + (1,) * (len(shape) - 1)
    return (1,) * len(shape)


def _check_config(config: MGANConfig, prior) -> None:
    """BadInput / UnknownName for settings mGANprior cannot run with on ``prior``."""
    require_prior(prior, "mgan")
    check_positive("n_codes", config.n_codes, integer=True)
    check_schedule(config, OPTIMIZERS)
    check_fast_settings(config.prune_after, config.stop_tol)
    valid = prior.cut_points
    l = config.layer
    if not is_int(l) or l not in valid[1:]:
        raise BadInput(
            f"mGANprior layer {l} is not an intermediate cut point of {prior.meta.architecture} "
            f"(valid: 1..{valid[-1]}; layer 0 would mix latents, not features)"
        )
    w = config.lpips_weight
    if not is_real(w) or not math.isfinite(w) or w < 0:
        raise BadInput(f"lpips_weight must be a number >= 0, got {w}")


def compose(prior, params: State, layer: int, R: int, N: int) -> torch.Tensor:
    """The mGANprior image of every restart: params holds the codes (R, N, *latent shape) under
    the latent's entry names and the importances (R, N, *alpha_shape) under "alpha:<entry>".
    Runs all R*N codes through ``prior.head`` as one batch. Returns (R, C, H, W) in [0, 1]."""
    latent_keys = list(prior.state_shapes(0))
    z = OrderedDict((k, params[k].reshape((R * N,) + tuple(params[k].shape[2:]))) for k in latent_keys)
    feats = prior.head(z, layer)
    mixed = OrderedDict()
    for k, f in feats.items():
        f = f.reshape((R, N) + tuple(f.shape[1:]))
        mixed[k] = (f * params[ALPHA_PREFIX + k]).sum(1)
    return prior.tail(mixed, layer)


def solve(problem: Problem, prior, config: MGANConfig = MGANConfig(), on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Invert ``prior`` with N codes composed at ``config.layer``; returns the restart with the
    lowest measurement loss. Result.state: that restart's codes (1, N, *latent) and importances
    "alpha:<entry>" (1, N, *alpha_shape). Result.extra: layer, n_codes, optimizer."""
    return solve_batch([problem], prior, config, on_event, seed)[0]


def solve_batch(problems: Sequence[Problem], prior, config: MGANConfig = MGANConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """mGANprior on B independent problems at once (B x restarts x N codes through the generator
    per step). Problem j gets what ``solve(problems[j], seed=seeds[j])`` would compute (Adam and
    the selection act row by row), up to floating-point reassociation in batched kernels; seeds:
    ``seed`` + j for an int ``seed``, else ``seed[j]`` (common.problem_seeds).
    Returns one Result per problem (wall_time: the whole batch's; extra["batch"] = B)."""
    clock = timer()
    _check_config(config, prior)
    A, y, B = stack_problems(problems)
    if must_split(config.optimizer == "lbfgs-ls", A, problems):
        return one_by_one(solve_batch, problems, seed, prior=prior, config=config, on_event=on_event)
    R, N, layer = int(config.restarts), int(config.n_codes), config.layer
    RB = R * B
    y_rows = rows_of(y, R)
    m = A.m
    use_lpips = config.lpips_weight > 0
    if use_lpips:
        from ..perceptual import get_lpips_net

        get_lpips_net(y.device)  # fail before optimising (MissingWeights)

    latent_keys = list(prior.state_shapes(0))
    layer_shapes = prior.state_shapes(layer)
    clash = [k for k in layer_shapes if ALPHA_PREFIX + k in latent_keys]
    if clash:
        raise BadInput(f"latent entry names clash with the importances of {clash}")
    z0 = grouped_init(prior, 0, R * N, problem_seeds(seed, B), config.init)
    init = OrderedDict()
    for k in latent_keys:
        init[k] = z0[k].reshape((RB, N) + tuple(z0[k].shape[1:]))
    place = {"device": z0[latent_keys[0]].device, "dtype": z0[latent_keys[0]].dtype}
    for k, s in layer_shapes.items():
        # alpha = 1/N: the composed feature starts as the mean of the N codes' features
        init[ALPHA_PREFIX + k] = torch.full((RB, N) + alpha_shape(s), 1.0 / N, **place)

    def objective(params: State, rows: torch.Tensor):
        n = len(rows)
        x = compose(prior, params, layer, n, N)
        yr = y_rows if n == RB else y_rows[rows]
        # a row subset (Adam pruning) keeps equal groups in order, which a StackedOperator takes
        r = A.A(x) - yr
        meas = r.reshape(n, -1).pow(2).sum(1)
        total = meas / m  # = losses.mse_loss (the reference's F.mse_loss is a mean too)
        if use_lpips:
            total = total + config.lpips_weight * lpips_loss(x, measurement_consistent_reference(A, yr, x))
        return total, meas

    history: List[List[dict]] = [[] for _ in range(B)]

    def report(step, best, div):
        group_history(history, best, div, B, {"step": step})
        ok = best[~div]
        loss = float(ok.min()) if ok.numel() else float("nan")
        on_event(Event(phase="mgan", step=step, total=config.steps, loss=loss, extra={"diverged": int(div.sum())}))

    with frozen(prior):
        info: dict = {}
        best, losses, div = optimise_tracked(
            objective, init, optimizer=config.optimizer, lr=config.lr, steps=config.steps, report=report,
            optimizers=OPTIMIZERS, with_rows=True, info=info,
            fast=fast_options(config.prune_after, config.stop_tol, noise_floors(problems, R), B),
        )
        results = []
        for j, i in enumerate(best_per_group(losses, B, divergence_advice(config.optimizer, config.lr))):
            rows = slice(j * R, (j + 1) * R)
            state = OrderedDict((k, v[i : i + 1].detach().clone()) for k, v in best.items())
            with torch.no_grad():
                x_hat = compose(prior, state, layer, 1, N)
            results.append(Result(
                x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses[rows]], best_restart=i - j * R,
                history=history[j], diverged=div[rows].nonzero().flatten().tolist(),
                extra={"layer": layer, "n_codes": N, "optimizer": config.optimizer, "evaluations": info["evaluations"],
                       "stop": info["stops"][i], **({"batch": B} if B > 1 else {})},
            ))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results
