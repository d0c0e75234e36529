"""Post-processing applicable to the result of any method.

``backproject`` is the back-projection step of Abu Hussein et al. (IAGAN paper, eq. 10):
x_bp = x_hat + A^+ (y - A x_hat), the point of the affine set {x : A x = y} closest to x_hat.
It removes the part of the estimate's error lying in the row space of A and leaves the null-space
part untouched; with noisy measurements A^+ amplifies the noise, so it is meant for low noise.
"""

from __future__ import annotations

import dataclasses

import torch

from .common import Problem, Result, measurement_loss


def backproject(result: Result, problem: Problem) -> Result:
    """A copy of ``result`` with x_hat <- clamp(A.backproject(x_hat, y), 0, 1).

    Uses the operator's exact pseudo-inverse (closed form or conjugate gradients). Before the
    clamp A x_bp = y; the clamp keeps images in [0, 1] (so A x_bp = y only where no pixel was
    clipped). extra gains backprojected=True, loss_before_bp and loss_after_bp (measurement losses
    ||y - A x||^2 of the estimate before and after). ``losses`` (per-restart) are left as the
    solver reported them."""
    A, y = problem.A, problem.y
    with torch.no_grad():
        before = float(measurement_loss(A, y, result.x_hat)[0])
        x_bp = A.backproject(result.x_hat, y).clamp(0, 1)
        after = float(measurement_loss(A, y, x_bp)[0])
    extra = dict(result.extra, backprojected=True, loss_before_bp=before, loss_after_bp=after)
    return dataclasses.replace(result, x_hat=x_bp.detach(), extra=extra)
