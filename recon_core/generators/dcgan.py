"""DCGAN generator (Radford et al. 2016) in the pytorch/examples layout.

Layers live in ``self.main`` (an ``nn.Sequential``) at the same indices as pytorch/examples'
``netG`` and the PyTorch DCGAN faces tutorial, so their state dicts load unchanged:
``main.{0,3,6,9,12}.weight`` (ConvTranspose2d, no bias) and BatchNorm at ``main.{1,4,7,10}`` for
64 px. Blocks: block 0 maps z (N, nz) to (N, ngf*2^(L-2), 4, 4); each following block doubles the
resolution; the last block is ConvTranspose + tanh. Cut c optimises the input of block c.
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
#: roles of the state entries (base.ROLES)
ROLES = {"z": "latent", "h": "features", "img": "image"}


def deconv4x4_s2_as_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=2, padding=1)`` for a 4 x 4 kernel, written as a
    matrix product and ``F.fold`` (col2im): x (N, C_in, H, W), weight (C_in, C_out, 4, 4) ->
    (N, C_out, 2H, 2W); differentiable in both, equal up to float rounding (tested).

    Why not the library's transposed convolution: on a CPU, oneDNN's kernel for a tiny input
    (the 4 x 4 input of DCGAN's block 1) spends its time on overhead, not arithmetic; the product
    reads the weights once and is 1.3-3.6x faster forward + backward for one row (measured by
    hand with 1 and 2 threads on this project's CPU, 2026-12-02: 512 -> 256 channels 8.9 vs 3.8
    ms at 1 thread, 1024 -> 512 63 vs 20 ms), and 1.7x for 3 rows in bfloat16 (the fast
    preset's first evaluations: 3.7 vs 6.3 ms, 2026-12-03). The rows' pixels go in as one 2-D
    (N H W, C_in) operand: a batched product over the rows' strided views has a backward that
    runs 5-10x slower than the library's kernel in bfloat16. For many rows the library's kernel
    wins, so ``DCGAN.run_block`` uses this only there (see ``_use_matmul``)."""
    n, c_in, h, w = x.shape
    rows = x.reshape(n, c_in, h * w).transpose(1, 2).reshape(n * h * w, c_in)
    cols = (rows @ weight.reshape(c_in, -1)).reshape(n, h * w, -1)  # (N, HW, C_out*16)
    return F.fold(cols.transpose(1, 2), (2 * h, 2 * w), 4, stride=2, padding=1)


#: the most rows of a 4 x 4 input that take ``deconv4x4_s2_as_matmul``: where it measured faster
#: than the library's kernel on this project's CPU (1 and 2 threads, 512 -> 256 channels, forward
#: + input gradient; 2026-12-03): bfloat16 up to 3-6 rows (the fast preset's 3 restarts), float32
#: 2 rows by 1.1-1.5x, but float32 keeps one row so that the float32 solves (the paper preset's 3
#: restarts, a batch of images, one image) round as they did before (other dtypes: one row)
MATMUL_ROWS = {torch.bfloat16: 4}


def _use_matmul(x: torch.Tensor) -> bool:
    """A few rows (``MATMUL_ROWS``) of a 4 x 4 input on the CPU: where ``deconv4x4_s2_as_matmul``
    measured faster."""
    return x.device.type == "cpu" and x.shape[-2] * x.shape[-1] <= 16 and x.shape[0] <= MATMUL_ROWS.get(x.dtype, 1)


class DCGAN(GeneratorAdapter):
    """DCGAN generator adapter.

    resolution: 32, 64 or 128; nz: latent size; ngf: base width (the first block has
    ngf * 2^(L-2) channels, L = log2(resolution) - 1 layers); nc: image channels.
    Native output range [-1, 1] (tanh); latent z ~ N(0, I)."""

    def __init__(self, resolution: int = 64, nz: int = 100, ngf: int = 64, nc: int = 3, weights_id=None):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise BadInput(f"DCGAN resolution must be one of {RESOLUTIONS}, got {resolution}")
        if nz < 1 or ngf < 1 or nc not in (1, 3):
            raise BadInput(f"DCGAN needs nz >= 1, ngf >= 1 and nc in (1, 3); got nz={nz} ngf={ngf} nc={nc}")
        self.nz, self.ngf, self.nc = nz, ngf, nc
        self.n_layers = int(math.log2(resolution)) - 1
        self.widths = [ngf * 2 ** (self.n_layers - 2 - i) for i in range(self.n_layers - 1)] + [nc]
        layers: List[nn.Module] = []
        c_in = nz
        for i, c_out in enumerate(self.widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False))
            if i < self.n_layers - 1:
                layers += [nn.BatchNorm2d(c_out), nn.ReLU(True)]
            else:
                layers.append(nn.Tanh())
            c_in = c_out
        self.main = nn.Sequential(*layers)
        self.meta = GeneratorMeta(
            architecture="dcgan",
            resolution=resolution,
            channels=nc,
            latent_kind="normal",
            native_range=(-1.0, 1.0),
            weights_id=weights_id,
            config={"resolution": resolution, "nz": nz, "ngf": ngf, "nc": nc},
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    def block_infos(self) -> List[BlockInfo]:
        infos = []
        prev = {"z": (self.nz,)}
        for i, c_out in enumerate(self.widths):
            r = 4 * 2**i
            key = "img" if i == self.n_layers - 1 else "h"
            out = {key: (c_out, r, r)}
            infos.append(BlockInfo(name=f"b{r}", in_shapes=prev, out_shapes=out, roles=ROLES))
            prev = out
        return infos

    @classmethod
    def data_config(cls, channels: int, num_classes: int) -> dict:
        """As the base class; DCGAN's channels argument is pytorch/examples' ``nc``."""
        return {"nc": channels}

    def run_block(self, i: int, state: State) -> State:
        start = 3 * i
        stop = start + (3 if i < self.n_layers - 1 else 2)
        if i == 0:
            # a 4x4 transposed conv of a 1x1 input is a matrix product; as a matmul its backward
            # is ~6x faster on CPU than ConvTranspose2d's
            z = state["z"]
            w = self.main[0].weight
            x = (z.reshape(z.shape[0], self.nz) @ w.reshape(self.nz, -1)).reshape(z.shape[0], *w.shape[1:])
            start += 1
        else:
            x = state["h"]
            if _use_matmul(x):
                x = deconv4x4_s2_as_matmul(x, self.main[start].weight)
                start += 1
        for layer in self.main[start:stop]:
            x = layer(x)
        key = "img" if i == self.n_layers - 1 else "h"
        return OrderedDict([(key, x)])
