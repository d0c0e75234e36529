"""Discriminators for every GAN family (the VAE needs none: its encoder is part of the adapter).

All take images in [-1, 1], (N, C, R, R). Classifiers return logits (N,); BEGAN's returns the
autoencoder reconstruction (N, C, R, R). Widths are small and configurable (``build_discriminator``).

- ``DCGANDiscriminator`` (Radford et al. 2016; pytorch/examples ``netD``): 4x4 stride-2 convs,
  LeakyReLU 0.2, BatchNorm from the second layer, a final 4x4 conv to one logit; N(0, 0.02) init.
- ``BEGANDiscriminator`` (Berthelot et al. 2017, fig. 1): encoder of 3x3 conv + ELU stages with
  stride-2 subsampling and linearly growing widths (n, 2n, ...), a linear layer to an h-dim code,
  and a decoder with the generator's architecture (the ``BEGAN`` adapter itself, run unclamped).
- ``ResidualDiscriminator`` (StyleGAN2's residual D, simplified): equalised-lr 1x1 fromRGB, one
  residual block per resolution ((conv3x3, conv3x3, 2x2 average pooling) + (pool, 1x1 conv),
  summed / sqrt 2), minibatch stddev at 4x4, conv3x3, two linear layers. Simplification: average
  pooling then a 3x3 conv instead of StyleGAN2's [1,3,3,1] FIR blur + stride-2 conv; leaky ReLU
  0.2 times sqrt 2.
- ``PGGANDiscriminator`` (Karras et al. 2018, table 2): equalised-lr fromRGB, two 3x3 convs per
  resolution with 2x2 average pooling between them (the second conv at half resolution, like the
  official fused conv + downscale), minibatch stddev + conv3x3 + dense 4x4 + linear at 4x4;
  trained at the final resolution directly (no progressive growing).
- ``ProjectionDiscriminator`` (BigGAN's D, after Miyato & Koyama 2018): spectrally normalised
  residual blocks (ReLU pre-activation, average-pool downsampling to 8 px, then two blocks at
  8 px as BigGAN-PyTorch's 32 px D), ReLU + spatial sum -> h, logit = w.h + <embed(y), h>.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import BadInput
from ..generators.began import BEGAN

SQRT2 = math.sqrt(2.0)


def _log2_res(resolution: int, minimum: int = 8) -> int:
    k = int(math.log2(resolution)) if resolution > 0 else 0
    if 2**k != resolution or resolution < minimum:
        raise BadInput(f"discriminator resolution must be a power of two >= {minimum}, got {resolution}")
    return k


# ---- DCGAN ----------------------------------------------------------------------------------------
def dcgan_init(module: nn.Module) -> None:
    """pytorch/examples ``weights_init``: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANDiscriminator(nn.Module):
    """DCGAN D: resolution R (power of two >= 8), channels C, base width ndf (doubling per layer)."""

    def __init__(self, resolution: int, channels: int, ndf: int = 64):
        super().__init__()
        _log2_res(resolution)
        layers = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        c, r = ndf, resolution // 2
        while r > 4:
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, inplace=True)]
            c, r = 2 * c, r // 2
        layers.append(nn.Conv2d(c, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1] -> logits (N,)."""
        return self.main(x).reshape(x.shape[0])


# ---- BEGAN ----------------------------------------------------------------------------------------
class BEGANDiscriminator(nn.Module):
    """BEGAN autoencoder D: resolution R (32, 64, 128), channels C, n filters, h-dim code."""

    def __init__(self, resolution: int, channels: int, n: int = 64, h: int = 64):
        super().__init__()
        k = _log2_res(resolution, 32)
        n_stages = k - 2  # 32 px: stages at 32, 16, 8
        enc = [nn.Conv2d(channels, n, 3, 1, 1), nn.ELU()]
        c = n
        for s in range(n_stages):
            enc += [nn.Conv2d(c, c, 3, 1, 1), nn.ELU(), nn.Conv2d(c, c, 3, 1, 1), nn.ELU()]
            if s < n_stages - 1:
                enc += [nn.Conv2d(c, n * (s + 2), 3, 2, 1), nn.ELU()]
                c = n * (s + 2)
        self.encoder = nn.Sequential(*enc)
        self.fc = nn.Linear(c * 8 * 8, h)
        # the decoder has the generator's architecture (paper, fig. 1)
        self.decoder = BEGAN(resolution=resolution, z_dim=h, n=n, channels=channels)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1] -> reconstruction (N, C, R, R), unclamped."""
        code = self.fc(self.encoder(x).flatten(1))
        state = OrderedDict(z=code)
        for i in range(len(self.decoder.blocks)):
            state = self.decoder.run_block(i, state)
        return state["img"]


# ---- equalised learning rate layers (StyleGAN2 / PGGAN style) ------------------------------------
class EqConv2d(nn.Module):
    """Conv with N(0, 1) weights scaled at run time by gain / sqrt(fan_in); optional bias."""

    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = True, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale, self.pad = gain / math.sqrt(c_in * k * k), k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class EqLinear(nn.Module):
    """Linear layer with equalised learning rate (gain / sqrt(fan_in))."""

    def __init__(self, c_in: int, c_out: int, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one feature map: the mean over features and pixels of the stddev across groups of
    samples (Karras et al. 2018, sec. 3). The group is the largest divisor of N that is <= group
    (a data-parallel shard may be small or odd). (N, C, H, W) -> (N, C+1, H, W)."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = x.reshape(g, -1, c, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (N/g,)
    y = y.reshape(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], 1)


def _widths(resolution: int, channel_base: int, channel_max: int):
    return {2**i: max(1, min(channel_max, channel_base // 2**i)) for i in range(2, int(math.log2(resolution)) + 1)}


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = EqConv2d(c_in, c_in, 3)
        self.conv2 = EqConv2d(c_in, c_out, 3)
        self.skip = EqConv2d(c_in, c_out, 1, bias=False, gain=1.0)

    def forward(self, x):
        h = lrelu(self.conv1(x)) * SQRT2
        # pool, then conv: the second conv runs at half resolution, as StyleGAN2's blur + stride-2 conv
        h = lrelu(self.conv2(F.avg_pool2d(h, 2))) * SQRT2
        return (h + self.skip(F.avg_pool2d(x, 2))) / SQRT2


class ResidualDiscriminator(nn.Module):
    """StyleGAN2-style residual D (simplified, see the module docstring). Widths at resolution r:
    min(channel_max, channel_base // r)."""

    def __init__(self, resolution: int, channels: int, channel_base: int = 4096, channel_max: int = 128, mbstd_group: int = 4):
        super().__init__()
        _log2_res(resolution)
        ch = _widths(resolution, channel_base, channel_max)
        self.from_rgb = EqConv2d(channels, ch[resolution], 1)
        self.blocks = nn.Sequential(*[_ResBlock(ch[r], ch[r // 2]) for r in (2**i for i in range(int(math.log2(resolution)), 2, -1))])
        self.mbstd_group = mbstd_group
        self.final_conv = EqConv2d(ch[4] + 1, ch[4], 3)
        self.fc = EqLinear(ch[4] * 16, ch[4])
        self.out = EqLinear(ch[4], 1, gain=1.0)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1] -> logits (N,)."""
        h = self.blocks(lrelu(self.from_rgb(x)) * SQRT2)
        h = lrelu(self.final_conv(minibatch_stddev(h, self.mbstd_group))) * SQRT2
        return self.out(lrelu(self.fc(h.flatten(1))) * SQRT2).reshape(x.shape[0])


class PGGANDiscriminator(nn.Module):
    """PGGAN D at a fixed resolution (see the module docstring). Widths at r:
    min(fmaps_max, fmaps_base // r)."""

    def __init__(self, resolution: int, channels: int, fmaps_base: int = 4096, fmaps_max: int = 128, mbstd_group: int = 4):
        super().__init__()
        _log2_res(resolution)
        nf = _widths(resolution, fmaps_base, fmaps_max)
        self.from_rgb = EqConv2d(channels, nf[resolution], 1)
        convs = []
        for r in (2**i for i in range(int(math.log2(resolution)), 2, -1)):
            convs.append(nn.ModuleList([EqConv2d(nf[r], nf[r], 3), EqConv2d(nf[r], nf[r // 2], 3)]))
        self.convs = nn.ModuleList(convs)
        self.mbstd_group = mbstd_group
        self.final_conv = EqConv2d(nf[4] + 1, nf[4], 3)
        self.dense = EqLinear(nf[4] * 16, nf[4])
        self.out = EqLinear(nf[4], 1, gain=1.0)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1] -> logits (N,)."""
        h = lrelu(self.from_rgb(x))
        for c1, c2 in self.convs:
            # pool, then conv: the second conv at half resolution, like PGGAN's fused (strided) downscale
            h = lrelu(c2(F.avg_pool2d(lrelu(c1(h)), 2)))
        h = lrelu(self.final_conv(minibatch_stddev(h, self.mbstd_group)))
        return self.out(lrelu(self.dense(h.flatten(1)))).reshape(x.shape[0])


# ---- BigGAN projection discriminator -------------------------------------------------------------
class _DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, preactivation: bool, down: bool):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.learnable_sc = c_in != c_out or down
        if self.learnable_sc:
            self.conv_sc = spectral_norm(nn.Conv2d(c_in, c_out, 1))
        self.preactivation, self.down = preactivation, down

    def forward(self, x):
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.learnable_sc:
            # BigGAN-PyTorch: with pre-activation convolve then pool, otherwise pool then convolve
            if self.preactivation:
                s = self.conv_sc(s)
                s = F.avg_pool2d(s, 2) if self.down else s
            else:
                s = F.avg_pool2d(s, 2) if self.down else s
                s = self.conv_sc(s)
        return h + s


class ProjectionDiscriminator(nn.Module):
    """BigGAN projection D: resolution R (power of two >= 8), channels C, width 4 * ch, num_classes."""

    def __init__(self, resolution: int, channels: int, num_classes: int, ch: int = 32):
        super().__init__()
        k = _log2_res(resolution)
        w = 4 * ch
        n_down = max(1, k - 3)
        blocks = [_DBlock(channels if i == 0 else w, w, preactivation=i > 0, down=i < n_down) for i in range(n_down + 2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(w, 1))
        self.embed = spectral_norm(nn.Embedding(max(1, num_classes), w))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1], class labels y (N,) -> logits (N,)."""
        h = torch.sum(F.relu(self.blocks(x)), dim=(2, 3))
        out = self.linear(h).reshape(x.shape[0])
        if y is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


def build_discriminator(arch: str, resolution: int, channels: int, num_classes: int = 1, **config) -> Optional[nn.Module]:
    """The discriminator of generator family ``arch`` (its registry entry's; None when it has
    none, the VAE). ``config``: the D's width options (dcgan: ndf; began: n, h; stylegan2:
    channel_base, channel_max, mbstd_group; pggan: fmaps_base, fmaps_max, mbstd_group; biggan: ch)."""
    from ..generators import registry  # the registry refers to the classes of this module

    entry = registry.get(arch)
    if entry.discriminator is None:
        if config:
            raise BadInput(f"the {arch.upper()} has no discriminator; remove the discriminator config {config}")
        return None
    args = (resolution, channels, num_classes) if entry.class_conditional else (resolution, channels)
    try:
        return entry.discriminator(*args, **config)
    except TypeError as e:
        raise BadInput(f"invalid {arch} discriminator config {config}: {e}") from None
