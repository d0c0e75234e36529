"""ILO: Intermediate Layer Optimization (Daras, Dean, Jalal, Dimakis, ICML 2021).

Rounds over progressively deeper cut points ``layers`` = (c_0 = 0, c_1, ..., c_K):

* round 0 is CSGM: Adam over the latent (cut 0), no constraint;
* round k >= 1 optimises every entry of the state entering block c_k (features, and whatever
  else the adapter carries there: skips, conditioning, w+, noises), starting from the previous
  round's solution carried forward through blocks c_{k-1}..c_k-1, by projected gradient descent:
  an Adam step, then each entry is projected onto the l1 ball of radius r_k around that starting
  point (Duchi et al. 2008; ``projections.project_state_l1``), per restart;
* optionally (``project_range``, Algorithm 1 line 5-6 of the paper; the public code omits it)
  after round k the latent whose head output is closest in l2 to the round's solution is found by
  ``range_steps`` Adam steps (started from the current latent estimate), and the next round starts
  from, and is centred at, that point of the range. The estimate itself stays the l1-ball
  solution (Algorithm 1 returns G_2(z~^p)).

Learning rate: Adam lr 0.1 every round, ramped up linearly over the first 5% of the round's
steps and down with a cosine over its last 75% (the StyleGAN2 projector schedule that the paper
and its code use, restarted each round; the first step therefore has lr 0, as in the code).

Loss minimised: mean squared measurement error ||y - A x||^2 / m, plus ``lpips_weight`` * LPIPS
between x and the measurement-consistent image x + A^+(y - A x) when ``loss = "mse+lpips"``, plus
``geodesic_weight`` * GEOCROSS on the layer axis of every state entry whose role is w+ (per-sample
shape (n_layers, dim)) when the optimised state has one (StyleGAN2). Stochastic Noise Addition
(``sna_std`` > 0, for denoising; Sec. 4.2): Gaussian noise of that std (pixel units, [0,1]
images) is added to the generated image before the loss, freshly drawn every step, with a fixed
std (the paper describes no annealing).

Selection: every restart keeps its minimum *measurement-loss* iterate (||y - A G(.)||^2 of the
noise-free image, whatever the optimised loss); a round starts from the previous round's best
iterate (ILO's code carries the last one; with the cosine ramp-down they are usually close), and
the restart returned is the one with the lowest measurement loss over all rounds -- never one
chosen against the ground truth.

Defaults (paper, Appendix 7.3): Adam lr 0.1 per round with the ramps above; steps (300, 200,
100), one of the per-layer step schedules searched for Fig. 2; MSE loss (the paper's choice for
compressed sensing; MSE + LPIPS for super-resolution, denoising and inpainting with > 20% of the
pixels); geodesic weight 0.01 ("for all tasks"); l1 radii (500, 1000) for rounds 1 and 2, the
paper's "radius of previous solutions" for the first intermediate layers (500, 1000, 2000),
growing with depth as its theory suggests (Remark 3). The layers (0, 1, 2) are the first three
inputs of a 64 px DCGAN (5 blocks). Why the StyleGAN2 radii carry over: the first intermediate
state has the same number of entries in both (512 x 4 x 4 = 8192). Measured on dcgan-faces-64,
its states have l1 norms of ~920 (cut 1) and ~1230 (cut 2), so these balls allow a large but
bounded change; on the astronaut crop (cs-gaussian, one seed) they gave 24.7 dB vs CSGM's
17.7 dB at m/n = 0.1 and 20.1 vs 18.3 dB at 0.05 (radii (100, 200): 19.8 dB; (2000, 4000):
20.8 dB). Radii are absolute, hence architecture dependent: tune them for other priors; inf
disables the constraint. The paper tunes one radius per variable (features, latents, noises);
here one radius per round applies to every entry of the state, each entry in its own ball.

Moving a state from cut a > 0 to a deeper cut b uses the adapter's ``advance(state, a, b)``
(blocks a..b-1), part of the adapter contract.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple, Union

import torch

from ..errors import BadInput, UnknownName, is_int, is_real
from ..events import Event, EventSink, null_sink
from .common import (MethodConfig, opt, require_prior, Problem, Result, State, best_per_group, bf16_tail, check_bf16_share, check_fast_settings, check_positive, divergence_advice, fast_options, frozen,
                     group_history, grouped_init, must_split, native_bf16, noise_floors, one_by_one, optimise_state, problem_seeds, rows_of, seeded_rng,
                     stack_problems, timer)
from .losses import geodesic_loss, lpips_loss, measurement_consistent_reference
from .projections import project_state_l1

LOSSES = ("mse", "mse+lpips")
OPTIMIZERS = ("adam", "sgd")
#: the optimisers of ILO's rounds: the paper's Adam with ramps, and the fast schedule
ROUND_OPTIMIZERS = ("adam", "lbfgs-ls")
#: named settings: ``paper`` (the dataclass defaults) and ``fast``: the paper's Adam rounds with
#: their ramps, shortened where it costs no quality -- round 0 (the latent) 25 steps instead of
#: 300 (the intermediate rounds make up for it), round 1 100 instead of 200, round 2 unchanged
#: at 100 -- and the first 90 % of every round evaluated in bfloat16 where the device computes it
#: natively (``bf16_share``). Tuned on 8 images outside the report set (benchmarks/tune_fast.py's
#: tuning images 0-7, seed 0, cs m/n 0.1, inpaint 10 %, superres x4; tune_fast.jsonl, variant
#: b90-25-100-100@s13 against paper@s13): -0.01 +- 0.15, +0.05 +- 0.18 and +0.34 +- 0.24 dB at
#: 0.20-0.22 x the paper's time (125 steps in round 1 gained nothing; 75 in round 2 lost 0.23 dB
#: on compressed sensing). The report-set measurement is in README ("Speed").
PRESETS = {"paper": {}, "fast": {"steps": (25, 100, 100), "bf16_share": 0.9}}
#: the SNA noise stream is seeded from seed + this offset (independent of the init draws)
SNA_SEED_OFFSET = 7919


@dataclass
class ILOConfig(MethodConfig):
    """ILO settings (defaults: the paper's, see the module docstring: Daras et al. 2021, Appendix
    7.3 and the public code giannisdaras/ilo; MSE loss as for compressed sensing, so the paper's
    MSE + LPIPS for super-resolution, denoising and inpainting above 20 % is ``--loss mse+lpips``).

    layers: cut points of the rounds, starting with 0 (round 0 = CSGM), non-decreasing (a repeated
    cut reruns the ball search at that layer, Algorithm 1's inner loop); steps: Adam steps per
    round (same length as layers); radii: l1 radius of rounds 1.. (one fewer than layers), >= 0,
    inf = unconstrained; lr: Adam learning rate of every round; lr_rampup / lr_rampdown:
    fractions of a round's steps for the linear warm-up / cosine decay (0 = off); restarts: run as
    one batch; init: latent init of round 0 (prior|cn|zero|normal|uniform); loss: mse|mse+lpips;
    lpips_weight >= 0; geodesic_weight >= 0 (only used with a w+ entry (n_layers, dim));
    sna_std >= 0: Stochastic Noise Addition std in [0,1] pixel units (0 = off; for denoising set
    it to the noise level); project_range: project each round's solution back to the range of
    the earlier layers (range_steps Adam steps at lr range_lr). optimizer adam|lbfgs-ls (one for
    every round, or a list with one per round): with
    lbfgs-ls (the fast schedule) each round's steps is a budget of batched evaluations, lr and its
    ramps are unused, every trial point is projected onto the round's l1 balls, and prune_after /
    stop_tol apply within each round."""

    layers: Tuple[int, ...] = opt((0, 1, 2), 'Cut points of the rounds, starting at 0, e.g. 0,1,2.')
    steps: Tuple[int, ...] = (300, 200, 100)
    radii: Tuple[float, ...] = opt((500.0, 1000.0), 'l1-ball radius of rounds 1.. (inf = unconstrained), e.g. 500,1000.')
    lr: float = 0.1
    lr_rampup: float = opt(0.05, "Share of a round's steps with a linear lr warm-up.")
    lr_rampdown: float = opt(0.75, "Share of a round's steps with a cosine lr decay.")
    restarts: int = 3
    init: str = "prior"
    loss: str = opt("mse", 'Measurement loss: mse|mse+lpips.')
    lpips_weight: float = opt(1.0, 'Weight of the LPIPS term (with --loss mse+lpips).')
    geodesic_weight: float = opt(0.01, 'Geodesic loss weight on w+ latents.')
    sna_std: float = opt(0.0, 'Stochastic Noise Addition std (denoising; 0 = off).')
    project_range: bool = opt(False, 'Project each round back to the range of the earlier layers.')
    range_steps: int = opt(100, 'Adam steps of the range projection.')
    range_lr: float = opt(0.1, 'lr of the range projection.')
    optimizer: Union[str, Tuple[str, ...]] = "adam"
    prune_after: float = 0.0
    stop_tol: float = 1e-3
    bf16_share: float = opt(0.0, "Share of every round's steps evaluated with a bfloat16 copy of the generator (and cs-gaussian's bfloat16 matrix) where the device computes bfloat16 natively (0 = off; iterates, restarts and rounds are chosen on float32 losses).")


def ilo_lr_schedule(steps: int, rampup: float = 0.05, rampdown: float = 0.75) -> Callable[[int], float]:
    """Learning-rate multiplier of step i (0-based) of a ``steps``-step round, in [0, 1]: linear
    ramp-up over the first ``rampup`` fraction, cosine ramp-down over the last ``rampdown``
    fraction (StyleGAN2 projector / ILO's ``get_lr`` with t = i / steps); 0 disables a ramp."""

    def factor(i: int) -> float:
        t = i / steps
        down = 1.0 if rampdown <= 0 else min(1.0, (1.0 - t) / rampdown)
        down = 0.5 - 0.5 * math.cos(down * math.pi)
        up = 1.0 if rampup <= 0 else min(1.0, t / rampup)
        return down * up

    return factor


def optimise_tracked(objective, init: State, *, optimizer: str, lr: float, steps: int, report=None,
                     lr_schedule=None, project=None, optimizers=OPTIMIZERS, **fast) -> tuple:
    """``common.optimise_state`` for an ``objective(state) -> (total (R,), meas (R,))``: minimise
    total, choose each restart's best iterate on meas; ``optimizers``: the ones the caller
    allows; ``fast``: optimise_state's with_rows / fast / info keywords. Returns (best_state,
    best_meas (R,) float64 with NaN for diverged, diverged (R,) bool)."""
    if optimizer not in optimizers:
        raise UnknownName("optimizer", optimizer, optimizers)
    best, losses, _, div = optimise_state(objective, init, optimizer=optimizer, lr=lr, steps=steps, report=report or (lambda *a: None),
                                          lr_schedule=lr_schedule, project=project, **fast)
    mask = torch.zeros(losses.shape[0], dtype=torch.bool)
    mask[div] = True
    return best, losses, mask


def round_optimizers(optimizer, rounds: int) -> list:
    """One optimiser name per round: ``optimizer`` is a name for every round or a list of names."""
    if isinstance(optimizer, str):
        return [optimizer] * rounds
    if isinstance(optimizer, (list, tuple)) and len(optimizer) == rounds:
        return list(optimizer)
    raise BadInput(f"optimizer must be one name or one per round ({rounds}), got {optimizer!r}")


def _check_config(config: ILOConfig, prior) -> tuple:
    """Validate the settings against ``prior``; returns (layers, steps, radii, per-round optimisers) as lists."""
    require_prior(prior, "ilo")

    def as_list(name, v):
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
            raise BadInput(f"{name} must be a list, got {v!r}")
        return list(v)

    layers, steps, radii = as_list("layers", config.layers), as_list("steps", config.steps), as_list("radii", config.radii)
    if not layers:
        raise BadInput("layers must name at least one cut point (round 0 is 0)")
    valid = prior.cut_points
    for c in layers:
        if not is_int(c) or c not in valid:
            raise BadInput(
                f"ILO layer {c} is outside the cut points of {prior.meta.architecture} (valid: {valid[0]}..{valid[-1]})"
            )
    if layers[0] != 0:
        raise BadInput(f"ILO layers must start with 0 (round 0 is CSGM in the latent), got {layers}")
    if any(b < a for a, b in zip(layers, layers[1:])):
        raise BadInput(f"ILO layers must be non-decreasing (progressively deeper), got {layers}")
    if len(steps) != len(layers):
        raise BadInput(f"steps has {len(steps)} entries but layers has {len(layers)}: give one step count per round")
    for s in steps:
        check_positive("steps", s, integer=True)
    if len(radii) != len(layers) - 1:
        raise BadInput(
            f"radii has {len(radii)} entries but layers {layers} has {len(layers) - 1} constrained rounds: "
            "give one l1 radius per round after round 0"
        )
    for r in radii:
        if not is_real(r) or math.isnan(r) or r < 0:
            raise BadInput(f"every l1 radius must be a number >= 0 (inf = unconstrained), got {r}")
    check_positive("lr", config.lr)
    check_positive("restarts", config.restarts, integer=True)
    for name in ("lr_rampup", "lr_rampdown"):
        v = getattr(config, name)
        if not is_real(v) or not 0 <= v <= 1:
            raise BadInput(f"{name} must be a fraction in [0, 1], got {v}")
    opts = round_optimizers(config.optimizer, len(layers))
    for o in opts:
        if o not in ROUND_OPTIMIZERS:
            raise UnknownName("ILO optimizer", o, ROUND_OPTIMIZERS)
    check_fast_settings(config.prune_after, config.stop_tol)
    check_bf16_share(config.bf16_share)
    if config.loss not in LOSSES:
        raise UnknownName("ILO loss", config.loss, LOSSES)
    for name in ("lpips_weight", "geodesic_weight", "sna_std"):
        v = getattr(config, name)
        if not is_real(v) or not math.isfinite(v) or v < 0:
            raise BadInput(f"{name} must be a number >= 0, got {v}")
    if config.project_range:
        check_positive("range_steps", config.range_steps, integer=True)
        check_positive("range_lr", config.range_lr)
    return layers, [int(s) for s in steps], [float(r) for r in radii], opts


def solve(problem: Problem, prior, config: ILOConfig = ILOConfig(), on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Run ILO with ``prior`` on ``problem``; returns the restart with the lowest measurement
    loss over all rounds (x_hat (1, C, H, W) in [0, 1], its state at the cut of the round that
    produced it). Result.extra: "rounds" (per round: cut, steps, radius, best measurement loss per
    restart, and the range-projection residual when enabled), "best_round", "cut"."""
    return solve_batch([problem], prior, config, on_event, seed)[0]


def solve_batch(problems: Sequence[Problem], prior, config: ILOConfig = ILOConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """ILO on B independent problems at once (B x restarts rows through the generator per step:
    several times the throughput of B single solves on a CPU for small generators). Problem j
    gets what ``solve(problems[j], seed=seeds[j])`` would compute -- Adam, the l1 projections and
    the selections act row by row -- up to floating-point reassociation in batched kernels; seeds:
    ``seed`` + j for an int ``seed``, else ``seed[j]`` (common.problem_seeds). With ``sna_std`` > 0
    the noise is drawn for the whole batch (from seeds[0]), so it differs from single solves.
    Returns one Result per problem (wall_time: the whole batch's; extra["batch"] = B).

    Longer than 80 lines: Algorithm 1's rounds share the per-row bookkeeping (best loss and round
    of every restart, divergence, histories, the round states the result is taken from)."""
    clock = timer()
    layers, steps, radii, opts = _check_config(config, prior)
    A, y, B = stack_problems(problems)
    if must_split("lbfgs-ls" in opts, A, problems):
        return one_by_one(solve_batch, problems, seed, prior=prior, config=config, on_event=on_event)
    m = A.m
    R = int(config.restarts)
    N = B * R
    y_rows = rows_of(y, R)
    use_lpips = config.loss == "mse+lpips" and config.lpips_weight > 0
    if use_lpips:
        from ..perceptual import get_lpips_net

        get_lpips_net(y.device)  # fail now (MissingWeights), not after round 0
    seeds = problem_seeds(seed, B)
    sna_rng = seeded_rng(seeds[0] + SNA_SEED_OFFSET) if config.sna_std > 0 else None

    # low precision first (bf16_share): a bfloat16 copy of the prior, made once for every round
    low = bf16_tail(prior) if config.bf16_share and native_bf16(y.device) else None

    def make_objective(cut: int, coarse: bool = False):
        # the w+ latents the geodesic loss applies to, found by role (never by name or architecture)
        w_plus = prior.entries(cut, "w+") if config.geodesic_weight > 0 else []

        def objective(state: State, rows: torch.Tensor):
            n = len(rows)
            yr = y_rows if n == N else y_rows[rows]
            x = low(state, cut) if coarse else prior.tail(state, cut)
            if coarse and sna_rng is None:
                # the residual itself is not needed: the operator may use its bfloat16 form
                meas = A.residual_energy(x, yr, coarse=True)
            else:
                r = A.A(x) - yr
                meas = r.reshape(n, -1).pow(2).sum(1)  # what selection uses: noise-free ||y - A x||^2
            x_fit, fit = x, meas / m  # = losses.mse_loss, from the same residual
            if sna_rng is not None:
                # SNA: the loss sees G(.) + n, n ~ N(0, sna_std^2) drawn afresh every step; A is
                # linear, so A(x + n) - y = r + A n
                noise = (torch.randn(x.shape, generator=sna_rng) * config.sna_std).to(x)
                x_fit = x + noise
                fit = (r + A.A(noise)).reshape(n, -1).pow(2).mean(1)
            total = fit
            if use_lpips:
                ref = measurement_consistent_reference(A, yr, x_fit.clamp(0, 1))
                total = total + config.lpips_weight * lpips_loss(x_fit.clamp(0, 1), ref)
            for name in w_plus:
                total = total + config.geodesic_weight * geodesic_loss(state[name])
            return total, meas

        return objective

    overall = torch.full((N,), float("inf"), dtype=torch.float64)
    overall_round = torch.full((N,), -1, dtype=torch.long)
    diverged = torch.zeros(N, dtype=torch.bool)
    round_states: List[State] = []
    round_stops: List[List[str]] = []  # per round, why each restart stopped (optimise_state's "stops")
    rounds_info: List[dict] = []
    history: List[List[dict]] = [[] for _ in range(B)]
    done_steps = 0
    evaluations = bf16_evaluations = 0
    floors = noise_floors(problems, R)

    with frozen(prior):
        start = grouped_init(prior, 0, R, seeds, config.init)
        z_hat = None  # latest latent estimate (project_range)
        for k, (cut, n_steps) in enumerate(zip(layers, steps)):
            radius = None if k == 0 else radii[k - 1]
            center = OrderedDict((key, v.detach().clone()) for key, v in start.items())
            project = None
            if radius is not None and not math.isinf(radius):
                project = lambda st, rows, c=center, r=radius: project_state_l1(  # noqa: E731
                    st, OrderedDict((key, v[rows]) for key, v in c.items()), r)
            floor = overall.clone()
            info_k: dict = {}

            def report(step, best, div, k=k, cut=cut, radius=radius, n_steps=n_steps, floor=floor):
                bad = diverged | div
                both = torch.minimum(floor, best)
                group_history(history, both, bad, B, {"step": done_steps + step, "round": k})
                cur, rb = both[~bad], best[~bad]
                on_event(Event(
                    phase=f"ilo:round{k}", step=step, total=n_steps,
                    loss=float(cur.min()) if cur.numel() else float("nan"),
                    extra={"round_loss": float(rb.min()) if rb.numel() else float("nan"), "cut": cut,
                           "radius": radius, "diverged": int(bad.sum())},
                ))

            best, losses, div = optimise_tracked(
                make_objective(cut), start, optimizer=opts[k], lr=config.lr, steps=n_steps, report=report,
                lr_schedule=ilo_lr_schedule(n_steps, config.lr_rampup, config.lr_rampdown), project=project,
                optimizers=ROUND_OPTIMIZERS, with_rows=True, info=info_k,
                # pruning stops restarts within a line-search round (Adam rounds run the papers' schedule)
                fast={**fast_options(config.prune_after if opts[k] == "lbfgs-ls" else 0.0, config.stop_tol, floors, B),
                      **({"coarse_fn": make_objective(cut, coarse=True), "coarse_evals": int(config.bf16_share * n_steps)}
                         if low is not None else {})},
            )
            bf16_evaluations += max(info_k.get("coarse_evaluations", [0]))  # counted per problem
            evaluations += info_k["evaluations"]
            done_steps += n_steps
            diverged |= div
            better = torch.nan_to_num(losses, nan=float("inf")) < overall
            overall[better] = losses[better]
            overall_round[better] = k
            round_states.append(best)
            round_stops.append(info_k["stops"])
            info = {"round": k, "cut": cut, "steps": n_steps, "radius": radius, "best_losses": [float(v) for v in losses]}
            if k == 0:
                z_hat = best

            carry = best
            last = k == len(layers) - 1
            if config.project_range and cut > 0 and not last:
                carry, z_hat, resid = _project_to_range(prior, best, z_hat, cut, config, k, on_event)
                info["range_residual"] = resid
            rounds_info.append(info)
            if not last:
                with torch.no_grad():
                    start = prior.advance(carry, cut, layers[k + 1])
                start = OrderedDict((key, v.detach()) for key, v in start.items())
            if bool(diverged.all()):
                break

        final = overall.clone()
        final[diverged] = float("nan")
        picks = best_per_group(final, B, divergence_advice(
            opts, config.lr, lpips_weight=config.lpips_weight if use_lpips else 0.0,
            geodesic_weight=config.geodesic_weight if any(prior.entries(c, "w+") for c in layers) else 0.0))
        results = []
        for j, i in enumerate(picks):
            rows = slice(j * R, (j + 1) * R)
            kb = int(overall_round[i])
            cut_b = layers[kb]
            state = OrderedDict((key, v[i : i + 1].detach().clone()) for key, v in round_states[kb].items())
            with torch.no_grad():
                x_hat = prior.tail(state, cut_b)
            mine = [{k: v[rows] if k in ("best_losses", "range_residual") else v for k, v in info.items()}
                    for info in rounds_info]
            results.append(Result(
                x_hat=x_hat.detach(), state=state, losses=[float(v) for v in final[rows]], best_restart=i - j * R,
                history=history[j], diverged=diverged[rows].nonzero().flatten().tolist(),
                extra={"rounds": mine, "best_round": kb, "cut": cut_b, "evaluations": evaluations,
                       "stop": round_stops[kb][i],
                       **({"bf16_evaluations": bf16_evaluations} if config.bf16_share else {}),
                       **({"batch": B} if B > 1 else {})},
            ))
    wall = clock()
    for r in results:
        r.wall_time = wall
    return results


def _project_to_range(prior, target: State, z_init: State, cut: int, config: ILOConfig, k: int, on_event) -> tuple:
    """Algorithm 1, lines 5-6: z^ = argmin_z ||head(z, cut) - target||^2 (l2 over all entries,
    per restart) by Adam from ``z_init``, then the range point head(z^, cut).
    Returns (range point (R, ...), z^, relative residual ||head(z^) - target||^2 / ||target||^2
    per restart). The paper also keeps z in an l2 ball B(r_1); CSGM here has no such bound, so
    neither has this step."""
    tgt = OrderedDict((key, v.detach()) for key, v in target.items())
    R = next(iter(tgt.values())).shape[0]

    def dist(z: State) -> torch.Tensor:
        s = prior.head(z, cut)
        return sum((s[key] - tgt[key]).reshape(R, -1).pow(2).sum(1) for key in tgt)

    z_best, d, _, _ = optimise_state(
        dist, z_init, optimizer="adam", lr=config.range_lr, steps=config.range_steps,
        phase=f"ilo:range{k}", on_event=on_event,
    )
    with torch.no_grad():
        point = prior.head(z_best, cut)
        norm = sum(v.reshape(R, -1).pow(2).sum(1) for v in tgt.values()).clamp_min(1e-30)
        d = torch.nan_to_num(d.to(norm.dtype), nan=float("inf"))
        resid = [float(v) for v in (d / norm.cpu())]
    return OrderedDict((key, v.detach()) for key, v in point.items()), z_best, resid
