"""CSGM (Bora et al. 2017): min_z ||y - A G(z)||^2 + lambda ||z||^2 over the latent z."""

from __future__ import annotations

from dataclasses import dataclass

from ..events import EventSink, null_sink
from .common import Problem, Result, invert_at_cut


@dataclass
class CSGMConfig:
    """CSGM settings (Bora et al.: Adam lr 0.1, a few hundred steps, restarts; z drawn from the
    prior). z_reg is lambda in lambda ||z||^2 (0 = off)."""

    lr: float = 0.1
    steps: int = 500
    restarts: int = 3
    optimizer: str = "adam"
    init: str = "prior"
    z_reg: float = 0.0
    lbfgs_max_iter: int = 20


def solve(problem: Problem, prior, config: CSGMConfig = CSGMConfig(), on_event: EventSink = null_sink, seed: int = 0) -> Result:
    """Invert ``prior`` from its latent (cut 0); returns the restart with the lowest measurement loss."""
    return invert_at_cut(
        problem, prior, cut=0, init=config.init, optimizer=config.optimizer, lr=config.lr,
        steps=config.steps, restarts=config.restarts, seed=seed, phase="csgm", on_event=on_event,
        z_reg=config.z_reg, lbfgs_max_iter=config.lbfgs_max_iter,
    )
