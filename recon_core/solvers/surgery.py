"""Generator Surgery (Smedemark-Margulies et al.): cut the first c blocks and optimise every
input of block c (features, skips, conditioning) with the CSGM loss.

Defaults are the paper's DCGAN settings (L-BFGS, lr 0.1, 25 steps of up to 20 inner iterations as
in the reference code, 3 restarts, censored-normal init CN(0,1), c = 1). The paper's
per-architecture lr and cut (its Table 3, for compressed sensing) are in the architectures'
registry entries (generators/registry.py; ``SurgeryConfig.for_prior``). Cut 0 runs exactly the CSGM code path on the latent.
Presets (``PRESETS``): ``paper`` is the above; ``fast`` (the CLI's default) swaps the schedule
for the line-search L-BFGS of linesearch.py (see benchmarks/speed.py for what it costs and gains).
"""

from __future__ import annotations

from typing import List, Sequence, Union

from dataclasses import dataclass

from ..events import EventSink, null_sink
from .common import MethodConfig, opt, FAST_SCHEDULE, Problem, Result, invert_at_cut, invert_at_cut_batch

@dataclass
class SurgeryConfig(MethodConfig):
    """Generator Surgery settings; init in cn|zero|normal|uniform, optimizer lbfgs|adam|lbfgs-ls.

    With lbfgs-ls, ``steps`` is a budget of batched evaluations, lr is unused (the line search
    picks each step), restarts are pruned to the best after ``prune_after`` of the budget, and a
    restart stops when its loss changes by less than ``stop_tol`` over 5 iterations or reaches
    the noise level. With ``screen`` = K > 0 the restarts start from the K draws of ``init``
    of lowest measurement loss (common.screened_init; any optimizer).

    Whose defaults: the Generator Surgery paper's Table 3 for DCGAN compressed sensing (L-BFGS lr
    0.1, 25 steps, c = 1, 3 restarts, CN(0,1) init) with its reference code's 20 inner L-BFGS
    iterations per step; other architectures' lr and cut come from the registry (Table 3). Its
    raw-reconstruction rows (A = I: lr 1, 100 steps) are not a preset: benchmarks/claims.py sets
    them."""

    cut: int = opt(1, 'Cut index c: optimise the state entering block c (0 = CSGM).')
    lr: float = 0.1
    steps: int = 25
    restarts: int = 3
    optimizer: str = "lbfgs"
    init: str = "cn"
    lbfgs_max_iter: int = 20
    prune_after: float = 0.0
    stop_tol: float = 1e-3
    screen: int = opt(0, 'Start the restarts from the lowest-loss of this many random draws (forward passes only; 0 = off).')
    bf16_share: float = opt(0.0, 'The share of the evaluation budget (--optimizer lbfgs-ls) or of the steps (adam, sgd; not lbfgs) run with a bfloat16 copy of the generator where the device computes bfloat16 natively (0 = off; restarts are chosen and the result returned in float32).')


#: named settings: ``paper`` = the dataclass defaults; ``fast`` = the fast schedule (3 restarts,
#: pruned to the best after 30 % of the budget), its first 60 % of evaluations with a bfloat16
#: copy of the generator where the CPU/GPU computes bfloat16 natively (tuning: fast-150-b60 vs
#: fast-150-b0 in benchmarks/results/tune_fast.jsonl, -0.08 to +0.04 dB; 80 and 90 % lost 0.2-0.3
#: dB on cs m/n 0.2). One restart with the whole budget matched three on the tuning images
#: (fast-150-r1) but lost on the report set's compressed sensing
#: (benchmarks/results/speed_surgery_r1.md), so the default keeps three.
PRESETS = {"paper": {}, "fast": dict(FAST_SCHEDULE, bf16_share=0.6)}


def solve(problem: Problem, prior, config: SurgeryConfig = SurgeryConfig(), on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Optimise the state entering block ``config.cut`` of ``prior``; lowest measurement loss wins."""
    return invert_at_cut(
        problem, prior, cut=config.cut, init=config.init, optimizer=config.optimizer, lr=config.lr,
        steps=config.steps, restarts=config.restarts, seed=seed,
        phase="csgm" if config.cut == 0 else f"surgery:c{config.cut}", on_event=on_event,
        lbfgs_max_iter=config.lbfgs_max_iter, prune_after=config.prune_after, stop_tol=config.stop_tol,
        screen=config.screen, bf16_share=config.bf16_share,
    )


def solve_batch(problems: Sequence[Problem], prior, config: SurgeryConfig = SurgeryConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """``solve`` on B problems as one batch (B x restarts rows per generator evaluation); problem
    j gets what ``solve(problems[j], seed=seeds[j])`` computes, up to floating-point reassociation
    (common.invert_at_cut_batch)."""
    return invert_at_cut_batch(
        problems, prior, cut=config.cut, init=config.init, optimizer=config.optimizer, lr=config.lr,
        steps=config.steps, restarts=config.restarts, seed=seed, phase="csgm" if config.cut == 0 else f"surgery:c{config.cut}", on_event=on_event,
        lbfgs_max_iter=config.lbfgs_max_iter, prune_after=config.prune_after, stop_tol=config.stop_tol,
        screen=config.screen, bf16_share=config.bf16_share,
    )
