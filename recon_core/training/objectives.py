"""Training objectives: one class per loss family, each behind one interface, so the training loop
never branches on the family (the layout of NVlabs StyleGAN2-ADA's ``training/loss.py``).

An objective lists the ``phases`` of one training step (``"D"`` discriminator updates, then the
``"G"`` generator update) and gives each phase's ``loss(phase, t, real, y)`` -> (scalar loss, stats).
Unlike StyleGAN2-ADA's ``accumulate_gradients`` it does not call backward: the trainer runs the loss
inside a DistributedDataParallel unit and then backward + the optimiser step, so DDP sees one
forward per backward. ``t`` is the Trainer: its generator ``g``, discriminator ``d``, its RTIL
family of fake batches ``fakes()`` and its random streams. ``end_step`` updates state kept across
steps (BEGAN's k) from the step's averaged statistics; ``state_dict``/``load_state_dict`` carry it
through the trainer state.

Families (formulas: losses.py; which architecture uses which: the registry):

- ``ns``: non-saturating GAN loss, with lazy R1 on the reals every ``r1_every`` steps when
  ``r1_gamma`` > 0 (scaled by ``r1_every``, in the same D update);
- ``hinge``: hinge GAN loss (BigGAN), ``d_steps`` D updates per G update;
- ``began``: BEGAN's autoencoder losses and its proportional control of k;
- ``elbo``: the VAE's negative ELBO; no discriminator.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from ..errors import UnknownName
from . import losses as L
from .rtil import dirichlet_flat, ilo_image, mgan_image, render

Stats = Dict[str, torch.Tensor]


class Objective:
    """Base of the loss families. ``hp``: the run's resolved hyperparameters."""

    #: whether the family trains a discriminator
    uses_discriminator = True

    def __init__(self, hp: dict):
        self.hp = hp

    def phases(self) -> Tuple[str, ...]:
        """The updates of one training step, in order: ``d_steps`` x "D", then "G"."""
        return ("D",) * int(self.hp["d_steps"]) + ("G",)

    def reads_real(self, phase: str) -> bool:
        """Whether ``phase`` takes a batch of real images (GANs: only the D updates)."""
        return phase == "D"

    def loss(self, phase: str, t, real: Optional[torch.Tensor], y: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Stats]:
        """(loss, statistics) of ``phase`` ("D" or "G"); ``real``, ``y``: the real batch in [-1, 1]
        and its labels when ``reads_real(phase)``, else None."""
        return self.d_loss(t, real, y) if phase == "D" else self.g_loss(t)

    def d_loss(self, t, real: torch.Tensor, y: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Stats]:
        """The discriminator's loss on a real batch and the trainer's fakes."""
        raise NotImplementedError

    def g_loss(self, t) -> Tuple[torch.Tensor, Stats]:
        """The generator's loss on the trainer's fakes."""
        raise NotImplementedError

    def end_step(self, stats: Dict[str, float]) -> Dict[str, float]:
        """Update the state kept across steps from the step's statistics (averaged over ranks);
        returns statistics to add to the step's."""
        return {}

    def state_dict(self) -> dict:
        """The objective's entries of the trainer state. Its format has one slot, "k" (BEGAN's
        k_t), in every run: the families without state keep it at 0."""
        return {"k": 0.0}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` saved (a trainer state)."""


class _LogitGAN(Objective):
    """A GAN whose discriminator returns logits; subclasses give the three loss terms."""

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on the logits of real images."""
        raise NotImplementedError

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on the logits of fakes."""
        raise NotImplementedError

    def g_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """G's loss on the logits of fakes."""
        raise NotImplementedError

    def r1_due(self, step: int) -> bool:
        """Whether the D update of ``step`` adds the R1 penalty (never by default)."""
        return False

    def d_loss(self, t, real, y):
        """Real term once, the fake terms averaged over the RTIL family (+ R1 when due)."""
        with torch.no_grad():
            fakes = t.fakes()
        r1 = self.r1_due(t.step)
        if r1:
            real = real.detach().requires_grad_(True)
        real_logits = t.d(real, y)
        loss = self.d_real(real_logits) + L.average([self.d_fake(t.d(f, yf)) for f, yf in fakes])
        stats = {"real_score": real_logits.detach().mean()}
        if r1:
            pen = L.r1_penalty(real_logits, real)
            # lazy regularisation: every r1_every steps, scaled by r1_every
            loss = loss + float(self.hp["r1_gamma"]) / 2 * pen * int(self.hp["r1_every"])
            stats["r1"] = pen.detach()
        return loss, stats

    def g_loss(self, t):
        """The G term averaged over the RTIL family."""
        return L.average([self.g_fake(t.d(f, yf)) for f, yf in t.fakes()]), {}


class NonSaturatingR1(_LogitGAN):
    """Non-saturating GAN loss with lazy R1 (``r1_gamma`` > 0, every ``r1_every`` steps)."""

    def d_real(self, logits):
        """softplus(-D(x))."""
        return L.ns_d_real(logits)

    def d_fake(self, logits):
        """softplus(D(G(z)))."""
        return L.ns_d_fake(logits)

    def g_fake(self, logits):
        """softplus(-D(G(z)))."""
        return L.ns_g(logits)

    def r1_due(self, step: int) -> bool:
        """R1 is on (r1_gamma > 0) and ``step`` is a multiple of r1_every."""
        return float(self.hp.get("r1_gamma") or 0) > 0 and step % int(self.hp["r1_every"]) == 0


class Hinge(_LogitGAN):
    """Hinge GAN loss (BigGAN)."""

    def d_real(self, logits):
        """relu(1 - D(x))."""
        return L.hinge_d_real(logits)

    def d_fake(self, logits):
        """relu(1 + D(G(z)))."""
        return L.hinge_d_fake(logits)

    def g_fake(self, logits):
        """-D(G(z))."""
        return L.hinge_g(logits)


class BEGANObjective(Objective):
    """BEGAN: the discriminator is an autoencoder; k_t balances its real and fake terms and is
    updated after every step from the step's losses (eq. 4), starting at ``k0``."""

    def __init__(self, hp: dict):
        super().__init__(hp)
        self.k = float(hp["k0"])

    def d_loss(self, t, real, y):
        """L(x) - k_t L(G(z)), the fake term averaged over the RTIL family."""
        with torch.no_grad():
            fakes = t.fakes()
        l_real = L.began_recon(real, t.d(real))
        l_fake = L.average([L.began_recon(f, t.d(f)) for f, _ in fakes])
        return l_real - self.k * l_fake, {"loss_real": l_real.detach(), "loss_fake_d": l_fake.detach()}

    def g_loss(self, t):
        """L(G(z)) averaged over the RTIL family."""
        loss = L.average([L.began_recon(f, t.d(f)) for f, _ in t.fakes()])
        return loss, {"loss_fake_g": loss.detach()}

    def end_step(self, stats):
        """k_{t+1} and the convergence measure, from the step's real and G losses."""
        self.k, convergence = L.began_update(self.k, stats["loss_real"], stats["loss_fake_g"],
                                             float(self.hp["began_gamma"]), float(self.hp["lambda_k"]))
        return {"convergence": convergence, "k": self.k}

    def state_dict(self):
        """{"k": k_t}."""
        return {"k": self.k}

    def load_state_dict(self, state):
        """Restore k_t."""
        self.k = float(state["k"])


class ELBO(Objective):
    """The VAE's negative ELBO (Gaussian decoder of std ``vae_sigma`` in [0, 1] units, KL weight
    ``kl_weight``). With RTIL the reconstruction term is averaged over the family of decoders:
    perturbed decoders reconstruct x from its posterior sample (the same sample for each), the
    mixed decoder mixes N fresh posterior samples of x."""

    uses_discriminator = False

    def phases(self):
        """One generator (encoder + decoder) update."""
        return ("G",)

    def reads_real(self, phase):
        """The update reconstructs a real batch."""
        return True

    def loss(self, phase, t, real, y):
        """Negative ELBO of the real batch; stats: the reconstruction and KL terms."""
        g = t.g
        lo, hi = g.meta.native_range
        native = (real + 1) / 2 * (hi - lo) + lo
        mu, logvar = g.encode(native)
        std = torch.exp(0.5 * logvar)
        sigma = 2.0 * float(self.hp["vae_sigma"])  # [0, 1] units -> the [-1, 1] range of render()

        def posterior():
            return mu + t.randn((g.latent_dim,)) * std

        def rec(image):
            return L.vae_terms(real, image, mu, logvar, sigma)[0]

        z = posterior()
        recs = [rec(render(g, OrderedDict(z=z), 0))]
        if t.cfg.mode == "rtil-ilo":
            nested = bool(self.hp["ilo_nested"])
            for k in range(1, len(t.layers) + 1):
                ls = t.layers[:k] if nested else t.layers[k - 1:k]
                recs.append(rec(ilo_image(g, OrderedDict(z=z), 0, ls, t.sigma, t.randn)))
        elif t.cfg.mode == "rtil-mgan":
            for n in t.codes:
                zs = torch.cat([posterior() for _ in range(n)])
                alpha = dirichlet_flat(t.b_local, n, t.rand).to(t.device)
                recs.append(rec(mgan_image(g, OrderedDict(z=zs), 0, t.mgan_layer, n, alpha)))
        rec_loss = L.average(recs)
        kl = L.kl_normal(mu, logvar)
        return rec_loss + float(self.hp["kl_weight"]) * kl, {"rec": rec_loss.detach(), "kl": kl.detach()}


#: loss family name (the registry entries' ``objective``) -> class
OBJECTIVES = {"ns": NonSaturatingR1, "hinge": Hinge, "began": BEGANObjective, "elbo": ELBO}


def build_objective(name: str, hp: dict) -> Objective:
    """The objective of family ``name`` with hyperparameters ``hp``."""
    if name not in OBJECTIVES:
        raise UnknownName("training objective", name, OBJECTIVES)
    return OBJECTIVES[name](hp)
