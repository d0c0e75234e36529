"""Loss terms shared by the solvers, each returning one value per restart (shape (R,)).

* ``mse_loss``: mean squared measurement error ||y - A x||^2 / m. The *mean* (not the sum that
  ``common.measurement_loss`` reports and selects on) so that the weights of the other terms mean
  what they mean in the papers' code (ILO and mGANprior weigh ``F.mse_loss``, a mean, against
  LPIPS and the geodesic term). Adam is insensitive to the overall scale.
* ``lpips_loss``: LPIPS (AlexNet, ``metrics.lpips``) between images, per restart.
* ``measurement_consistent_reference``: the image LPIPS compares against when the measurements
  are not an image: x + A^+(y - A x). For inpainting this is ILO's 'fill' reference (observed
  pixels from y, missing ones from the generated image).
* ``geodesic_loss``: PULSE/ILO's GEOCROSS on w+ latents, along the *layer* axis.
"""

from __future__ import annotations

import torch

from ..errors import BadInput
from ..metrics import lpips as _lpips
from ..operators.base import LinearOperator


def mse_loss(A: LinearOperator, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared measurement error per restart: x (R, C, H, W) in [0, 1], y (1 or R, *meas)
    -> (R,) = ||y - A x_r||^2 / m, m = number of measurements. Differentiable in x."""
    r = A.A(x) - y
    return r.reshape(r.shape[0], -1).pow(2).mean(1)


def lpips_loss(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """LPIPS per restart: x (R, C, H, W), ref (1 or R, C, H, W), images in [0, 1], C in {1, 3},
    H, W >= 31 -> (R,) >= 0 (lower is closer). Differentiable in both arguments; raises
    MissingWeights when the LPIPS backbone is not installed (never uses a random network)."""
    if ref.shape[0] == 1 and x.shape[0] != 1:
        ref = ref.expand(x.shape[0], *ref.shape[1:])
    if ref.shape != x.shape:
        raise BadInput(f"lpips_loss: reference of shape {tuple(ref.shape)} does not match images {tuple(x.shape)}")
    return _lpips(ref, x)


@torch.no_grad()
def measurement_consistent_reference(A: LinearOperator, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The image that agrees with the measurements and equals x elsewhere: x + A^+(y - A x),
    x (R, C, H, W) -> (R, C, H, W), clamped to [0, 1], detached.

    A perceptual loss needs an image to compare with; for operators whose measurements are not
    an image (compressed sensing, superres at a size LPIPS cannot take) this generalises ILO's
    inpainting 'fill' reference (observed pixels from y, the rest from the generated image). It is
    recomputed from the current estimate every step and treated as a constant (ILO's code lets the
    gradient through the filled-in pixels too; through A^+ that is not available for every operator,
    whose pseudo-inverse may run conjugate gradients without autograd)."""
    x = x.detach()
    y = y.expand(x.shape[0], *y.shape[1:]) if y.shape[0] == 1 else y
    return A.backproject(x, y).clamp(0, 1)


def geodesic_loss(w_plus: torch.Tensor) -> torch.Tensor:
    """GEOCROSS (PULSE; ILO's ``loss_geocross``) of w+ latents, per restart: (R, L, D) -> (R,).

    For every pair of layers (i, j) of one restart, d_ij = 2 atan2(||w_i - w_j||, ||w_i + w_j||)
    (the angle between w_i and w_j when they have equal norms), and the loss is
    mean_{i,j} d_ij^2 * D / 8 over all L x L ordered pairs, as in the reference code (which uses
    all pairs, not only consecutive layers, and D = 512). It is computed along the layer axis of
    each restart; the ILO code calls it on ``latent[2 * start_layer:]``, which slices the *batch*
    axis (an empty tensor, hence NaN, for one image after round 0): the intent was
    ``latent[:, 2 * start_layer:]``. Exactly 0 when all layers are equal (the square root is
    guarded so that its gradient there is 0 instead of NaN, where the reference adds 1e-9).
    A single layer (L = 1) gives 0."""
    if w_plus.dim() != 3:
        raise BadInput(f"geodesic_loss takes w+ latents (R, n_layers, dim), got shape {tuple(w_plus.shape)}")
    R, L, D = w_plus.shape
    if L < 2:
        return w_plus.new_zeros(R) + 0.0 * w_plus.sum((1, 2))
    x = w_plus.unsqueeze(1)  # (R, 1, L, D)
    z = w_plus.unsqueeze(2)  # (R, L, 1, D)

    def safe_norm(t: torch.Tensor) -> torch.Tensor:
        s = t.pow(2).sum(-1)
        pos = s > 0
        # sqrt has an infinite derivative at 0: evaluate it only where s > 0 (double-where trick)
        return torch.where(pos, torch.where(pos, s, torch.ones_like(s)).sqrt(), torch.zeros_like(s))

    a, b = safe_norm(x - z), safe_norm(x + z)
    # atan2's gradient is 0/0 at (0, 0) (only when w_i = w_j = 0): the angle is 0 there
    b = torch.where((a == 0) & (b == 0), torch.ones_like(b), b)
    d = 2 * torch.atan2(a, b)  # (R, L, L)
    return (d.pow(2) * D).mean((1, 2)) / 8.0
