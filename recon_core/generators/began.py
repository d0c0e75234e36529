"""BEGAN generator (the decoder of Berthelot et al. 2017), with the paper's skip connections.

Layout: ``h0 = fc(z)`` reshaped to (n, 8, 8); then one conv stage per resolution 8, 16, ..., R.
Each stage is conv3x3 -> ELU -> conv3x3 -> ELU, followed by a nearest x2 upsampling except in the
last stage, which ends with a conv3x3 to the image channels instead. Skip connections (the paper's
"upsampled h0"): the input of every stage after the first is ``concat(h, upsample(h0))``, so the
first convolution of those stages takes 2n channels; the 8x8 stage takes h0 alone (there is
nothing to skip over yet).

Blocks: block 0 is ``fc`` (z -> h0); block k >= 1 is the stage at resolution 8 * 2^(k-1). The
state entering block k >= 1 is ``{"h": (n, r, r), "skip": (n, 8, 8)}``: the skip input is carried
unchanged through the blocks, so a cut exposes the features *and* the skip input as two
independent optimisable entries (as Generator Surgery does for BEGAN). In the unmodified forward
pass both start equal to h0.

Output: no final activation (the BEGAN reference implementations end with a plain convolution);
native range (-1, 1) -- the data range the project trains on -- mapped to [0, 1] and clamped by
``to_unit``. Latent: 64-d uniform [-1, 1] by default.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInput
from .base import BlockInfo, GeneratorAdapter, GeneratorMeta, State

RESOLUTIONS = (32, 64, 128)
#: spatial size of the first feature map h0 (fixed by the paper's architecture)
BASE_RES = 8
#: roles of the state entries (base.ROLES): h0 reaches every stage through the skip entry
ROLES = {"z": "latent", "h": "features", "skip": "skip", "img": "image"}


class BEGANStage(nn.Module):
    """One resolution stage: conv3x3 + ELU, conv3x3 + ELU (n filters each).

    in_channels is n for the 8x8 stage and 2n for the later ones (features + upsampled h0)."""

    def __init__(self, in_channels: int, n: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, n, 3, 1, 1)
        self.conv2 = nn.Conv2d(n, n, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, r, r) -> (N, n, r, r)."""
        return F.elu(self.conv2(F.elu(self.conv1(x))))


class BEGAN(GeneratorAdapter):
    """BEGAN decoder adapter.

    resolution: 32, 64 or 128 (stages at 8, 16, ..., resolution); z_dim: latent size (64 in the
    paper); n: number of filters of every convolution (64 or 128 in the paper); channels: image
    channels (1 or 3). Latent z ~ U[-1, 1]^z_dim. Native output range (-1, 1), no final
    activation; ``tail`` clamps to [0, 1]."""

    def __init__(self, resolution: int = 64, z_dim: int = 64, n: int = 64, channels: int = 3, weights_id=None):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise BadInput(f"BEGAN resolution must be one of {RESOLUTIONS}, got {resolution}")
        if z_dim < 1 or n < 1 or channels not in (1, 3):
            raise BadInput(f"BEGAN needs z_dim >= 1, n >= 1 and channels in (1, 3); got z_dim={z_dim} n={n} channels={channels}")
        self.z_dim, self.n, self.channels = z_dim, n, channels
        self.n_stages = int(math.log2(resolution // BASE_RES)) + 1
        self.fc = nn.Linear(z_dim, n * BASE_RES * BASE_RES)
        self.stages = nn.ModuleList([BEGANStage(n if k == 0 else 2 * n, n) for k in range(self.n_stages)])
        self.to_rgb = nn.Conv2d(n, channels, 3, 1, 1)
        self.meta = GeneratorMeta(
            architecture="began",
            resolution=resolution,
            channels=channels,
            latent_kind="uniform",
            native_range=(-1.0, 1.0),
            weights_id=weights_id,
            config={"resolution": resolution, "z_dim": z_dim, "n": n, "channels": channels},
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    def block_infos(self) -> List[BlockInfo]:
        skip = (self.n, BASE_RES, BASE_RES)
        infos = [BlockInfo("fc", {"z": (self.z_dim,)}, {"h": skip, "skip": skip}, ROLES)]
        for k in range(self.n_stages):
            r = BASE_RES * 2**k
            last = k == self.n_stages - 1
            out = {"img": (self.channels, r, r)} if last else {"h": (self.n, 2 * r, 2 * r), "skip": skip}
            infos.append(BlockInfo(f"b{r}", {"h": (self.n, r, r), "skip": skip}, out, ROLES))
        return infos

    def run_block(self, i: int, state: State) -> State:
        if i == 0:
            z = state["z"]
            h0 = self.fc(z.reshape(z.shape[0], self.z_dim)).reshape(z.shape[0], self.n, BASE_RES, BASE_RES)
            # the same tensor twice: a cut after this block makes them two independent variables
            return OrderedDict([("h", h0), ("skip", h0)])
        k = i - 1
        h, skip = state["h"], state["skip"]
        if k == 0:
            x = h
        else:
            r = h.shape[-1]
            x = torch.cat([h, F.interpolate(skip, size=(r, r), mode="nearest")], dim=1)
        x = self.stages[k](x)
        if k == self.n_stages - 1:
            return OrderedDict([("img", self.to_rgb(x))])
        return OrderedDict([("h", F.interpolate(x, scale_factor=2, mode="nearest")), ("skip", skip)])
