"""PGGAN generator for inference (Karras et al. 2018), in the genforce/mganprior layout.

Every layer is a "conv block" of the genforce port of the official TensorFlow code: pixel norm of
the *input* -> (nearest x2 upsampling) -> convolution without bias -> equalised learning rate
(multiply by gain / sqrt(fan_in), then add the bias: the ``wscale`` submodule) -> leaky ReLU 0.2.
Normalising the input of each layer is the same computation as the official code's pixel norm
after each activation (and of the latent), just placed at the other end of the layer.

Parameter names equal mganprior's ``PGGANGeneratorNet`` (converted official checkpoints load
unchanged): ``layer{2k}`` and ``layer{2k+1}`` are the two convolutions of resolution 4 * 2^k, with
``layer{i}.conv.weight`` (out, in, kh, kw) and ``layer{i}.wscale.bias``; ``layer0`` is the dense
4x4 layer, stored as a 4x4 convolution applied with padding 3 to z viewed as (z_dim, 1, 1).
``output{j}`` is the toRGB 1x1 convolution (gain 1, linear) of resolution 4 * 2^j. Only the final
toRGB, ``output{L-1}``, exists here: the intermediate ones only serve progressive growing (lod > 0)
and are dropped by the checkpoint loader. With ``fused_scale`` (official option, unused by the
released models) the upsampling convolution is a transposed convolution whose weight is stored
as ``layer{2k}.weight`` in TensorFlow's (kh, kw, in, out) order.

Blocks: one per resolution 4, 8, ..., R (its two convolutions; the last one also applies the
final toRGB). The state entering block k >= 1 is ``{"h": (nf(r), r, r)}`` with r = 2^(k+1), the
leaky-ReLU output of the previous resolution (before pixel norm). Latent z ~ N(0, I) (512-d);
native output range [-1, 1] without tanh, clamped to [0, 1] by ``to_unit``.
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

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
INIT_RES = 4
GAIN = math.sqrt(2.0)
#: roles of the state entries (base.ROLES)
ROLES = {"z": "latent", "h": "features", "img": "image"}


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector (dim 1) to unit mean square: (N, C, ...) -> same."""
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + eps)


class WScale(nn.Module):
    """Equalised learning rate: y = x * gain / sqrt(fan_in) + bias (bias per channel, dim 1).

    The weights are stored N(0, 1) and scaled at run time, as in the official code; the scale is
    a constant, not a parameter."""

    def __init__(self, fan_in: int, out_channels: int, gain: float = GAIN):
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return x * self.scale + self.bias.view(1, -1, 1, 1)


class PGConvBlock(nn.Module):
    """Pixel norm -> [upsample] -> conv -> wscale -> [leaky ReLU 0.2].

    kind: "dense" (z (N, c_in) -> (N, c_out, 4, 4)), "conv" (3x3), "up" (nearest x2, then 3x3),
    "fused_up" (3x3 transposed convolution, stride 2, weight in (kh, kw, in, out) order) or
    "torgb" (1x1, gain 1, no activation)."""

    def __init__(self, c_in: int, c_out: int, kind: str):
        super().__init__()
        self.kind = kind
        k = {"dense": INIT_RES, "torgb": 1}.get(kind, 3)
        if kind == "fused_up":
            self.weight = nn.Parameter(torch.randn(k, k, c_in, c_out))
        else:
            self.conv = nn.Conv2d(c_in, c_out, k, 1, (k - 1) // 2 if kind != "dense" else INIT_RES - 1, bias=False)
            # equalised learning rate: N(0, 1) weights, the He scale is applied in forward
            nn.init.normal_(self.conv.weight)
        self.wscale = WScale(c_in * k * k, c_out, 1.0 if kind == "torgb" else GAIN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See the class docstring for the shapes of each kind."""
        x = pixel_norm(x)
        if self.kind == "dense":
            # a k x k conv with padding k-1 of a 1x1 input reads the kernel flipped: as a matrix
            # product it is exact and much faster (forward and backward) than the padded conv
            w = self.conv.weight.flip(2, 3)
            o, c, kh, kw = w.shape
            x = (x.reshape(x.shape[0], c) @ w.permute(1, 0, 2, 3).reshape(c, o * kh * kw)).reshape(x.shape[0], o, kh, kw)
        elif self.kind == "fused_up":
            # official upscale2d_conv2d: the 3x3 kernel summed over its 4 shifts gives the 4x4
            # stride-2 transposed-conv kernel; the result equals nearest upsampling followed by a
            # 3x3 conv with the spatially flipped kernel, in one op
            w = F.pad(self.weight.permute(2, 3, 0, 1), (1, 1, 1, 1))
            w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, w, stride=2, padding=1)
        else:
            if self.kind == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.conv(x)
        x = self.wscale(x)
        return x if self.kind == "torgb" else F.leaky_relu(x, 0.2)


class PGGAN(GeneratorAdapter):
    """PGGAN generator adapter (inference only, lod 0).

    resolution: 8 .. 1024 (power of two); z_dim: latent size (512 for the released models);
    channels: image channels (1 or 3); fmaps_base, fmaps_max: the width at resolution r is
    nf(r) = min(fmaps_base // r, fmaps_max) (released models: 16384 and 512); fused_scale: use
    the fused upsample+conv (transposed convolution). Latent z ~ N(0, I); native range [-1, 1]."""

    def __init__(
        self,
        resolution: int = 1024,
        z_dim: int = 512,
        channels: int = 3,
        fmaps_base: int = 16 << 10,
        fmaps_max: int = 512,
        fused_scale: bool = False,
        weights_id=None,
    ):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise BadInput(f"PGGAN resolution must be one of {RESOLUTIONS}, got {resolution}")
        if z_dim < 1 or channels not in (1, 3) or fmaps_max < 1 or fmaps_base // resolution < 1:
            raise BadInput(
                f"PGGAN needs z_dim >= 1, channels in (1, 3), fmaps_max >= 1 and fmaps_base >= resolution; got "
                f"z_dim={z_dim} channels={channels} fmaps_base={fmaps_base} fmaps_max={fmaps_max}"
            )
        self.z_dim, self.channels = z_dim, channels
        self.fmaps_base, self.fmaps_max, self.fused_scale = fmaps_base, fmaps_max, bool(fused_scale)
        self.n_blocks = int(math.log2(resolution)) - 1
        for k in range(self.n_blocks):
            r = INIT_RES * 2**k
            if k == 0:
                self.add_module("layer0", PGConvBlock(z_dim, self.nf(r), "dense"))
            else:
                self.add_module(f"layer{2 * k}", PGConvBlock(self.nf(r // 2), self.nf(r), "fused_up" if fused_scale else "up"))
            self.add_module(f"layer{2 * k + 1}", PGConvBlock(self.nf(r), self.nf(r), "conv"))
        self.add_module(f"output{self.n_blocks - 1}", PGConvBlock(self.nf(resolution), channels, "torgb"))
        self.meta = GeneratorMeta(
            architecture="pggan",
            resolution=resolution,
            channels=channels,
            latent_kind="normal",
            native_range=(-1.0, 1.0),
            weights_id=weights_id,
            config={
                "resolution": resolution,
                "z_dim": z_dim,
                "channels": channels,
                "fmaps_base": fmaps_base,
                "fmaps_max": fmaps_max,
                "fused_scale": self.fused_scale,
            },
        )

    def nf(self, r: int) -> int:
        """Number of feature maps at resolution r."""
        return min(self.fmaps_base // r, self.fmaps_max)

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    def block_infos(self) -> List[BlockInfo]:
        infos = []
        prev = {"z": (self.z_dim,)}
        for k in range(self.n_blocks):
            r = INIT_RES * 2**k
            out = {"img": (self.channels, r, r)} if k == self.n_blocks - 1 else {"h": (self.nf(r), r, r)}
            infos.append(BlockInfo(f"b{r}", prev, out, ROLES))
            prev = out
        return infos

    def run_block(self, i: int, state: State) -> State:
        x = state["z"] if i == 0 else state["h"]
        x = getattr(self, f"layer{2 * i + 1}")(getattr(self, f"layer{2 * i}")(x))
        if i == self.n_blocks - 1:
            return OrderedDict([("img", getattr(self, f"output{i}")(x))])
        return OrderedDict([("h", x)])
