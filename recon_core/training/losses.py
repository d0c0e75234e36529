"""Training losses of every family. Inputs are discriminator outputs (logits, (N,)) or images in
the discriminator's range [-1, 1] (N, C, R, R); every loss is a scalar, mean over the batch.

- non-saturating GAN (Goodfellow et al. 2014, sec. 3; the "logistic" loss of StyleGAN2 and its
  rosinality/RTIL reference code): D: softplus(-D(x)) + softplus(D(G(z))); G: softplus(-D(G(z))).
- R1 (Mescheder et al. 2018): (gamma / 2) E ||grad_x D(x)||^2 on real images.
- hinge (Lim & Ye 2017; BigGAN): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)).
- BEGAN (Berthelot et al. 2017, eqs. 3-4): L(v) = mean |v - AE(v)| (L1, eta = 1);
  L_D = L(x) - k_t L(G(z)); L_G = L(G(z)); k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1);
  convergence M = L(x) + |gamma L(x) - L(G(z))|.
- VAE ELBO (Kingma & Welling 2014): Gaussian decoder of fixed std sigma:
  ||x - x_hat||^2 / (2 sigma^2) summed over pixels, + KL(q(z|x) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar));
  both per image, averaged over the batch (the negative ELBO up to a constant).

RTIL: the plain and perturbed generators' losses are averaged (``average``); for the
discriminator the real term counts once and the fake terms are averaged, exactly what the
reference code's 1/K * sum_k d_loss(real, fake_k) amounts to.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def average(losses: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of a list of scalar losses."""
    return torch.stack(list(losses)).mean()


# ---- non-saturating -----------------------------------------------------------------------------
def ns_d_real(real_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating D loss on real logits: E softplus(-D(x))."""
    return F.softplus(-real_logits).mean()


def ns_d_fake(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating D loss on fake logits: E softplus(D(G(z)))."""
    return F.softplus(fake_logits).mean()


def ns_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: E softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over the batch (without the gamma / 2 factor); ``real_images`` must
    require grad and have produced ``real_logits``. Differentiable (create_graph)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


# ---- hinge ----------------------------------------------------------------------------------------
def hinge_d_real(real_logits: torch.Tensor) -> torch.Tensor:
    """Hinge D loss on real logits: E relu(1 - D(x))."""
    return F.relu(1.0 - real_logits).mean()


def hinge_d_fake(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge D loss on fake logits: E relu(1 + D(G(z)))."""
    return F.relu(1.0 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge G loss: -E D(G(z))."""
    return -fake_logits.mean()


# ---- BEGAN ----------------------------------------------------------------------------------------
def began_recon(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """BEGAN's autoencoder loss L(v) = mean |v - AE(v)| (pixel mean, batch mean)."""
    return (x - x_rec).abs().mean()


def began_update(k: float, loss_real: float, loss_fake: float, gamma: float, lambda_k: float) -> Tuple[float, float]:
    """Proportional control of the equilibrium (eq. 4): returns (k_{t+1} clipped to [0, 1],
    convergence measure M)."""
    balance = gamma * loss_real - loss_fake
    k_new = min(max(k + lambda_k * balance, 0.0), 1.0)
    return k_new, loss_real + abs(balance)


# ---- VAE ------------------------------------------------------------------------------------------
def vae_terms(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, sigma: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, KL), each summed per image and averaged over the batch; x, x_hat in the
    decoder's native range, sigma the decoder std in the same units."""
    rec = (x - x_hat).pow(2).reshape(x.shape[0], -1).sum(1).mean() / (2.0 * sigma**2)
    return rec, kl_normal(mu, logvar)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
