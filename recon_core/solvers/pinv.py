"""The ``pinv`` baseline: x_hat = clamp(A^dagger y, 0, 1), with each operator's documented
``A_dagger``: zero-fill for inpainting, bicubic upsampling for super-resolution, zero-fill +
inverse FFT for Fourier sampling, a Tikhonov-regularised inverse filter for blur, the exact
pseudo-inverse A^T (A A^T)^-1 for Gaussian/circulant compressed sensing (``A_dagger`` of each
operator says which).

No prior, no optimisation, no restarts: ``solve`` takes the ``prior`` argument of the common
solver signature and ignores it (the CLI may pass None), and the config has no settings.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..events import Event, EventSink, null_sink
from .common import MethodConfig, Problem, Result, measurement_loss, timer


#: capability: this method uses no generator (the CLI loads none)
NEEDS_PRIOR = False

@dataclass
class PinvConfig(MethodConfig):
    """The pinv baseline has no settings (bicubic upsampling for superres is the IAGAN paper's
    "Bicubic" column; zero-fill + inverse FFT its "naive IFFT")."""


def solve(problem: Problem, prior=None, config: PinvConfig = PinvConfig(), on_event: EventSink = null_sink,
          seed: int = 0) -> Result:
    """x_hat = clamp(A.A_dagger(y), 0, 1): (1, C, H, W); losses: [its measurement loss]."""
    clock = timer()
    A, y = problem.A, problem.y
    with torch.no_grad():
        x_hat = A.A_dagger(y).clamp(0, 1)
        loss = float(measurement_loss(A, y, x_hat)[0])
    on_event(Event(phase="pinv", step=1, total=1, loss=loss))
    return Result(x_hat=x_hat, state=OrderedDict(), losses=[loss], best_restart=0,
                  history=[{"step": 1, "loss": loss}], wall_time=clock())
