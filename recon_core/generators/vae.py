"""Convolutional VAE (AntixK PyTorch-VAE ``vanilla_vae`` layout); the decoder is the prior.

Parameter names equal AntixK's, so its state dicts load unchanged:

- encoder: ``encoder.{i}.0`` Conv2d 3x3 stride 2 (+bias), ``encoder.{i}.1`` BatchNorm2d, LeakyReLU;
  ``fc_mu`` and ``fc_var``: Linear(C_last * r0 * r0 -> latent_dim).
- decoder: ``decoder_input`` Linear(latent_dim -> C_last * r0 * r0), reshaped to (C_last, r0, r0);
  ``decoder.{i}.0`` ConvTranspose2d 3x3 stride 2 (padding 1, output_padding 1) + ``decoder.{i}.1``
  BatchNorm2d + LeakyReLU, through the hidden dims in reverse; ``final_layer.0`` ConvTranspose2d
  (hidden_dims[0] -> hidden_dims[0]) + ``final_layer.1`` BatchNorm2d + LeakyReLU +
  ``final_layer.3`` Conv2d 3x3 to the image channels + Tanh.

r0 = resolution / 2^len(hidden_dims) (AntixK: 64 px, hidden dims [32, 64, 128, 256, 512], r0 = 2).

Blocks: ``decoder_input`` (z -> h), one per ``decoder.{i}``, and ``final_layer`` (h -> img); every
state after block 0 is ``{"h": features}``. The encoder is only used for initialisation
(``encode``, ``init_from_encoder``), never by ``forward``.

Native range: tanh output. AntixK's older training code scaled the data to [-1, 1] (the default
here, native_range=(-1, 1)); its current code trains on ToTensor() images in [0, 1], for which
``native_range=(0, 1)`` is right. The range is a config entry, recorded in our own format.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch
from torch import nn

from ..errors import BadInput
from .base import BlockInfo, GeneratorAdapter, GeneratorMeta, State

RESOLUTIONS = (32, 64, 128)
#: roles of the state entries (base.ROLES)
ROLES = {"z": "latent", "h": "features", "img": "image"}


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    # kernel 3, stride 2, padding 1, output_padding 1 exactly doubles the spatial size
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU())


class VAE(GeneratorAdapter):
    """Convolutional VAE adapter (decoder = generator, encoder for initialisation).

    resolution: 32, 64 or 128; latent_dim: size of z; hidden_dims: encoder widths, first to last
    (the decoder runs them in reverse); channels: image channels (1 or 3); native_range: the range
    the tanh output was trained to represent, (-1, 1) or (0, 1). Latent z ~ N(0, I)."""

    def __init__(
        self,
        resolution: int = 64,
        latent_dim: int = 128,
        hidden_dims: Sequence[int] = (32, 64, 128, 256, 512),
        channels: int = 3,
        native_range: Sequence[float] = (-1.0, 1.0),
        weights_id=None,
    ):
        super().__init__()
        hidden_dims = [int(d) for d in hidden_dims]
        if resolution not in RESOLUTIONS:
            raise BadInput(f"VAE resolution must be one of {RESOLUTIONS}, got {resolution}")
        if latent_dim < 1 or channels not in (1, 3) or not hidden_dims or min(hidden_dims) < 1:
            raise BadInput(
                f"VAE needs latent_dim >= 1, channels in (1, 3) and a non-empty list of positive hidden_dims; "
                f"got latent_dim={latent_dim} channels={channels} hidden_dims={hidden_dims}"
            )
        if resolution % 2 ** len(hidden_dims):
            raise BadInput(f"VAE resolution {resolution} is not divisible by 2^{len(hidden_dims)} (one halving per hidden dim)")
        lo, hi = (float(v) for v in native_range)
        if not hi > lo:
            raise BadInput(f"VAE native_range must be (lo, hi) with hi > lo, got {tuple(native_range)}")
        self.latent_dim, self.hidden_dims, self.channels = latent_dim, hidden_dims, channels
        self.r0 = resolution // 2 ** len(hidden_dims)
        flat = hidden_dims[-1] * self.r0 * self.r0

        enc, c_in = [], channels
        for d in hidden_dims:
            enc.append(nn.Sequential(nn.Conv2d(c_in, d, 3, 2, 1), nn.BatchNorm2d(d), nn.LeakyReLU()))
            c_in = d
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_var = nn.Linear(flat, latent_dim)

        self.decoder_input = nn.Linear(latent_dim, flat)
        rev = hidden_dims[::-1]
        self.decoder = nn.Sequential(*[_up_block(rev[i], rev[i + 1]) for i in range(len(rev) - 1)])
        last = hidden_dims[0]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(last, last, 3, 2, 1, output_padding=1),
            nn.BatchNorm2d(last),
            nn.LeakyReLU(),
            nn.Conv2d(last, channels, 3, padding=1),
            nn.Tanh(),
        )
        self.meta = GeneratorMeta(
            architecture="vae",
            resolution=resolution,
            channels=channels,
            latent_kind="normal",
            native_range=(lo, hi),
            weights_id=weights_id,
            config={
                "resolution": resolution,
                "latent_dim": latent_dim,
                "hidden_dims": list(hidden_dims),
                "channels": channels,
                "native_range": [lo, hi],
            },
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    # ---- decoder = the generator -------------------------------------------------------------
    def block_infos(self) -> List[BlockInfo]:
        rev = self.hidden_dims[::-1]
        r = self.r0
        prev = {"z": (self.latent_dim,)}
        infos = [BlockInfo("decoder_input", prev, {"h": (rev[0], r, r)}, ROLES)]
        prev = infos[0].out_shapes
        for i in range(len(rev) - 1):
            r *= 2
            out = {"h": (rev[i + 1], r, r)}
            infos.append(BlockInfo(f"decoder.{i}", prev, out, ROLES))
            prev = out
        infos.append(BlockInfo("final_layer", prev, {"img": (self.channels, 2 * r, 2 * r)}, ROLES))
        return infos

    def run_block(self, i: int, state: State) -> State:
        if i == 0:
            z = state["z"]
            h = self.decoder_input(z.reshape(z.shape[0], self.latent_dim))
            return OrderedDict([("h", h.reshape(z.shape[0], self.hidden_dims[-1], self.r0, self.r0))])
        if i <= len(self.decoder):
            return OrderedDict([("h", self.decoder[i - 1](state["h"]))])
        return OrderedDict([("img", self.final_layer(state["h"]))])

    # ---- encoder: initialisation only --------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of a native-range image batch x (N, C, R, R) -> (mu, logvar),
        each (N, latent_dim), as AntixK's ``encode``."""
        h = torch.flatten(self.encoder(x), start_dim=1)
        return self.fc_mu(h), self.fc_var(h)

    def init_from_encoder(self, x: torch.Tensor, c: int = 0) -> State:
        """An initial state at cut c from images x in [0, 1] (N, C, R, R): the posterior mean
        z = mu(x), pushed through blocks 0..c-1. Returns detached tensors (ready to be made
        leaves), e.g. ``g.init_from_encoder(A_dagger(y).clamp(0, 1), c)``."""
        self.check_cut(c)
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.meta.resolution, self.meta.resolution):
            raise BadInput(
                f"VAE encoder expects images of shape (N, {self.channels}, {self.meta.resolution}, "
                f"{self.meta.resolution}), got {tuple(x.shape)}"
            )
        lo, hi = self.meta.native_range
        with torch.no_grad():
            mu, _ = self.encode(x.to(**self._placement()) * (hi - lo) + lo)
            state = self.head(OrderedDict([("z", mu)]), c)
        return OrderedDict((k, v.detach()) for k, v in state.items())
