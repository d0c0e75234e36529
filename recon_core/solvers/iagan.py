"""IAGAN: image-adaptive GAN reconstruction (Abu Hussein, Tirer, Giryes, AAAI 2020).

Stage 1 is CSGM: min_z ||y - A G(z)||^2 with Adam lr 0.1, keeping each restart's minimum-objective
z (paper: 1600 steps for BEGAN; the Generator Surgery paper's Table 5 uses 1600 for DCGAN too).
Stage 2 makes the generator image-adaptive: min_{z, theta} ||y - A G_theta(z)||^2 jointly over z
and ALL generator weights theta, starting from stage 1's z and the pretrained weights, with small
Adam learning rates (1e-4 for z and theta for BEGAN, and for DCGAN in the Generator Surgery paper;
PGGAN used 1e-3 for theta: both are options) and early stopping by step count (600 steps for
compressed sensing with DCGAN/BEGAN). In noisy problems (``problem.noise_std > 0``) stage 2 runs
half as many steps, as the paper does "to avoid overfitting the noise" (``halve_if_noisy``). The
result is the minimum-objective iterate of stage 2: the image G_theta(z) and the z at the step
with the lowest measurement loss (the loss before any update is stage 1's, so IAGAN never ends
with a higher measurement loss than its own CSGM stage).

Weights are per image *and* per restart: every restart adapts a fresh ``copy.deepcopy`` of the
prior passed in, so no adaptation leaks into the next restart or the next image (a pitfall of the
reference code), and the shared prior is never modified (its weights stay bit-identical and its
requires_grad flags unchanged; stage 1 runs under ``frozen``). The copy is put in eval mode, so
BatchNorm keeps the pretrained running statistics: only weights change, never the statistics.

Restarts: stage 1 runs all restarts as one batch (as CSGM does); stage 2 runs them one after the
other, because each restart owns a whole generator's weights. Batching them would need R weight
copies evaluated with ``torch.func.functional_call`` + ``vmap`` over every adapter, at R times
the memory of the largest generators, for a stage that is short (a few hundred steps).
Only the image and z of the best iterate are kept, not the adapted weights: copying every weight
at each improving step would cost more than the stage-2 updates on large generators, and the
returned estimate is fully determined by that image.

IAGAN-BP is IAGAN followed by the paper's eq. 10: ``postprocess.backproject`` on the result
(``recon reconstruct --backproject``, ``Pipeline(backproject=True)``), as for any method.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Sequence, Union

import torch

from ..errors import BadInput, SolverDiverged, UnknownName, is_int
from ..events import Event, EventSink, null_sink
from .common import (Adam, MethodConfig, opt, require_prior, Problem, Result, check_positive, divergence_advice, fast_options, frozen, group_history, grouped_init,
                     measurement_loss, must_split, noise_floors, one_by_one, optimise_state, problem_seeds, rows_of,
                     stack_problems, timer)

#: stage 1's optimisers: the paper's Adam, and the fast schedule
CSGM_OPTIMIZERS = ("adam", "lbfgs-ls")

#: the fast schedule: stage 1 on the line-search schedule (200 evaluations, pruned after 30 %) and
#: only its best restart adapted in stage 2 (the paper's stage-2 steps and learning rates). Tuned
#: on images outside the report set (benchmarks/tune_fast.py, variant ls200-a1: the one candidate
#: at or above the paper schedule on the mean of every operator there); on the report set
#: (benchmarks/results/speed_iagan.md) +0.26 to +0.50 dB over the paper schedule at 0.19-0.24 x
#: its time. The earlier 150-evaluation candidate lost 0.16 dB on super-resolution (speed.md).
FAST_SCHEDULE = {"csgm_optimizer": "lbfgs-ls", "csgm_steps": 200, "prune_after": 0.3, "adapt_restarts": 1}

#: named settings: ``paper`` = the dataclass defaults with the architecture's paper settings (see
#: below); ``fast`` (the CLI's default) = FAST_SCHEDULE on top of them
PRESETS = {"paper": {}, "fast": dict(FAST_SCHEDULE)}


# The per-architecture settings from the papers, for compressed sensing (the IAGAN paper for
# BEGAN and PGGAN; the Generator Surgery paper's Table 5 for DCGAN and VAE), are in the
# architectures' registry entries (generators/registry.py; ``IAGANConfig.for_prior``); for
# super-resolution the IAGAN paper uses fewer stage-2 steps (BEGAN 500, PGGAN 300).


@dataclass
class IAGANConfig(MethodConfig):
    """IAGAN settings. Stage 1 (CSGM): csgm_lr, csgm_steps, init; stage 2 (joint z + weights):
    steps, lr_z, lr_theta, halve_if_noisy (stage 2 runs steps // 2 when noise_std > 0);
    restarts.
    csgm_optimizer adam|lbfgs-ls: with lbfgs-ls (the fast schedule) csgm_steps is a budget of
    batched evaluations, csgm_lr is unused, and prune_after / stop_tol apply to stage 1;
    adapt_restarts: how many stage-1 restarts (lowest measurement loss first) go on to stage 2
    (0 = all, the paper's).

    Whose defaults: Abu Hussein, Tirer, Giryes (AAAI 2020) for compressed sensing: stage 1 Adam lr
    0.1 x 1600 (its BEGAN count), stage 2 lr 1e-4 for z and weights x 600, halved when noisy; the
    per-architecture values (the Generator Surgery paper's Table 5 for DCGAN and VAE) come from the
    registry. Its super-resolution counts (BEGAN 500, PGGAN 300 stage-2 steps) are not applied
    automatically: pass ``steps``. 3 restarts follows the Generator Surgery paper's baselines (the
    IAGAN paper states none)."""

    #: stage 1's optimiser owns its step count (stage 2 is Adam only): see MethodConfig
    SCHEDULES = (("csgm_optimizer", "csgm_steps"),)

    csgm_lr: float = opt(0.1, 'Stage 1 (CSGM): Adam lr.')
    csgm_steps: int = opt(1600, 'Stage 1 (CSGM): steps (lbfgs-ls: evaluations).')
    steps: int = 600
    lr_z: float = opt(1e-4, 'Stage 2: lr of z.')
    lr_theta: float = opt(1e-4, 'Stage 2: lr of the generator weights.')
    restarts: int = 3
    init: str = "prior"
    halve_if_noisy: bool = opt(True, 'Stage 2 runs half its steps when the measurements are noisy (early stopping).')
    csgm_optimizer: str = opt("adam", 'Stage 1 optimiser: adam|lbfgs-ls.')
    adapt_restarts: int = opt(0, "Stage-1 restarts (lowest loss first) adapted in stage 2 (0 = all, the paper's).")
    prune_after: float = 0.0
    stop_tol: float = 1e-3


def adapt_steps(config: IAGANConfig, noise_std: float) -> int:
    """Stage-2 step count: ``config.steps``, halved (at least 1) when the problem is noisy."""
    if config.halve_if_noisy and noise_std > 0:
        return max(1, int(config.steps) // 2)
    return int(config.steps)


def _check(config: IAGANConfig) -> None:
    check_positive("restarts", config.restarts, integer=True)
    check_positive("csgm_steps", config.csgm_steps, integer=True)
    check_positive("csgm_lr", config.csgm_lr)
    check_positive("steps", config.steps, integer=True)
    check_positive("lr_z", config.lr_z)
    check_positive("lr_theta", config.lr_theta)
    if config.csgm_optimizer not in CSGM_OPTIMIZERS:
        raise UnknownName("csgm_optimizer", config.csgm_optimizer, CSGM_OPTIMIZERS)
    a = config.adapt_restarts
    if not (is_int(a) and 0 <= a):
        raise BadInput(f"adapt_restarts must be an integer >= 0 (0 = all), got {a!r}")
    if not isinstance(config.halve_if_noisy, bool):
        raise BadInput(f"halve_if_noisy must be true or false, got {config.halve_if_noisy!r}")


def _adapt(prior, problem: Problem, z0, steps: int, config: IAGANConfig, restart: int, on_event: EventSink):
    """Stage 2 for one restart on a fresh copy of ``prior``: returns (best loss, best x (1, C, H,
    W), best z state, running-best loss per step). Stops early if the loss becomes NaN/Inf."""
    A, y = problem.A, problem.y
    G = copy.deepcopy(prior).eval()
    for p in G.parameters():
        p.requires_grad_(True)
    z = OrderedDict((k, v.detach().clone().requires_grad_(True)) for k, v in z0.items())
    opt = Adam([
        {"params": list(z.values()), "lr": config.lr_z},
        {"params": [p for p in G.parameters()], "lr": config.lr_theta},
    ])
    best, best_x, best_z, trace = math.inf, None, None, []

    def record(loss: float, x: torch.Tensor) -> None:
        nonlocal best, best_x, best_z
        if loss < best:
            best, best_x = loss, x.detach().clone()
            best_z = OrderedDict((k, v.detach().clone()) for k, v in z.items())

    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        x = G(z)
        loss = measurement_loss(A, y, x)[0]
        value = float(loss.detach())
        if not math.isfinite(value):
            break  # diverged: keep the best iterate found so far
        record(value, x)
        loss.backward()
        opt.step()
        if step == steps:  # the last update's result is an iterate too
            with torch.no_grad():
                x = G(z)
                v = float(measurement_loss(A, y, x)[0])
            if math.isfinite(v):
                record(v, x)
        trace.append(best)
        on_event(Event(phase="iagan:adapt", step=step, total=steps, loss=best, restart=restart))
    del G, opt  # one generator copy alive at a time
    return best, best_x, best_z, trace


def solve(problem: Problem, prior, config: IAGANConfig = IAGANConfig(), on_event: EventSink = null_sink,
          seed: int = 0) -> Result:
    """IAGAN on ``problem`` with generator ``prior``
    (left unmodified). Returns the restart with the lowest stage-2 measurement loss; x_hat (1, C,
    H, W) in [0, 1]; extra: stage1_loss, stage2_loss (of that restart), per-restart stage-1 losses,
    adapt_steps."""
    return solve_batch([problem], prior, config, on_event, seed)[0]


def solve_batch(problems: Sequence[Problem], prior, config: IAGANConfig = IAGANConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> list:
    """IAGAN on B problems: stage 1 (CSGM) for all B x restarts rows as one batch, stage 2 image
    by image and restart by restart (each adapts its own copy of the weights). Problem j gets
    what ``solve(problems[j], seed=seeds[j])`` computes, up to floating-point reassociation in
    stage 1; seeds as in common.problem_seeds. Returns one Result per problem (wall_time: the
    batch's; extra["batch"] = B when B > 1); a problem whose restarts all diverge raises
    SolverDiverged naming it (common.solve_isolated then solves the others alone)."""
    clock = timer()
    require_prior(prior, "iagan")
    _check(config)
    A, y, B = stack_problems(problems)
    if must_split(config.csgm_optimizer == "lbfgs-ls", A, problems):
        return one_by_one(solve_batch, problems, seed, prior=prior, config=config, on_event=on_event)
    R = int(config.restarts)
    y_rows = rows_of(y, R)
    floors = noise_floors(problems, R)

    # stage 1: CSGM, every restart of every problem in one batch; keep each restart's best z (not
    # only the winner), since each restart goes on to stage 2 (common.invert_at_cut's code path)
    state0 = grouped_init(prior, 0, R, problem_seeds(seed, B), config.init)
    hist1: List[List[dict]] = [[] for _ in range(B)]

    def report(step, best, div):
        group_history(hist1, best, div, B, {"step": step, "phase": "csgm"})
        ok = best[~div]
        on_event(Event(phase="iagan:csgm", step=step, total=int(config.csgm_steps),
                       loss=float(ok.min()) if ok.numel() else float("nan"), extra={"diverged": int(div.sum())}))

    info: dict = {}
    with frozen(prior):
        z1, loss1, _, div1 = optimise_state(
            lambda s, rows: measurement_loss(A, y_rows if len(rows) == len(y_rows) else y_rows[rows], prior.tail(s, 0)),
            state0, optimizer=config.csgm_optimizer, lr=config.csgm_lr, steps=int(config.csgm_steps), phase="iagan:csgm",
            on_event=on_event, info=info, with_rows=True, fast=fast_options(config.prune_after, config.stop_tol, floors, B),
            report=None if config.csgm_optimizer == "lbfgs-ls" else report,
        )
    if config.csgm_optimizer == "lbfgs-ls":
        hist1 = [[dict(h, phase="csgm") for h in hs] for hs in info["group_history"]]
    evals1 = info.get("group_evaluations", [info["evaluations"]] * B)
    results = []
    for j, problem in enumerate(problems):
        rows = range(j * R, (j + 1) * R)
        dj = [r - j * R for r in div1 if r in rows]
        if len(dj) == R:
            raise SolverDiverged(f"every restart{'' if B == 1 else f' of problem {j}'} diverged in the CSGM stage; "
                                 + divergence_advice(config.csgm_optimizer, config.csgm_lr, "csgm_lr"))
        zj = OrderedDict((k, v[j * R : (j + 1) * R]) for k, v in z1.items())
        lj = loss1[j * R : (j + 1) * R]
        results.append(_stage2(prior, problem, config, zj, lj, dj, hist1[j], evals1[j], info["stops"][j * R : (j + 1) * R],
                               on_event, B))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results


def _stage2(prior, problem: Problem, config: IAGANConfig, z1, loss1, div1: List[int], hist1: List[dict], evals1: int,
            stops1: List[str], on_event: EventSink, B: int) -> Result:
    """Stage 2 of one problem from its stage-1 restarts (z1 (R, ...), their losses, diverged
    indices, history and evaluations): the adapt_restarts best are adapted (all by default)."""
    R = int(config.restarts)
    order = sorted((r for r in range(R) if r not in div1), key=lambda r: float(loss1[r]))
    adapt = set(order[: config.adapt_restarts or R])
    # per restart, a fresh copy of the original weights
    T = adapt_steps(config, problem.noise_std)
    loss2: List[float] = []
    outs, traces, diverged = [], [], list(div1)
    for r in range(R):
        if r not in adapt:
            loss2.append(float("nan"))
            outs.append(None)
            continue
        zr = OrderedDict((k, v[r : r + 1]) for k, v in z1.items())
        b, x, z, trace = _adapt(prior, problem, zr, T, config, r, on_event)
        if x is None:  # not even the starting point was finite
            diverged.append(r)
            loss2.append(float("nan"))
            outs.append(None)
            continue
        loss2.append(b)
        outs.append((x, z))
        traces.append(trace)
    ok = [r for r in range(R) if outs[r] is not None]
    if not ok:
        raise SolverDiverged("every restart diverged in the adaptation stage; " + divergence_advice("adam", config.lr_theta, "lr_theta"))
    i = min(ok, key=lambda r: loss2[r])
    x_hat, z_best = outs[i]

    history = list(hist1)
    S1 = int(config.csgm_steps)
    for t in range(max(len(tr) for tr in traces)):
        vals = [tr[min(t, len(tr) - 1)] for tr in traces]  # a restart that stopped early keeps its best
        history.append({"phase": "adapt", "step": S1 + t + 1, "loss": min(vals)})
    result = Result(
        x_hat=x_hat, state=z_best, losses=loss2, best_restart=i, history=history, wall_time=0.0,
        diverged=sorted(diverged),
        extra={"stage1_loss": float(loss1[i]), "stage2_loss": loss2[i],
               "stage1_losses": [float(v) for v in loss1], "adapt_steps": T, "adapted": sorted(adapt),
               "evaluations": evals1 + sum(len(tr) for tr in traces), "stop": stops1[i],
               "backprojected": False, **({"batch": B} if B > 1 else {})},
    )
    return result
