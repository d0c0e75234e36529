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
from typing import List, Optional, Sequence, Union

import torch

from ..events import Event, EventSink, null_sink
from ..priors import deep_decoder as dd
from .common import (MethodConfig, opt, Problem, Result, check_schedule, divergence_advice, fast_options, group_diverged, group_history, kept_rows,
                     measurement_loss, must_split, noise_floors, one_by_one, optimise_state, problem_seeds, rows_of,
                     seeded_rng, stack_problems, timer)

#: Adam is the paper's; lbfgs-ls the fast schedule
OPTIMIZERS = ("adam", "lbfgs-ls")


#: capability: this method uses no generator (the CLI loads none)
NEEDS_PRIOR = False

#: a fast schedule measured but not adopted (``solvers.fast_candidate``; both presets run the
#: paper's): 1500 Adam steps, only the best restart going on after 10 % of them. On the 4 tuning
#: images (benchmarks/tune_fast.py, seed 0; tune_fast.jsonl ``adam-1500-p10@s15``) inpainting
#: and super-resolution kept the paper's PSNR at 0.19-0.23 x its time; compressed sensing lost
#: 0.8 dB (its fit keeps improving to 5000 steps)
FAST_CANDIDATE = {"steps": 1500, "prune_after": 0.1}

@dataclass
class DeepDecoderConfig(MethodConfig):
    """Deep Decoder settings. width: channels k (None = largest with parameters < m); depth:
    number of upsampling layers (5 at 64 px as in the paper); lr, steps: Adam; restarts: batched.
    optimizer adam|lbfgs-ls: with lbfgs-ls (the fast schedule, common.optimise_state) ``steps``
    is a budget of batched evaluations, lr is unused, and prune_after / stop_tol apply.

    Whose defaults: Heckel & Hand 2019 and its reference code (Adam lr 0.01, 5000 steps), depth 5
    at 64 px as in the Generator Surgery paper's Table 5 (k = 44 there; here the largest k with
    parameters < m)."""

    width: Optional[int] = opt(None, 'Channels k (None: the largest with fewer parameters than measurements).')
    depth: int = opt(5, 'Upsampling layers.')
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
    return solve_batch([problem], prior, config, on_event, seed)[0]


def solve_batch(problems: Sequence[Problem], prior=None, config: DeepDecoderConfig = DeepDecoderConfig(),
                on_event: EventSink = null_sink, seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """Deep Decoders for B problems at once (B x restarts decoders as one batch of rows; the
    problems need one operator shape). Problem j gets what ``solve(problems[j], seed=seeds[j])``
    computes (Adam and the selection act row by row), up to floating-point reassociation;
    seeds as in common.problem_seeds. Returns one Result per problem (wall_time: the batch's;
    extra["batch"] = B when B > 1)."""
    clock = timer()
    check_schedule(config, OPTIMIZERS)
    A, y, B = stack_problems(problems)
    if must_split(config.optimizer == "lbfgs-ls", A, problems):
        return one_by_one(solve_batch, problems, seed, prior=prior, config=config, on_event=on_event)
    width = resolve_width(A.img_shape, A.m, config.width, config.depth)
    R = int(config.restarts)
    place = {"device": y.device, "dtype": y.dtype if y.is_floating_point() else torch.float32}
    params, inputs = [], []
    for s in problem_seeds(seed, B):  # problem j draws as a single solve with its seed would
        rng = seeded_rng(s)
        params.append(dd.init_params(A.img_shape, width, config.depth, R, rng, **place))
        inputs.append(dd.init_input(A.img_shape, width, config.depth, R, rng, **place))
    params0 = OrderedDict((k, torch.cat([p[k] for p in params])) for k in params[0])
    net_input = torch.cat(inputs)
    y_rows = rows_of(y, R)
    floors = noise_floors(problems, R)
    histories: List[List[dict]] = [[] for _ in range(B)]

    def report(step, best, div):
        group_history(histories, best, div, B, {"step": step})
        ok = best[~div]
        on_event(Event(phase="deep-decoder", step=step, total=config.steps, loss=float(ok.min()) if ok.numel() else float("nan"),
                       extra={"diverged": int(div.sum())}))

    info: dict = {}
    best, losses, history, diverged = optimise_state(
        lambda p, rows: measurement_loss(A, y_rows if len(rows) == len(y_rows) else y_rows[rows], dd.decode(p, net_input[rows])),
        params0, optimizer=config.optimizer, lr=config.lr, steps=int(config.steps), phase="deep-decoder", on_event=on_event,
        with_rows=True, info=info, fast=fast_options(config.prune_after, config.stop_tol, floors, B),
        report=report if B > 1 and config.optimizer != "lbfgs-ls" else None,
    )
    if B > 1 and config.optimizer == "lbfgs-ls":
        histories = info["group_history"]
    n_par = dd.num_params(width, config.depth, A.img_shape[0])
    group_evals = info.get("group_evaluations", [info["evaluations"]] * B)
    results = []
    for j, i in enumerate(kept_rows(losses, diverged, B, divergence_advice(config.optimizer, config.lr))):
        rows = slice(j * R, (j + 1) * R)
        state = OrderedDict((k, v[i : i + 1].detach().clone()) for k, v in best.items())
        with torch.no_grad():
            x_hat = dd.decode(state, net_input[i : i + 1])
        state["input"] = net_input[i : i + 1].clone()
        results.append(Result(
            x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses[rows]], best_restart=i - j * R,
            history=history if B == 1 else histories[j], diverged=group_diverged(diverged, j, R),
            extra={"evaluations": group_evals[j], "stop": info["stops"][i], "width": width, "depth": config.depth,
                   "num_params": n_par, "m": A.m, "under_parameterised": n_par < A.m, **({"batch": B} if B > 1 else {})},
        ))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results
