"""What every solver shares: the problem, the result, batched restarts, optimisers.

Restarts run as one batch: the state being optimised has a leading restart axis, the generator
is applied to the whole batch at once, and each restart's measurement loss is kept separately
(so Adam, which is per-coordinate, treats them independently; L-BFGS keeps one history per
restart, see ``BatchedLBFGS``). The restart kept is the one with the lowest *measurement* loss,
never one chosen against the ground truth.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..errors import BadInput, OperatorError, SolverDiverged, UnknownName, is_int, is_real
from ..events import Event, EventSink, null_sink
from ..operators.base import LinearOperator

State = Dict[str, torch.Tensor]
OPTIMIZERS = ("adam", "sgd", "lbfgs")
#: optimisers of the cut-inversion methods (csgm, surgery): lbfgs-ls is the fast schedule
#: (linesearch.py), whose ``steps`` is a budget of batched evaluations
CUT_OPTIMIZERS = OPTIMIZERS + ("lbfgs-ls",)
#: the fast schedule: surgery's fast preset, and csgm's candidate that benchmarks/speed.py
#: measures (not csgm's default, see csgm.py); tuned on images outside the speed report set
#: (benchmarks/tune_fast.py); ``steps`` is the evaluation budget
FAST_SCHEDULE = {"optimizer": "lbfgs-ls", "steps": 150, "prune_after": 0.3}


#: the largest per-entry noise std a Problem takes: the noise floor m sigma^2 must stay a float
#: (NoiseSpec caps the user's level at 1e6; a cs-norm level scales by sqrt(n / (m 12288)))
MAX_NOISE_STD = 1e12


@dataclass
class Problem:
    """An inverse problem: operator ``A``, measurements ``y`` (1, *A.meas_shape) and the
    per-entry noise std (0 when noiseless or unknown)."""

    A: LinearOperator
    y: torch.Tensor
    noise_std: float = 0.0

    def __post_init__(self):
        self.y = self.A._check_y(self.y)
        if not (is_real(self.noise_std) and 0 <= self.noise_std <= MAX_NOISE_STD):
            raise BadInput(f"noise_std must be a number in [0, {MAX_NOISE_STD:g}], got {self.noise_std!r}")
        if self.y.shape[0] != 1:
            raise BadInput(f"a problem holds the measurements of one image, got a batch of {self.y.shape[0]}")


@dataclass
class Result:
    """What a solver returns.

    x_hat: (1, C, H, W) in [0, 1]; state: best restart's optimised state (detached, batch 1);
    losses: per-restart best measurement loss ||y - A x||^2 (NaN for diverged restarts);
    best_restart: index into losses; history: [{"step", "loss"}] best loss over restarts;
    wall_time: seconds; diverged: indices of dropped restarts; extra: method-specific values."""

    x_hat: torch.Tensor
    state: State
    losses: List[float]
    best_restart: int
    history: List[dict] = field(default_factory=list)
    wall_time: float = 0.0
    diverged: List[int] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


#: help of the fields several methods share (each method's own fields carry theirs: ``opt``);
#: the CLI's options are generated from these (cli/options.py)
SHARED_HELP = {
    "lr": "Learning rate (Adam/SGD step; L-BFGS step size; unused by lbfgs-ls).",
    "steps": "Optimiser steps (lbfgs-ls: a budget of batched evaluations); ilo: one per round, e.g. 300,200,100.",
    "restarts": "Random restarts, run as one batch (the lowest measurement loss is kept).",
    "optimizer": "adam|sgd|lbfgs|lbfgs-ls (line search), as the method allows; ilo: one, or one per round "
                 "(e.g. adam,lbfgs-ls,lbfgs-ls).",
    "init": "Initial latent or state: prior|cn|zero|normal|uniform (cn: clamp(N(0,1), -1, 1)).",
    "prune_after": "Share of the steps (or evaluation budget) after which only the best restart goes on (0 = never).",
    "stop_tol": "lbfgs-ls: stop a restart when its loss falls by less than this (relative) over 5 iterations (0 = off).",
    "lbfgs_max_iter": "L-BFGS (lbfgs): inner iterations per outer step.",
}


def opt(default, help: str):
    """A config field with its help (the single source of the CLI option's help)."""
    return field(default=default, metadata={"help": help})


class MethodConfig:
    """Base of every method's config dataclass: ``for_prior`` gives the papers' settings for a
    prior's architecture (and the fast preset on request), as the CLI uses them.

    ``SCHEDULES``: the (optimiser field, its step-count field) pairs of the method: a preset's
    step count belongs to its optimiser (lbfgs-ls counts evaluations), so ``pipeline.build_config``
    gives another optimiser the paper's steps unless steps are given. A method whose stages have
    their own optimiser options declares each pair (IAGAN's stage 1)."""

    SCHEDULES = (("optimizer", "steps"),)

    def __post_init__(self):
        # the fast schedule's settings are checked where a config is made: every optimizer reads
        # them (Adam prunes too), and a bad value must not surface after a long first stage
        if hasattr(self, "prune_after") or hasattr(self, "stop_tol"):
            check_fast_settings(getattr(self, "prune_after", 0.0), getattr(self, "stop_tol", 0.0))
        if hasattr(self, "screen"):
            check_screen(self.screen, self.restarts)
        if hasattr(self, "bf16_share"):
            check_bf16_share(self.bf16_share)

    @classmethod
    def for_prior(cls, meta, preset: str = "paper", cut_points=None):
        """This method's config for a prior with GeneratorMeta ``meta`` (its architecture picks
        the paper's per-architecture settings, e.g. Surgery's lr and cut, IAGAN's lrs), with
        ``preset`` ("paper" or "fast") applied; ``cut_points`` of a smaller model adjust the cut."""
        from . import METHODS, make_config

        name = next(m for m, (c, _) in METHODS.items() if c is cls)
        return make_config(name, preset, getattr(meta, "architecture", ""), cut_points)


def check_fast_settings(prune_after, stop_tol) -> None:
    """BadInput unless ``prune_after`` is a number in [0, 1] and ``stop_tol`` a finite number >= 0."""
    if not (is_real(prune_after) and 0 <= prune_after <= 1):
        raise BadInput(f"prune_after must be in [0, 1], got {prune_after}")
    if not (is_real(stop_tol) and math.isfinite(stop_tol) and stop_tol >= 0):
        raise BadInput(f"stop_tol must be a number >= 0, got {stop_tol}")


def check_bf16_share(share) -> None:
    """BadInput unless ``share`` (of the fast schedule's evaluations run in bfloat16) is a number in [0, 1)."""
    if not (is_real(share) and 0 <= share < 1):
        raise BadInput(f"bf16_share must be a number in [0, 1) (the share of evaluations run in bfloat16), got {share!r}")


def native_bf16(device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (a CPU with AVX512-BF16 or AMX, or a CUDA
    GPU that supports it): elsewhere bfloat16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # torch.cpu's probes are private (no public equivalent in torch 2.14): absent means no
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(f()) for f in probes if f is not None)


def bf16_tail(prior, cut: Optional[int] = None) -> Callable:
    """``tail(state[, at]) -> image``: blocks ``cut``.. (or ``at``.., which a call may give
    instead; one of them is needed) of a bfloat16 copy of ``prior`` (made here, once; the prior
    is not changed). Floating state entries go in as bfloat16; the image (N, C, H, W) comes back
    in the prior's dtype; gradients flow to the caller's float32 state. For the early
    evaluations of the fast schedule (``linesearch.minimise_ls``'s ``coarse_fn``) and of the
    Adam/SGD schedules (``optimise_state``). The copy's weights never require grad (whatever the
    prior's flags when it is made), so a ``backward()`` through it builds no weight gradients;
    ``tail.module`` is the copy."""
    lo = copy.deepcopy(prior).to(torch.bfloat16).requires_grad_(False)
    dtype = next(prior.parameters()).dtype

    def tail(state: State, at: Optional[int] = None) -> torch.Tensor:
        st = OrderedDict((k, v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in state.items())
        return lo.tail(st, cut if at is None else at).to(dtype)

    tail.module = lo
    return tail


def check_schedule(config, optimizers: Sequence[str]) -> None:
    """BadInput / UnknownName unless ``config.restarts`` and ``config.steps`` are positive ints,
    ``config.lr`` a positive number and ``config.optimizer`` one of ``optimizers`` (the checks
    every single-stage method makes before it builds anything)."""
    check_positive("restarts", config.restarts, integer=True)
    check_positive("steps", config.steps, integer=True)
    check_positive("lr", config.lr)
    if config.optimizer not in optimizers:
        raise UnknownName("optimizer", config.optimizer, optimizers)


def require_prior(prior, method: str) -> None:
    """BadInput when a method that inverts a generator is given none (prior None)."""
    if prior is None:
        raise BadInput(f"{method} needs a generator prior (only pinv, lasso-dct and deep-decoder run without one)")


def config_dict(config) -> dict:
    """A solver config dataclass as a JSON-able dict."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


#: the largest positive real setting (the learning rates) accepted: solvers use it as a float32
#: scalar, and beyond ~3e38 it overflows there (an internal error, not a diverged run)
MAX_SETTING = 1e30


def check_positive(name: str, value, integer: bool = False) -> None:
    """Raise BadInput unless ``value`` is a finite positive number (an int if ``integer``; at
    most MAX_SETTING if not)."""
    ok = is_real(value) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        raise BadInput(f"{name} must be a positive {'integer' if integer else 'number'}, got {value}")
    if not integer and value > MAX_SETTING:
        raise BadInput(f"{name} must be a positive number up to {MAX_SETTING:g}, got {value}")


def measurement_loss(A: LinearOperator, y: torch.Tensor, x: torch.Tensor, coarse: bool = False) -> torch.Tensor:
    """Per-sample ||y - A x||^2: x (R, C, H, W), y (1 or R, *meas) -> (R,). ``coarse``: a
    bfloat16-accurate value will do (see ``LinearOperator.residual_energy``)."""
    return A.residual_energy(x, y, coarse)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Disable gradients of ``module``'s parameters for the duration (restored afterwards), so
    solvers that optimise latents never build weight gradients and never alter the prior."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _flat(state: State) -> torch.Tensor:
    return torch.cat([v.reshape(v.shape[0], -1) for v in state.values()], 1)


def _unflat(vec: torch.Tensor, like: State) -> State:
    """Rows of ``vec`` (R', D) as a state shaped like ``like`` but for its leading axis (R'):
    views of ``vec`` (one ``split``, whose backward is one concatenation: a state of many
    tensors, such as a Deep Decoder's 19, costs one gradient op, not one zero-filled copy each)."""
    parts = torch.split(vec, [v[0].numel() for v in like.values()], dim=1)
    return OrderedDict((k, part.reshape((vec.shape[0],) + tuple(v.shape[1:]))) for (k, v), part in zip(like.items(), parts))


class BatchedLBFGS:
    """L-BFGS with an independent history per restart (row of ``x``), fixed step size.

    Follows torch.optim.LBFGS without line search (the algorithm the Generator Surgery reference
    code uses): a restart's first step is t = min(1, 1/|g|_1) * lr, later ones t = lr; each
    ``step()`` runs up to ``max_iter`` iterations, and a restart meeting one of torch's stopping
    tests sits out the rest of that step. Written here because torch's LBFGS keeps one history
    for all parameters, which would couple restarts that run as one batch. History slots are
    shared by the restarts for speed (one (R, D) tensor op per slot); a restart that skips a
    curvature pair (y.s <= 1e-10, or inactive) stores rho = 0 there, which the two-loop recursion
    ignores exactly."""

    def __init__(self, lr: float, max_iter: int = 20, history_size: int = 100,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9):
        self.lr, self.max_iter, self.history_size = lr, max_iter, history_size
        self.tol_grad, self.tol_change = tolerance_grad, tolerance_change
        self.mem: List[tuple] = []  # [(s (R, D), y (R, D), rho (R,))]
        self.started = self.h_diag = self.d = self.t = self.prev_g = None

    def _direction(self, g: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        started = self.started
        if bool(started.any()):
            yv = g - self.prev_g
            s = self.d * self.t.unsqueeze(1)
            ys = (yv * s).sum(1)
            take = started & active & (ys > 1e-10)
            if bool(take.any()):
                if len(self.mem) == self.history_size:
                    self.mem.pop(0)
                rho = torch.where(take, 1.0 / torch.where(take, ys, torch.ones_like(ys)), torch.zeros_like(ys))
                self.mem.append((s, yv, rho))
                self.h_diag = torch.where(take, ys / (yv * yv).sum(1).clamp_min(1e-300), self.h_diag)
        q = -g
        al = []
        for s_i, y_i, rho in reversed(self.mem):
            a = rho * (s_i * q).sum(1)
            q = q - a.unsqueeze(1) * y_i
            al.append(a)
        z = q * self.h_diag.unsqueeze(1)
        for (s_i, y_i, rho), a in zip(self.mem, reversed(al)):
            z = z + s_i * (a - rho * (y_i * z).sum(1)).unsqueeze(1)
        # a restart's very first direction is the steepest descent
        return torch.where(started.unsqueeze(1), z, -g)

    def step(self, x: torch.Tensor, closure: Callable[[torch.Tensor], tuple]) -> torch.Tensor:
        """Run up to max_iter iterations from x (R, D); ``closure(x) -> (f (R,), g (R, D))``,
        f non-finite for diverged restarts. Returns the new x (R, D)."""
        R = x.shape[0]
        if self.started is None:
            self.started = torch.zeros(R, dtype=torch.bool, device=x.device)
            self.h_diag = torch.ones(R, dtype=x.dtype, device=x.device)
            self.d, self.prev_g = torch.zeros_like(x), torch.zeros_like(x)
            self.t = torch.zeros(R, dtype=x.dtype, device=x.device)
        f, g = closure(x)
        active = (g.abs().amax(1) > self.tol_grad) & torch.isfinite(f)
        for it in range(self.max_iter):
            if not bool(active.any()):
                break
            d = self._direction(g, active)
            first = (1.0 / g.abs().sum(1).clamp_min(1e-300)).clamp(max=1.0) * self.lr
            t = torch.where(self.started, torch.full_like(first, self.lr), first)
            a1 = active.unsqueeze(1)
            self.prev_g = torch.where(a1, g, self.prev_g)
            self.d = torch.where(a1, d, self.d)
            self.t = torch.where(active, t, self.t)
            self.started = self.started | active
            active = active & ((g * d).sum(1) <= -self.tol_change)
            x = x + active.to(x.dtype).unsqueeze(1) * t.unsqueeze(1) * d
            if it == self.max_iter - 1 or not bool(active.any()):
                break
            f_new, g_new = closure(x)
            step_size = t * d.abs().amax(1)
            stop = (~torch.isfinite(f_new) | (g_new.abs().amax(1) <= self.tol_grad)
                    | (step_size <= self.tol_change) | ((f_new - f).abs() < self.tol_change))
            f = torch.where(active, f_new, f)
            g = torch.where(active.unsqueeze(1), g_new, g)
            active = active & ~stop
        return x


def _split(out) -> tuple:
    """A loss function's output -> (total to minimise (R,), measurement loss to select on (R,))."""
    return out if isinstance(out, tuple) else (out, out)


class _Optimiser:
    """What recon's Adam and SGD share with torch.optim's interface: ``param_groups`` (params:
    tensors, or dicts with "params" and optionally "lr"), ``state``, ``defaults``, ``zero_grad``."""

    def __init__(self, params, **defaults):
        self.defaults = defaults
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: Dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.zero_()


class Adam(_Optimiser):
    """Adam (Kingma & Ba) exactly as ``torch.optim.Adam`` computes it on a CPU (its single-tensor
    path; no weight decay or amsgrad): the same operations in the same order, so the iterates are
    bit for bit torch's (tested). Interface as torch's (``_Optimiser``).

    Why not torch.optim.Adam: constructing any torch.optim optimiser imports torch._dynamo (about
    1.4 s here), the largest part of an Adam run's fixed cost; this is the whole algorithm."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps)

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        for group in self.param_groups:
            (beta1, beta2), lr, eps = group["betas"], group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state.get(p)
                if not st:
                    st = self.state[p] = {"step": 0.0, "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                          "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                st["step"] += 1.0  # a float, as torch's float32 step counter reads back
                grad, m, v = p.grad, st["exp_avg"], st["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction2_sqrt = (1 - beta2 ** st["step"]) ** 0.5
                step_size = lr / (1 - beta1 ** st["step"])
                p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(eps), value=-step_size)


class SGD(_Optimiser):
    """Plain gradient descent, p <- p - lr grad, as ``torch.optim.SGD`` without momentum
    (interface as torch's; see ``Adam`` for why torch's optimisers are not used)."""

    def __init__(self, params, lr: float = 1e-3):
        super().__init__(params, lr=lr)

    @torch.no_grad()
    def step(self) -> None:
        """One gradient step of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def optimise_state(
    loss_fn: Callable[[State], torch.Tensor],
    init: State,
    *,
    optimizer: str,
    lr: float,
    steps: int,
    phase: str = "",
    on_event: EventSink = null_sink,
    lbfgs_max_iter: int = 20,
    lr_schedule: Optional[Callable[[int], float]] = None,
    project: Optional[Callable[[State], State]] = None,
    report: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    with_rows: bool = False,
    fast: Optional[dict] = None,
    info: Optional[dict] = None,
) -> tuple:
    """Minimise ``loss_fn(state)`` over every entry of ``init`` (R restarts batched).

    ``loss_fn`` returns the per-restart loss (R,), or a pair (total (R,), meas (R,)) when what is
    minimised (e.g. with LPIPS, geodesic or noise-addition terms) differs from the measurement
    loss each restart's best iterate is chosen on. Tracks, per restart, the iterate with the
    lowest (measurement) loss and drops restarts whose loss becomes NaN/Inf (left out of the sum,
    marked diverged). optimizer: adam | sgd | lbfgs. ``project`` maps the state back onto a
    feasible set after each step (ILO; called as ``project(state, rows)`` with ``with_rows``); ``lr_schedule(i)`` multiplies lr at step i (0-based;
    Adam/SGD). After each step an Event (phase, best loss) goes to ``on_event``, or, if given,
    ``report(step, best (R,), diverged (R,) bool)`` is called instead.
    optimizer lbfgs-ls is the fast schedule (``linesearch.minimise_ls``; ``steps`` = its budget of
    batched evaluations; ``fast`` holds its other keywords: prune_after, stop_tol, noise_floor,
    groups; lr and lr_schedule do not apply; ``project`` needs ``with_rows``). With Adam/SGD, ``fast["prune_after"]`` > 0
    keeps only the best restart (per group) after that fraction of the steps (not with
    ``project``). ``with_rows``: ``loss_fn(state, rows)``
    gets the restart indices of the state's rows (lbfgs-ls evaluates subsets of the restarts).
    ``info``, when given, receives "evaluations" and per-restart "stops".
    Low precision first, with Adam/SGD too: ``fast["coarse_fn"]`` (same signature as ``loss_fn``)
    is minimised for the first ``fast["coarse_evals"]`` steps; then every restart's best iterate
    is re-scored with ``loss_fn`` and the rest of the steps run on it, so the iterates kept (and
    the losses returned) are chosen on ``loss_fn``'s values; ``info["coarse_evaluations"]``
    records the count per group, as the line search does.
    Returns (best_state, best_losses (R,) float64 with NaN for diverged, history, diverged
    indices).

    Longer than 80 lines on purpose: the Adam/SGD/L-BFGS loop and its per-row bookkeeping (best
    iterate, divergence, pruning with Adam's moments carried over) share one set of tensors that
    every step updates; split apart, each piece would pass them all around."""
    if optimizer not in CUT_OPTIMIZERS:
        raise UnknownName("optimizer", optimizer, CUT_OPTIMIZERS)
    check_positive("lr", lr)
    check_positive("steps", steps, integer=True)
    R = next(iter(init.values())).shape[0]
    info = {} if info is None else info
    if optimizer == "lbfgs-ls":
        if project is not None and not with_rows:
            raise BadInput("the lbfgs-ls schedule projects subsets of the restarts: give with_rows=True")
        from .linesearch import minimise_ls

        best, losses, hist, div, got = minimise_ls(
            loss_fn, init, max_evals=int(steps), phase=phase, on_event=on_event, with_rows=with_rows,
            project=project, **(fast or {}))
        info.update(got)
        if report is not None:
            report(int(steps), losses.clone().nan_to_num(float("inf")), torch.isnan(losses))
        return best, losses, hist, div
    fast = dict(fast or {})
    prune_after, groups = float(fast.get("prune_after", 0.0)), int(fast.get("groups", 1))
    coarse_fn = fast.get("coarse_fn") if optimizer in ("adam", "sgd") else None
    coarse_steps = fast.get("coarse_evals", 0) if coarse_fn is not None else 0
    if not (is_int(coarse_steps) and 0 <= coarse_steps < steps):
        raise BadInput(f"coarse_evals must be an integer from 0 to steps - 1 ({steps - 1}), got {coarse_steps}")
    if prune_after and project is not None and not with_rows:
        raise BadInput("restarts projected onto a constraint set can only be pruned with with_rows=True")
    device = next(iter(init.values())).device
    live = torch.arange(R)  # the restarts still optimised (pruning drops rows; Adam/SGD)
    call = (lambda st: loss_fn(st, live.to(device))) if with_rows else loss_fn
    coarse_call = (lambda st: coarse_fn(st, live.to(device))) if with_rows else coarse_fn
    best_loss = torch.full((R,), float("inf"), dtype=torch.float64)
    best_state = OrderedDict((k, v.detach().clone()) for k, v in init.items())
    diverged = torch.zeros(R, dtype=torch.bool)
    history: List[dict] = []
    calls = [0]
    pruned: List[int] = []

    def record(state, out) -> None:
        # state and out hold the rows ``live`` (all R unless restarts were pruned); state is a
        # State, or (Adam/SGD) the flat (rows, D) iterate, copied into ``best_flat`` in one op
        calls[0] += 1
        total, meas = _split(out)
        meas = meas.detach().cpu().to(best_loss.dtype)
        diverged[live] |= ~torch.isfinite(meas) | ~torch.isfinite(total.detach().cpu())
        better = (meas < best_loss[live]) & ~diverged[live]
        if bool(better.any()):
            best_loss[live[better]] = meas[better]
            idx = better.nonzero().flatten()
            if torch.is_tensor(state):
                best_flat[live[idx].to(state.device)] = state.detach()[idx.to(state.device)]
                return
            for k, v in state.items():
                best_state[k][live[idx].to(v.device)] = v.detach()[idx.to(v.device)]

    def after_step(step: int) -> None:
        ok = best_loss[~diverged]
        cur = float(ok.min()) if ok.numel() else float("nan")
        history.append({"step": step, "loss": cur})
        if report is not None:
            report(step, best_loss.clone(), diverged.clone())
        else:
            on_event(Event(phase=phase, step=step, total=steps, loss=cur, extra={"diverged": int(diverged.sum())}))

    def finite_sum(out) -> Optional[torch.Tensor]:
        # a diverged restart must not poison the others: its loss is left out of the sum
        total, meas = _split(out)
        finite = torch.isfinite(total.detach()) & torch.isfinite(meas.detach())
        return total[finite].sum() if bool(finite.any()) else None

    if optimizer in ("adam", "sgd"):
        # one flat (rows, D) leaf, the state's tensors views of it (_unflat): Adam's update, the
        # gradient's clean-up and the best-iterate copy are one op each instead of one per tensor
        # (a Deep Decoder has 19; per coordinate the arithmetic is the same, bit for bit). A
        # tensor the loss never uses gets zero gradients, hence zero moments and no update (torch
        # would skip it: the same iterate)
        flat = _flat(init).detach().clone().requires_grad_(True)
        best_flat = _flat(best_state)
        best_state = _unflat(best_flat, init)  # views: what ``record`` writes, ``best_state`` reads
        opt = (Adam if optimizer == "adam" else SGD)([flat], lr=lr)
        prune_step = math.ceil(prune_after * steps) if prune_after and R > groups else 0
        for step in range(1, steps + 1):
            if lr_schedule is not None:
                for group in opt.param_groups:
                    group["lr"] = lr * lr_schedule(step - 1)
            if coarse_steps and step == coarse_steps + 1:
                # leaving low precision: re-score every restart's best iterate with the full
                # loss, so the iterates kept from here on are chosen on float32 values
                with torch.no_grad():
                    fine = _split(loss_fn(best_state, torch.arange(R, device=device)) if with_rows else loss_fn(best_state))[1]
                fine = fine.detach().cpu().to(best_loss.dtype)
                diverged |= ~torch.isfinite(fine)
                best_loss.copy_(torch.where(diverged, best_loss, fine))
            opt.zero_grad(set_to_none=True)
            out = (coarse_call if step <= coarse_steps else call)(_unflat(flat, init))
            record(flat, out)
            total = finite_sum(out)
            if total is None:
                break
            total.backward()
            flat.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            if project is not None:
                with torch.no_grad():
                    views = _unflat(flat.detach(), init)
                    for k, v in (project(views, live.to(device)) if with_rows else project(views)).items():
                        views[k].copy_(v)
            if step == steps:
                with torch.no_grad():
                    record(flat, call(_unflat(flat, init)))
            elif step == prune_step:
                keep = _prune_rows(_split(out)[0].detach().cpu(), live, diverged, groups)
                flat, opt = _keep_rows(flat, opt, keep)
                pruned.extend(int(j) for j in live if int(j) not in set(keep.tolist()))
                live = live[keep]
            after_step(step)
        best_state = OrderedDict((k, v.contiguous()) for k, v in best_state.items())
    else:
        lb = BatchedLBFGS(lr=lr, max_iter=lbfgs_max_iter)
        x = _flat(init).detach().clone()

        def closure(xv):
            xv = xv.detach().requires_grad_(True)
            st = _unflat(xv, init)
            out = call(st)
            record(st, out)
            total = finite_sum(out)
            (g,) = torch.autograd.grad(total if total is not None else _split(out)[0].sum() * 0, xv)
            return _split(out)[0].detach().nan_to_num(float("inf")), g.nan_to_num(0.0, 0.0, 0.0)

        for step in range(1, steps + 1):
            x = lb.step(x, closure).detach()
            if project is not None:
                x = _flat(project(_unflat(x, init), live.to(device)) if with_rows else project(_unflat(x, init)))
            if step == steps:
                with torch.no_grad():
                    record(_unflat(x, init), call(_unflat(x, init)))
            after_step(step)
            if bool(diverged.all()):
                break
    best_loss[diverged] = float("nan")
    div = diverged.nonzero().flatten().tolist()
    info.update(evaluations=calls[0],
                stops=["diverged" if j in div else "pruned" if j in pruned else "steps" for j in range(R)])
    if coarse_steps:
        info["coarse_evaluations"] = [coarse_steps] * groups
    return best_state, best_loss, history, div


def _prune_rows(total: torch.Tensor, live: torch.Tensor, diverged: torch.Tensor, groups: int) -> torch.Tensor:
    """Positions (into ``live``) of the row with the lowest current loss ``total`` in each of
    ``groups`` equal groups of the live rows; a group with every row diverged keeps them all."""
    per = len(live) // groups
    keep = []
    for j in range(groups):
        pos = torch.arange(j * per, (j + 1) * per)
        ok = pos[~diverged[live[pos]] & torch.isfinite(total[pos])]
        keep.extend([int(ok[total[ok].argmin()])] if len(ok) else pos.tolist())
    return torch.tensor(keep, dtype=torch.long)


def _keep_rows(flat: torch.Tensor, opt, keep: torch.Tensor) -> tuple:
    """The flat iterate ``flat`` (rows, D) and its optimiser cut to the rows ``keep``, the
    optimiser's per-coordinate state (Adam's moments) carried over so the kept rows go on
    exactly as before."""
    new = flat.detach()[keep.to(flat.device)].clone().requires_grad_(True)
    opt2 = type(opt)([new], **opt.defaults)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    st = opt.state.get(flat)
    if st:
        opt2.state[new] = {n: (t[keep.to(t.device)].clone() if torch.is_tensor(t) and t.dim() > 0 else t)
                           for n, t in st.items()}
    return new, opt2


def one_by_one(solve_batch: Callable, problems: Sequence[Problem], seed, **kw) -> list:
    """``solve_batch`` on each problem alone (problem j with seeds[j]), for the fast schedule on
    problems whose operators differ (it evaluates subsets of the rows, which a stack of
    operators, one per group of rows, cannot take). A problem whose restarts all diverge raises
    SolverDiverged naming it, as a batch would."""
    from ..errors import SolverDiverged

    out = []
    for j, (p, s) in enumerate(zip(problems, problem_seeds(seed, len(problems)))):
        try:
            out.append(solve_batch([p], seed=[s], **kw)[0])
        except SolverDiverged as e:
            raise SolverDiverged(str(e).replace("every restart", f"every restart of problem {j}", 1)) from None
    return out


def fast_options(prune_after: float, stop_tol: float, noise_floor=0.0, groups: int = 1) -> dict:
    """The keywords of the fast schedule (``optimise_state(..., fast=...)``) from a config's
    fields; noise_floor: m sigma^2 (float, or one per row), 0 when the noise level is unknown."""
    check_fast_settings(prune_after, stop_tol)
    return {"prune_after": prune_after, "stop_tol": stop_tol, "noise_floor": noise_floor, "groups": groups}


def kept_rows(best_loss: torch.Tensor, diverged: List[int], groups: int, advice: str) -> List[int]:
    """Per problem (``groups`` equal groups of rows), the row with the lowest measurement loss,
    diverged rows left out (best_per_group; SolverDiverged, with ``advice``, when a problem
    diverged entirely)."""
    loss = best_loss.clone()
    loss[diverged] = float("nan")
    return best_per_group(loss, groups, advice)


def divergence_advice(optimizer, lr: float, lr_name: str = "learning rate", **weights: float) -> str:
    """The hint a SolverDiverged ends with: a smaller learning rate (called ``lr_name``) unless
    every round ran the line search (``optimizer`` lbfgs-ls, or a tuple of them: it picks its own
    steps, lr unused), and smaller loss weights among ``weights`` (config field -> value) that are
    in use (not 0). Naming only the learning rate misled when a huge weight (z_reg 1e308) made the
    loss inf."""
    ls_only = all(o == "lbfgs-ls" for o in ((optimizer,) if isinstance(optimizer, str) else optimizer))
    tips = [] if ls_only else [f"a smaller {lr_name} than {lr}"]
    tips += [f"a smaller {name} than {value:g}" for name, value in weights.items() if value]
    return "try " + (" or ".join(tips) if tips else "checking y and the operator for huge or non-finite values")


def group_diverged(diverged: List[int], j: int, rows: int) -> List[int]:
    """The diverged restarts of problem j (rows j*rows .. (j+1)*rows - 1), as its own indices."""
    return [d - j * rows for d in diverged if j * rows <= d < (j + 1) * rows]


def noise_floors(problems: Sequence[Problem], restarts: int) -> torch.Tensor:
    """The fast schedule's noise floor m sigma^2 of every row (problem-major, ``restarts`` rows
    each), 0 where the noise level is unknown."""
    return rows_of(torch.tensor([p.A.m * p.noise_std ** 2 for p in problems], dtype=torch.float64), restarts)


def must_split(fast: bool, A, problems: Sequence[Problem]) -> bool:
    """Whether a batch must be solved problem by problem: the fast schedule (``fast``) evaluates
    subsets of the rows, which a stack of different operators (one per group of rows) cannot
    take. ``A`` is stack_problems' operator. See ``one_by_one``."""
    return fast and len(problems) > 1 and A is not problems[0].A


def stack_problems(problems: Sequence[Problem]) -> tuple:
    """B problems as one batch: (operator over B equal groups of rows, y (B, *meas), B).

    The operator is the first problem's when they share one object or one spec, else a
    StackedOperator of theirs (group j = problem j); shapes must agree. Used by the solvers' ``solve_batch``."""
    from ..operators.stacked import StackedOperator

    problems = list(problems)
    if not problems or not all(isinstance(p, Problem) for p in problems):
        raise BadInput("solve_batch needs a non-empty list of Problem objects")
    A0 = problems[0].A
    try:
        # operators with one spec are the same operator (the spec contract): use it for every row
        same = all(p.A is A0 for p in problems) or all(p.A.spec() == A0.spec() for p in problems[1:])
        A = A0 if same else StackedOperator([p.A for p in problems])
    except OperatorError as e:
        raise BadInput(f"problems solved as one batch must have operators of one shape: {e}") from None
    y = torch.cat([p.y for p in problems])
    return A, y, len(problems)


def rows_of(y: torch.Tensor, restarts: int) -> torch.Tensor:
    """Measurements (B, *meas) -> one row per restart (B*restarts, *meas), image-major."""
    return y.repeat_interleave(restarts, 0)


def problem_seeds(seed, groups: int) -> List[int]:
    """Per-problem seeds of a batch of ``groups`` problems: an int gives seed + j to problem j
    (what single solves with seed + j would use); a sequence gives its own seed to each problem
    (so several images can be solved exactly as single solves with one common seed)."""
    if is_int(seed):
        return [int(seed) + j for j in range(groups)]  # int(): NumPy integers become JSON-able ints
    seeds = list(seed) if isinstance(seed, (list, tuple)) else None
    if seeds is None or len(seeds) != groups or not all(is_int(s) for s in seeds):
        raise BadInput(f"a batch of {groups} problems needs an int seed or {groups} int seeds, got {seed!r}")
    return [int(s) for s in seeds]


def grouped_init(prior, cut: int, count: int, seeds: Sequence[int], init: str) -> State:
    """``count`` initial states per problem for ``len(seeds)`` problems, stacked image-major;
    problem j draws from seeds[j], so it starts where a single solve with that seed would."""
    parts = [prior.init_state(cut, count, init=init, rng=seeded_rng(s)) for s in seeds]
    return OrderedDict((k, torch.cat([p[k] for p in parts])) for k in parts[0])


#: the most draws ``screen`` takes: the pool of states is held at once (32 KB per draw for the
#: 64 px DCGAN at cut 1, more for larger states)
MAX_SCREEN = 4096


def check_screen(screen, restarts: int) -> None:
    """``screen`` is 0 (off) or an int in [restarts, MAX_SCREEN] (draws screened for the restarts' starts)."""
    # a bad restarts is refused by its own check (check_positive): compare only with an int
    at_least = max(int(restarts), 1) if is_int(restarts) else 1
    if not (is_int(screen) and (int(screen) == 0 or at_least <= int(screen) <= MAX_SCREEN)):
        raise BadInput(f"screen must be 0 (off) or an integer from restarts ({restarts}) to {MAX_SCREEN}, got {screen!r}")


def screened_init(prior, cut: int, count: int, seeds: Sequence[int], init: str, screen: int, A: LinearOperator,
                  y: torch.Tensor, chunk: int = 64) -> State:
    """``count`` initial states per problem: the ``count`` of lowest measurement loss
    ||y_j - A G_c(s)||^2 among ``screen`` draws (``grouped_init(prior, cut, screen, ...)``), in
    ascending loss order. Forward passes only, ``chunk`` draws per problem at a time. Uses the
    measurements, never the ground truth. A: stack_problems' operator (one group of rows per
    problem); y: (B, *meas)."""
    B = len(seeds)
    pool = grouped_init(prior, cut, screen, seeds, init)
    losses = torch.empty(B, screen, dtype=torch.float64)
    with torch.no_grad():
        for c0 in range(0, screen, chunk):
            cols = torch.arange(c0, min(c0 + chunk, screen))
            rows = (torch.arange(B)[:, None] * screen + cols[None]).flatten()
            part = OrderedDict((k, v[rows.to(v.device)]) for k, v in pool.items())
            loss = measurement_loss(A, rows_of(y, len(cols)), prior.tail(part, cut))
            losses[:, cols] = loss.reshape(B, -1).double().cpu()
    losses = torch.nan_to_num(losses, nan=float("inf"))
    pick = losses.argsort(dim=1, stable=True)[:, :count] + torch.arange(B)[:, None] * screen
    return OrderedDict((k, v[pick.flatten().to(v.device)]) for k, v in pool.items())


def solve_isolated(solve_batch: Callable, problems: Sequence[Problem], prior, config, on_event: EventSink = null_sink,
                   seed=0) -> list:
    """``solve_batch(problems, prior, config, on_event, seed)``, but one problem whose restarts
    all diverge does not take the others down: the batch is then solved again problem by problem
    (with the seeds the batch gave them). Returns one Result, or the SolverDiverged raised for
    it, per problem (never raises SolverDiverged); a Result's wall_time is the batch's when
    extra["batch"] is set, else its own solve's."""
    seeds = problem_seeds(seed, len(problems))
    try:
        return list(solve_batch(problems, prior, config, on_event, seeds))
    except SolverDiverged as e:
        if len(problems) == 1:
            return [e]
    out = []
    for pb, s in zip(problems, seeds):
        try:
            out.append(solve_batch([pb], prior, config, on_event, [s])[0])
        except SolverDiverged as e:
            out.append(e)
    return out


def best_per_group(losses: torch.Tensor, groups: int, advice: str) -> List[int]:
    """Row index of the lowest measurement loss within each of ``groups`` equal consecutive
    groups of ``losses`` (NaN = diverged). Raises SolverDiverged when a group diverged entirely,
    ending with ``advice`` (divergence_advice)."""
    L = torch.nan_to_num(losses.reshape(groups, -1), nan=float("inf"))
    R = L.shape[1]
    out = []
    for j in range(groups):
        if not bool(torch.isfinite(L[j]).any()):
            which = "every restart" if groups == 1 else f"every restart of problem {j}"
            raise SolverDiverged(f"{which} diverged (loss became NaN/Inf); {advice}")
        out.append(j * R + int(L[j].argmin()))
    return out


def group_history(history: List[dict], best: torch.Tensor, bad: torch.Tensor, groups: int, entry: dict) -> None:
    """Append to each group's history (``history[j]``) ``entry`` plus its best loss over the
    group's non-diverged rows (NaN when none is left)."""
    b = torch.where(bad, torch.full_like(best, float("inf")), best).reshape(groups, -1).min(1).values
    for j in range(groups):
        v = float(b[j])
        history[j].append({**entry, "loss": v if math.isfinite(v) else float("nan")})


def timer() -> Callable[[], float]:
    """A stopwatch: call the returned function for seconds elapsed."""
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


def seeded_rng(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with ``seed`` (draws identical on every device)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def invert_at_cut(problem: Problem, prior, **kw) -> Result:
    """``invert_at_cut_batch`` on one problem (seed: an int)."""
    return invert_at_cut_batch([problem], prior, **kw)[0]


def invert_at_cut_batch(
    problems: Sequence[Problem],
    prior,
    *,
    cut: int,
    init: str,
    optimizer: str,
    lr: float,
    steps: int,
    restarts: int,
    seed,
    phase: str,
    on_event: EventSink = null_sink,
    z_reg: float = 0.0,
    lbfgs_max_iter: int = 20,
    prune_after: float = 0.0,
    stop_tol: float = 1e-3,
    screen: int = 0,
    bf16_share: float = 0.0,
) -> List[Result]:
    """Minimise ||y - A G_c(s)||^2 (+ z_reg ||s||^2) over the state s entering block ``cut``,
    with ``restarts`` initialisations per problem, every problem's restarts optimised as one
    batch (cut 0 is CSGM). Problem j starts from what a single solve with seeds[j] would
    (common.problem_seeds) and, row by row, takes the same iterates (up to floating-point
    reassociation in batched kernels).

    optimizer adam|sgd|lbfgs run ``steps`` fixed steps (the papers' schedules); lbfgs-ls is the
    fast schedule (``linesearch.minimise_ls``: ``steps`` batched evaluations per problem at most,
    restarts pruned after ``prune_after`` of them, stopped at the noise level or when the loss
    changes by less than ``stop_tol``); with every optimizer but the fixed-step lbfgs, the first
    ``bf16_share`` of the budget (of the steps with adam|sgd) is evaluated with a bfloat16 copy
    of the prior where the device computes bfloat16 natively (``native_bf16``), restarts
    selected and the result returned on float32 evaluations. Result.extra records
    "evaluations" (batched loss evaluations of that problem), "bf16_evaluations" (how many of
    them ran in bfloat16; with lbfgs-ls or a bf16_share) and "stop" (why the kept restart stopped);
    wall_time is the batch's and extra["batch"] = B when B > 1.

    Longer than 80 lines by its keyword list (the csgm/surgery options it passes on) and the
    per-problem assembly of the results."""
    require_prior(prior, phase.split(":")[0] or "this method")
    clock = timer()
    check_positive("restarts", restarts, integer=True)
    if not (is_real(z_reg) and math.isfinite(z_reg) and z_reg >= 0):
        raise BadInput(f"z_reg must be a number >= 0, got {z_reg}")
    prior.check_cut(cut)
    A, y, B = stack_problems(problems)
    R = int(restarts)
    check_screen(screen, R)
    check_bf16_share(bf16_share)
    y_rows = rows_of(y, R)
    if must_split(optimizer == "lbfgs-ls", A, problems):
        return one_by_one(invert_at_cut_batch, problems, seed, prior=prior, cut=cut, init=init, optimizer=optimizer,
                          lr=lr, steps=steps, restarts=restarts, phase=phase, on_event=on_event, z_reg=z_reg,
                          lbfgs_max_iter=lbfgs_max_iter, prune_after=prune_after, stop_tol=stop_tol, screen=screen,
                          bf16_share=bf16_share)
    if screen:
        with frozen(prior):
            state0 = screened_init(prior, cut, R, problem_seeds(seed, B), init, int(screen), A, y)
    else:
        state0 = grouped_init(prior, cut, R, problem_seeds(seed, B), init)

    def loss_with(tail: Callable, coarse: bool = False) -> Callable:
        def loss_fn(state, rows):
            meas = measurement_loss(A, y_rows if len(rows) == len(y_rows) else y_rows[rows], tail(state), coarse)
            if z_reg:  # minimise the penalised loss, select restarts on the measurement loss
                return meas + z_reg * _flat(state).pow(2).sum(1), meas
            return meas
        return loss_fn

    loss_fn = loss_with(lambda state: prior.tail(state, cut))
    fast = fast_options(prune_after, stop_tol, noise_floors(problems, R), B)
    if optimizer != "lbfgs" and bf16_share and native_bf16(y.device):  # the fixed-step L-BFGS has no low phase
        fast.update(coarse_fn=loss_with(bf16_tail(prior, cut), coarse=True), coarse_evals=int(bf16_share * steps))

    histories: List[List[dict]] = [[] for _ in range(B)]

    def report(step, best, div):  # per-problem histories of a batch (fixed-step optimisers)
        group_history(histories, best, div, B, {"step": step})
        ok = best[~div]
        on_event(Event(phase=phase, step=step, total=steps, loss=float(ok.min()) if ok.numel() else float("nan"),
                       extra={"diverged": int(div.sum())}))

    with frozen(prior):
        info: dict = {}
        best, losses, history, diverged = optimise_state(
            loss_fn, state0, optimizer=optimizer, lr=lr, steps=steps, phase=phase, on_event=on_event,
            lbfgs_max_iter=lbfgs_max_iter, info=info, with_rows=True, fast=fast,
            report=report if B > 1 and optimizer != "lbfgs-ls" else None,
        )
        if B > 1 and optimizer == "lbfgs-ls":
            histories = info["group_history"]
        stops = info["stops"]
        group_evals = info.get("group_evaluations", [info["evaluations"]] * B)
        results = []
        for j, i in enumerate(kept_rows(losses, diverged, B, divergence_advice(optimizer, lr, z_reg=z_reg))):
            rows = slice(j * R, (j + 1) * R)
            state = OrderedDict((k, v[i : i + 1].detach().clone()) for k, v in best.items())
            with torch.no_grad():
                x_hat = prior.tail(state, cut)
            results.append(Result(
                x_hat=x_hat.detach(), state=state, losses=[float(v) for v in losses[rows]], best_restart=i - j * R,
                history=history if B == 1 else histories[j], diverged=group_diverged(diverged, j, R),
                extra={"evaluations": group_evals[j], "stop": stops[i], "stops": stops[rows],
                       **({"bf16_evaluations": info["coarse_evaluations"][j] if "coarse_evaluations" in info else 0}
                          if optimizer == "lbfgs-ls" or bf16_share else {}),
                       **({"screened": int(screen)} if screen else {}), **({"batch": B} if B > 1 else {})},
            ))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results
