"""Super-resolution: anti-aliased bicubic downsampling by an integer factor.

A = ``interpolate(x, size=(H/f, W/f), mode="bicubic", antialias=True, align_corners=False)``,
which matches PIL's ``Image.resize(..., BICUBIC)`` on 8-bit images to within 1/255 except at ~0.1%
of pixels next to saturated edges (up to ~6/255 there): PIL rounds and clips to 8 bits between its
horizontal and vertical passes, which cuts the bicubic overshoot; a linear operator cannot clip.
The map is linear, so its exact adjoint is the vector-Jacobian product of A, taken with autograd.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from ..errors import OperatorError, is_int
from .base import LinearOperator, register

FACTORS = range(2, 17)


def vjp_adjoint(A, y: torch.Tensor, x_shape) -> torch.Tensor:
    """A^T y for a linear map A, as the vector-Jacobian product grad_x <A x, y> (at x = 0).

    Exact (up to rounding) for any linear A written in torch ops. Works under ``no_grad`` and
    ``inference_mode``; keeps the graph to y when y requires grad. x_shape: (N, C, H, W)."""
    with torch.inference_mode(False), torch.enable_grad():
        if y.is_inference():  # inference tensors cannot enter autograd: copy out of that mode
            y = y.clone()
        x0 = torch.zeros(x_shape, dtype=y.dtype, device=y.device, requires_grad=True)
        (g,) = torch.autograd.grad(A(x0), x0, grad_outputs=y, create_graph=y.requires_grad)
    return g


@register("superres")
class SuperRes(LinearOperator):
    """Bicubic anti-aliased downsampling: (N, C, H, W) -> (N, C, H/f, W/f), ``factor`` f in 2..16
    dividing H and W. Preserves the input dtype.

    ``A_dagger`` is NOT the pseudo-inverse: it is plain bicubic upsampling (the usual "bicubic"
    baseline), documented as an approximation. ``backproject`` uses the exact pseudo-inverse
    (conjugate gradients on A A^T, which is well conditioned). ``preview`` shows the low-resolution
    measurements enlarged by nearest-neighbour repetition."""

    previewable = True

    def __init__(self, img_shape, *, seed: int = 0, device="cpu", factor=4):
        super().__init__(img_shape, seed=seed, device=device)
        C, H, W = self.img_shape
        if not is_int(factor):
            raise OperatorError(f"superres: factor must be an integer in 2..16, got {factor!r}")
        factor = int(factor)
        if factor not in FACTORS:
            raise OperatorError(f"superres: factor must be in 2..16, got {factor}")
        if H % factor or W % factor:
            raise OperatorError(f"superres: factor {factor} must divide the image size {H}x{W}")
        self.factor = factor
        self.meas_shape = (C, H // factor, W // factor)

    def params(self) -> dict:
        return {"factor": self.factor}

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.meas_shape[1:], mode="bicubic", antialias=True, align_corners=False)

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        return vjp_adjoint(self._A, y, (y.shape[0],) + self.img_shape)

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Approximate inverse: bicubic upsampling (no anti-aliasing) of y to (H, W). Not A^+;
        ``backproject`` uses the exact pseudo-inverse."""
        y = self._check_y(y)
        return F.interpolate(y, size=self.img_shape[1:], mode="bicubic", align_corners=False)

    def preview(self, y: torch.Tensor) -> torch.Tensor:
        """y enlarged to (N, C, H, W) by nearest-neighbour repetition, clamped to [0, 1]."""
        y = self._check_y(y)
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1).clamp(0, 1)
