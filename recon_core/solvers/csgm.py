"""CSGM (Bora et al. 2017): min_z ||y - A G(z)||^2 + lambda ||z||^2 over the latent z.

Presets (``PRESETS``): ``paper`` (the dataclass defaults: Adam lr 0.1, 500 steps, 3 restarts)
and ``fast`` (the CLI's default): the same Adam schedule with its first 90 % of steps evaluated
with a bfloat16 copy of the generator (and cs-gaussian's bfloat16 matrix) where the device
computes bfloat16 natively, the restarts' best iterates re-scored in float32 at the switch. On
the tuning images (benchmarks/tune_fast.py images 0-7, seed 0, five operators; tune_fast.jsonl,
adam-500-b90@s13 against paper@s13) it moved PSNR by -0.20 to +0.10 dB per operator (each within
about one standard error; Adam's path is chaotic, so rounding alone moves single solves by up to
1 dB either way) at 0.56-0.58 x the time. The shorter schedules do not keep the quality: the
fast schedule of csgm's sibling Generator Surgery (``optimizer="lbfgs-ls"``, FAST_SCHEDULE) runs
here too, but on the latent it stops in worse local minima than Adam's long exploration: 0.3-1
dB below the paper schedule on the tuning images and on the report set (speed.md); so did every
shorter Adam schedule tried, and the paper's 500 Adam steps pruned to the best restart after 15
or 30 % of them (mean -0.3 dB on compressed sensing over the 4 tuning images, variants
adam-500-p15 / -p30 against adam-500 = the paper schedule run beside them, at 0.5-0.75 x its
time)."""

from __future__ import annotations

from typing import List, Sequence, Union

from dataclasses import dataclass

from ..events import EventSink, null_sink
from .common import MethodConfig, opt, Problem, Result, invert_at_cut, invert_at_cut_batch


@dataclass
class CSGMConfig(MethodConfig):
    """CSGM settings (Bora et al.: Adam lr 0.1, a few hundred steps, restarts; z drawn from the
    prior). z_reg is lambda in lambda ||z||^2 (0 = off; restarts are still selected on the
    measurement loss). optimizer adam|sgd|lbfgs|lbfgs-ls; with lbfgs-ls, ``steps`` is a budget of
    batched evaluations and prune_after / stop_tol apply; with any optimizer, screen picks the
    restarts' starts (see SurgeryConfig).

    Whose defaults: Adam lr 0.1 and 500 steps are Bora et al.'s CelebA setting (AshishBora/csgm,
    src/create_scripts.py BASE_SCRIPT; the IAGAN paper uses the same lr); 3 restarts is the
    Generator Surgery paper's count for every method it compares. Two differences from Bora et
    al.'s CelebA scripts: they use 2 restarts, and a latent penalty zprior_weight 0.001 on a *mean*
    squared measurement loss of [-1, 1] images (about z_reg = 0.00025 m on this sum-of-squares loss
    of [0, 1] images); recon's default is the unpenalised objective that the IAGAN and Surgery
    papers write as CSGM (eq. 2 / eq. 1). The IAGAN paper's CSGM runs 1600 steps (``--steps 1600``)."""

    lr: float = 0.1
    steps: int = 500
    restarts: int = 3
    optimizer: str = "adam"
    init: str = "prior"
    z_reg: float = opt(0.0, 'lambda of the latent penalty lambda ||z||^2 (restarts are still chosen on the measurement loss).')
    lbfgs_max_iter: int = 20
    prune_after: float = 0.0
    stop_tol: float = 1e-3
    screen: int = opt(0, 'Start the restarts from the lowest-loss of this many random draws (forward passes only; 0 = off).')
    bf16_share: float = opt(0.0, 'The share of the evaluation budget (--optimizer lbfgs-ls) or of the steps (adam, sgd; not lbfgs) run with a bfloat16 copy of the generator where the device computes bfloat16 natively (0 = off; restarts are chosen and the result returned in float32).')


#: named settings: ``paper`` = the dataclass defaults; ``fast``: the same schedule, bfloat16 first
#: (see the module docstring)
PRESETS = {"paper": {}, "fast": {"bf16_share": 0.9}}


def solve(problem: Problem, prior, config: CSGMConfig = CSGMConfig(), on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Invert ``prior`` from its latent (cut 0); returns the restart with the lowest measurement loss."""
    return invert_at_cut(
        problem, prior, cut=0, init=config.init, optimizer=config.optimizer, lr=config.lr,
        steps=config.steps, restarts=config.restarts, seed=seed, phase="csgm", on_event=on_event,
        z_reg=config.z_reg, lbfgs_max_iter=config.lbfgs_max_iter, prune_after=config.prune_after,
        stop_tol=config.stop_tol, screen=config.screen, bf16_share=config.bf16_share,
    )


def solve_batch(problems: Sequence[Problem], prior, config: CSGMConfig = CSGMConfig(), on_event: EventSink = null_sink,
                seed: Union[int, Sequence[int]] = 0) -> List[Result]:
    """``solve`` on B problems as one batch (B x restarts rows per generator evaluation); problem
    j gets what ``solve(problems[j], seed=seeds[j])`` computes, up to floating-point reassociation
    (common.invert_at_cut_batch)."""
    return invert_at_cut_batch(
        problems, prior, cut=0, init=config.init, optimizer=config.optimizer, lr=config.lr,
        steps=config.steps, restarts=config.restarts, seed=seed, phase="csgm", on_event=on_event,
        z_reg=config.z_reg, lbfgs_max_iter=config.lbfgs_max_iter, prune_after=config.prune_after, stop_tol=config.stop_tol,
        screen=config.screen, bf16_share=config.bf16_share,
    )
