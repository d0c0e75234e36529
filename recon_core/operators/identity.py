"""Identity / denoising operator: A = I."""

from __future__ import annotations

import torch

from .base import LinearOperator, register


@register("identity", "denoise")
class Identity(LinearOperator):
    """A = I; meas_shape = img_shape. With noise this is denoising; without, it measures the
    prior's representation error."""

    previewable = True

    def __init__(self, img_shape, *, seed: int = 0, device="cpu"):
        super().__init__(img_shape, seed=seed, device=device)
        self.meas_shape = self.img_shape

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _AAt_solve(self, r, tol=0.0, max_iter=0):
        return r
