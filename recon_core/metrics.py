"""Image-quality metrics: PSNR, MSE, SSIM, LPIPS (real ImageNet AlexNet backbone), residual.

All image metrics take NCHW float tensors in [0, 1] (a single CHW image is accepted too) and
return one value per image, shape (N,).  ``compute_metrics`` packs them for one image into the
plain-float dict that ends up in ``metrics.json``.

LPIPS is computed by the network of ``recon_core.perceptual`` (offline weights only): without
its backbone ``lpips`` raises ``MissingWeights`` and ``compute_metrics`` reports
``"lpips": None`` with a reason -- LPIPS is never computed with a random backbone.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from recon_core.errors import BadInput, CheckpointError, MissingWeights
from recon_core.images import image_pair
# re-exported: the LPIPS network's names were metrics' own before it moved to perceptual.py
from recon_core.perceptual import BACKBONE_INSTALL_HINT, LPIPSNet, check_lpips_input, get_lpips_net, load_restricted_pickle

__all__ = [
    "mse",
    "psnr",
    "psnr_summary",
    "ssim",
    "residual",
    "lpips",
    "LPIPSNet",
    "get_lpips_net",
    "compute_metrics",
    "load_restricted_pickle",
    "BACKBONE_INSTALL_HINT",
]


# ---------------------------------------------------------------------------------------------
# MSE / PSNR
# ---------------------------------------------------------------------------------------------
def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (N, C, H, W) x2 -> (N,)."""
    x, x_hat = image_pair(x, x_hat)
    return (x - x_hat).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, data range 1 (images in [0, 1]): -> (N,); +inf where x == x_hat."""
    return -10.0 * torch.log10(mse(x, x_hat))  # log10(0) = -inf -> +inf, no special case


def psnr_summary(mse_values) -> Dict[str, float]:
    """Both set averages METHODS.md asks for, from per-image MSEs (data range 1).

    ``mean_psnr`` = mean of per-image PSNR; ``psnr_of_mean_mse`` = 10 log10(1 / mean MSE)."""
    m = torch.as_tensor(mse_values, dtype=torch.float64).flatten()
    if m.numel() == 0:
        raise BadInput("psnr_summary needs at least one MSE value")
    return {
        "mean_psnr": float((-10.0 * torch.log10(m)).mean()),
        "psnr_of_mean_mse": float(-10.0 * torch.log10(m.mean())),
    }


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------
# Hand-written on purpose: no well-kept SSIM is a runtime dependency (torchmetrics/kornia are
# not, scikit-image is test-only and works on numpy without gradients or batching).  This is the
# standard Wang et al. (2004) SSIM: 11x11 gaussian window, sigma 1.5, K1=0.01, K2=0.03, data
# range 1, population (not sample) covariances, SSIM map averaged over the "valid" region (where
# the window fits) and over channels.  That is exactly skimage's structural_similarity(
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1): skimage filters
# with reflect padding and then crops (win_size-1)/2 pixels, which leaves the valid region only.
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """SSIM per image (gaussian window 11x11, sigma 1.5, data range 1, channel mean): -> (N,).

    Images must be at least 11x11.  Differentiable."""
    x, x_hat = image_pair(x, x_hat)
    n, c, h, w = x.shape
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise BadInput(f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN}, got {h}x{w}")
    # float64 where available: the variances are differences of nearly equal numbers
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    x, x_hat = x.to(dtype), x_hat.to(dtype)
    win = _gaussian_window(_SSIM_WIN, _SSIM_SIGMA, x.device, dtype)
    win = win.expand(c, 1, _SSIM_WIN, _SSIM_WIN)

    def filt(t):  # depthwise valid convolution
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = filt(x), filt(x_hat)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(x_hat * x_hat) - mu_y * mu_y
    sxy = filt(x * x_hat) - mu_x * mu_y
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # (K * data_range)^2 with data_range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# measurement residual
# ---------------------------------------------------------------------------------------------
def residual(y: torch.Tensor, A_x_hat: torch.Tensor) -> torch.Tensor:
    """Relative measurement residual ||y - A x_hat|| / ||y|| per sample: (N, ...) x2 -> (N,).

    Works for real and complex measurements.  Where ||y|| = 0 the result is 0 if A x_hat = 0
    too, else +inf."""
    if y.shape != A_x_hat.shape:
        raise BadInput(f"y and A(x_hat) differ in shape: {tuple(y.shape)} vs {tuple(A_x_hat.shape)}")
    if y.dim() < 2:  # a single unbatched vector
        y, A_x_hat = y.unsqueeze(0), A_x_hat.unsqueeze(0)
    num = torch.linalg.vector_norm((y - A_x_hat).flatten(1), dim=1)
    den = torch.linalg.vector_norm(y.flatten(1), dim=1)
    out = num / den
    return torch.where(den > 0, out, torch.where(num > 0, torch.full_like(out, math.inf), torch.zeros_like(out)))


def lpips(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (AlexNet) per image, lower is better: [0,1] images (N, 1|3, H>=31, W>=31) -> (N,).

    Differentiable (usable as a loss: gradients flow to x_hat); runs on x_hat's device."""
    x, x_hat = check_lpips_input(x, x_hat)  # before loading: bad input is reported as such
    return get_lpips_net(x_hat.device)(x, x_hat)


# ---------------------------------------------------------------------------------------------
# everything for one image
# ---------------------------------------------------------------------------------------------
def compute_metrics(x: torch.Tensor, x_hat: torch.Tensor, y: Optional[torch.Tensor] = None, A=None) -> dict:
    """All metrics of one image as floats: psnr, ssim, lpips, mse, residual.

    ``x``, ``x_hat``: (C, H, W) or (1, C, H, W) in [0, 1].  ``A`` is a LinearOperator (or any
    callable x -> y); ``residual`` is None unless both ``y`` and ``A`` are given.  When LPIPS
    cannot be computed (backbone not installed, image too small) ``lpips`` is None and
    ``lpips_reason`` says why; SSIM likewise with ``ssim_reason`` for images under 11x11."""
    x, x_hat = image_pair(x, x_hat)
    if x.shape[0] != 1:
        raise BadInput(f"compute_metrics takes one image, got a batch of {x.shape[0]}")
    out: dict = {}
    with torch.no_grad():
        x, x_hat = x.detach(), x_hat.detach().to(x.device)
        m = float(mse(x, x_hat)[0])
        out["psnr"] = float(psnr(x, x_hat)[0])
        try:
            out["ssim"] = float(ssim(x, x_hat)[0])
        except BadInput as e:
            out["ssim"], out["ssim_reason"] = None, str(e)
        try:
            out["lpips"] = float(lpips(x, x_hat)[0])
        except (MissingWeights, BadInput, CheckpointError) as e:
            out["lpips"], out["lpips_reason"] = None, str(e)
        out["mse"] = m
        out["residual"] = None
        if y is not None and A is not None:
            A_x_hat = A.A(x_hat) if hasattr(A, "A") else A(x_hat)
            yb = y.unsqueeze(0) if y.dim() == A_x_hat.dim() - 1 else y
            out["residual"] = float(residual(yb.to(A_x_hat.device), A_x_hat)[0])
    return out
