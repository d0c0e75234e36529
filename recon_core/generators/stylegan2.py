"""StyleGAN2 generator (Karras et al. 2020) in the rosinality/stylegan2-pytorch layout, pure PyTorch.

Module names mirror rosinality's ``Generator`` so its ``g_ema`` state dicts (the converted FFHQ
256/512/1024 checkpoints) load unchanged: ``style.1..n_mlp`` (mapping, PixelNorm at ``style.0``),
``input.input``, ``conv1.*``, ``to_rgb1.*``, ``convs.N.*`` (``convs.{2k}`` upsamples, with
``conv.blur.kernel``), ``to_rgbs.N.*`` (``upsample.kernel``), ``noises.noise_i``. One buffer is ours:
``latent_avg`` (the mean w used by truncation), filled by the rosinality loader from the
checkpoint's ``latent_avg`` entry.

Blocks and states (S = style_dim, L = n_latent = 2 log2(R) - 2, K = 2 log2(R) - 3 noise layers):

- block 0 ``mapping``: ``{"z": (S,)}`` -> ``{"h": const (C4,4,4), "rgb": zeros (3,4,4),
  "w": (L,S) w+ (truncated towards latent_avg), "noise_0".."noise_{K-1}": (1,r,r)}``. So cut 0 is z
  (CSGM in z) and cut 1 is w+ and the noises (the usual StyleGAN2 inversion space).
- block 1 ``b4``: conv1 (w[0], noise_0) and to_rgb1 (w[1]) -> h (C4,4,4), rgb (3,4,4), w[1:].
- block k >= 2 ``b{r}`` (r = 2^(k+1)): upsampling conv (w[0], noise_{2k-3}), conv (w[1],
  noise_{2k-2}), to_rgb (w[2]) added to the upsampled rgb skip -> h, rgb at r, w[2:]; the last
  block returns ``{"img": rgb}``.

The rgb skip is part of every intermediate state, so cutting after a block and running the tail
reproduces the forward pass exactly (the reference ILO code drops it: METHODS.md pitfalls). w+
entries are consumed as in rosinality: to_rgb of a block and the upsampling conv of the next block
share one w+ row, hence the w slice overlaps by one row between consecutive states.

Noise: the fixed ``noises.noise_i`` buffers are used (rosinality's ``randomize_noise=False``), so
G is deterministic and ``tail(head(z, c), c) == forward(z)``; solvers may optimise the noises.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import BadInput
from .base import BlockInfo, GeneratorAdapter, GeneratorMeta, State

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
BLUR_KERNEL = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)


# ---- plain-torch replacements of rosinality's compiled ops ------------------------------------
def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter, downsample: (N, C, H, W) -> (N, C, H', W').

    Same semantics as rosinality's ``upfirdn2d`` (symmetric ``pad = (p0, p1)`` on both axes,
    negative pads crop; the kernel is applied as a true convolution, i.e. flipped):
    H' = (H * up + p0 + p1 - kh) // down + 1."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    # depthwise: one filter shared by all channels, as a grouped conv (groups = C); on the CPU
    # this is ~20x faster, forward and backward, than a 1-channel conv over (N*C, 1, H, W)
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, kh, kw).to(x.dtype).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = SQRT2) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2), bias broadcast over the channel axis (dim 1)."""
    shape = (1, bias.shape[0]) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * scale


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from a 1-D one, normalised to sum 1: (len(k), len(k))."""
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


# ---- layers (names and parameter shapes as in rosinality's model.py) ------------------------
class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2 over dim 1) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight (out, in) scaled by lr_mul / sqrt(in) at
    run time, bias (out,) scaled by lr_mul; optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR low-pass after a transposed conv (buffer ``kernel``, scaled by factor^2 to keep gain)."""

    def __init__(self, kernel: Sequence[float], pad, upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 FIR upsampling of the rgb skip (buffer ``kernel``)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) conv, optionally x2 upsampling.

    weight (1, out, in, k, k); ``modulation`` maps w (N, S) to per-input-channel scales (bias 1).
    Implemented by modulating the input and scaling the output (mathematically identical to
    rosinality's grouped per-sample-weight conv, and cheaper on CPU: one shared kernel)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        s = self.modulation(w)  # (N, in)
        x = x * s.view(n, -1, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # 1 / ||W * s||_2 per (sample, output channel), as in the paper's eq. 3
            d = (weight.unsqueeze(0) * s.view(n, 1, -1, 1, 1)).pow(2).sum(dim=(2, 3, 4)).add(1e-8).rsqrt()
            out = out * d.view(n, -1, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """x + weight * noise, weight (1,) (``noise.weight``); noise (N, 1, H, W)."""

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input ``input.input`` (1, C, 4, 4)."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))


class FusedLeakyReLU(nn.Module):
    """Bias (C,) + leaky ReLU 0.2, times sqrt(2) (``activate.bias``)."""

    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """ModulatedConv2d -> NoiseInjection -> FusedLeakyReLU."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, noise_init: float = 0.0):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection(noise_init)
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to rgb + bias (1,3,1,1), plus the x2-upsampled skip."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 channels: int = 3):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        return out + (self.upsample(skip) if hasattr(self, "upsample") else skip)


def channels_at(r: int, channel_multiplier: int = 2, channel_max: int = 512, channel_base: int = 16384) -> int:
    """Feature channels at resolution r: min(channel_max, channel_base * channel_multiplier // r).

    With the defaults this is rosinality's table (512 up to 32 px, then 256*cm at 64 px, ...)."""
    return min(channel_max, channel_base * channel_multiplier // r)


class StyleGAN2(GeneratorAdapter):
    """StyleGAN2 generator adapter (rosinality layout).

    resolution: output size (8..1024, power of 2; rosinality's ``size``); style_dim: z and w size (512 for FFHQ);
    n_mlp: mapping layers (8); channel_multiplier (2 for config-f FFHQ), channel_max, channel_base:
    feature widths (see ``channels_at``; shrink them for tiny test configs); lr_mlp: mapping
    lr multiplier (0.01); truncation: psi in (0, 1], w <- latent_avg + psi (w - latent_avg);
    noise_init: initial noise strengths (0 as in rosinality; only random-weight models care);
    channels: image channels, 3 (rosinality) or 1 (grey data, e.g. Fashion-MNIST; recorded in
    the config only when not 3). Latent z ~ N(0, I) (S,); output (N, channels, resolution,
    resolution), native range [-1, 1]."""

    def __init__(self, resolution: int = 256, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channel_max: int = 512, channel_base: int = 16384, lr_mlp: float = 0.01, truncation: float = 1.0,
                 noise_init: float = 0.0, channels: int = 3, weights_id: Optional[str] = None):
        super().__init__()
        size = resolution
        if size not in RESOLUTIONS:
            raise BadInput(f"StyleGAN2 resolution must be one of {RESOLUTIONS}, got {size}")
        if style_dim < 1 or n_mlp < 1 or channel_multiplier < 1 or channel_max < 1 or channel_base < 1:
            raise BadInput("StyleGAN2 needs style_dim, n_mlp, channel_multiplier, channel_max, channel_base >= 1")
        if not (0 < float(truncation) <= 1):
            raise BadInput(f"StyleGAN2 truncation must be in (0, 1], got {truncation}")
        if channels not in (1, 3):
            raise BadInput(f"StyleGAN2 channels must be 1 or 3, got {channels}")
        self.img_channels = channels
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.truncation = float(truncation)
        self.log_size = int(math.log2(size))
        self.n_latent = 2 * self.log_size - 2
        self.num_layers = 2 * self.log_size - 3  # noise inputs: conv1 + two per later block
        ch = {2**i: channels_at(2**i, channel_multiplier, channel_max, channel_base) for i in range(2, self.log_size + 1)}
        if min(ch.values()) < 1:
            raise BadInput(f"StyleGAN2 channel settings give no channels at {size} px: {ch}")
        self.channels = ch

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim, noise_init=noise_init)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, channels=channels)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        c_in = ch[4]
        for i in range(3, self.log_size + 1):
            c_out = ch[2**i]
            self.convs.append(StyledConv(c_in, c_out, style_dim, upsample=True, noise_init=noise_init))
            self.convs.append(StyledConv(c_out, c_out, style_dim, noise_init=noise_init))
            self.to_rgbs.append(ToRGB(c_out, style_dim, channels=channels))
            c_in = c_out
        # mean w for truncation; the rosinality loader fills it from the checkpoint's latent_avg
        self.register_buffer("latent_avg", torch.zeros(style_dim))
        self.meta = GeneratorMeta(
            architecture="stylegan2", resolution=size, channels=channels, latent_kind="normal", native_range=(-1.0, 1.0),
            weights_id=weights_id,
            config={"resolution": size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": channel_multiplier,
                    "channel_max": channel_max, "channel_base": channel_base, "lr_mlp": lr_mlp,
                    "truncation": self.truncation, "noise_init": noise_init},
        )
        if channels != 3:
            # only when not the rosinality default, so existing configs and manifests are unchanged
            self.meta.config["channels"] = channels

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    # ---- latent helpers -----------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, S) -> w (N, S) (PixelNorm + n_mlp EqualLinear layers; no truncation)."""
        return self.style(z)

    @torch.no_grad()
    def mean_w(self, n: int = 4096, rng: Optional[torch.Generator] = None) -> torch.Tensor:
        """Mean of mapping(z) over n draws z ~ N(0, I) (drawn on the CPU): (S,)."""
        z = torch.randn(n, self.style_dim, generator=rng).to(**self._placement())
        return self.mapping(z).mean(0)

    def set_latent_avg(self, w_avg: torch.Tensor) -> None:
        """Set the truncation centre (S,) (e.g. rosinality's ``latent_avg``, or ``mean_w()``)."""
        self.latent_avg.copy_(torch.as_tensor(w_avg).reshape(-1, self.style_dim).mean(0))

    def _noise_res(self, i: int) -> int:
        return 2 ** ((i + 5) // 2)

    def after_training(self) -> None:
        """Estimate the truncation centre of the trained mapping (training does not track it)."""
        self.set_latent_avg(self.mean_w(4096, torch.Generator().manual_seed(0)))

    # ---- blocks -------------------------------------------------------------------------------
    def _synth_state(self, k: int) -> OrderedDict:
        """Per-sample shapes of the state entering synthesis block k >= 1."""
        r = 4 if k <= 2 else 2 ** k
        n_w = self.n_latent if k == 1 else self.n_latent - 1 - 2 * (k - 2)
        first_noise = 0 if k == 1 else 2 * k - 3
        st = OrderedDict(h=(self.channels[r], r, r), rgb=(self.img_channels, r, r), w=(n_w, self.style_dim))
        for i in range(first_noise, self.num_layers):
            st[f"noise_{i}"] = (1, self._noise_res(i), self._noise_res(i))
        return st

    def block_infos(self) -> List[BlockInfo]:
        n_blocks = self.log_size  # mapping, b4, b8 .. b{size}
        # rgb is the image accumulated so far (each block adds its to_rgb), not a feature map
        roles = {"z": "latent", "h": "features", "rgb": "image", "w": "w+", "img": "image",
                 **{f"noise_{i}": "noise" for i in range(self.num_layers)}}
        infos = []
        for k in range(n_blocks):
            ins = {"z": (self.style_dim,)} if k == 0 else dict(self._synth_state(k))
            if k == n_blocks - 1:
                out = {"img": (self.img_channels, self.size, self.size)}
            else:
                out = dict(self._synth_state(k + 1))
            name = "mapping" if k == 0 else f"b{4 if k == 1 else 2 ** (k + 1)}"
            infos.append(BlockInfo(name=name, in_shapes=ins, out_shapes=out, roles=roles))
        return infos

    def run_block(self, i: int, state: State) -> State:
        if i == 0:
            z = state["z"]
            n = z.shape[0]
            w = self.mapping(z)
            if self.truncation < 1:
                w = self.latent_avg + self.truncation * (w - self.latent_avg)
            out = OrderedDict()
            out["h"] = self.input.input.repeat(n, 1, 1, 1)
            out["rgb"] = z.new_zeros(n, self.img_channels, 4, 4)
            out["w"] = w.unsqueeze(1).repeat(1, self.n_latent, 1)
            for j in range(self.num_layers):
                # cloned so a solver optimising the state in place never touches the buffers
                out[f"noise_{j}"] = getattr(self.noises, f"noise_{j}").expand(n, -1, -1, -1).clone()
            return out
        h, rgb, w = state["h"], state["rgb"], state["w"]
        if i == 1:
            h = self.conv1(h, w[:, 0], state["noise_0"])
            rgb = self.to_rgb1(h, w[:, 1], rgb)
            rest_w, first_noise = w[:, 1:], 1
        else:
            j = 2 * (i - 2)  # index into convs
            h = self.convs[j](h, w[:, 0], state[f"noise_{2 * i - 3}"])
            h = self.convs[j + 1](h, w[:, 1], state[f"noise_{2 * i - 2}"])
            rgb = self.to_rgbs[i - 2](h, w[:, 2], rgb)
            rest_w, first_noise = w[:, 2:], 2 * i - 1
        if i == self.log_size - 1:
            return OrderedDict(img=rgb)
        out = OrderedDict(h=h, rgb=rgb, w=rest_w)
        for k in range(first_noise, self.num_layers):
            out[f"noise_{k}"] = state[f"noise_{k}"]
        return out
