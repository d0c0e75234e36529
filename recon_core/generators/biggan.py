"""BigGAN-deep generator (Brock et al. 2019) in the HF pytorch-pretrained-BigGAN layout, pure PyTorch.

Module names mirror HF's ``BigGAN`` so its ``pytorch_model.bin`` (biggan-deep-128/256/512) loads
unchanged: ``embeddings.weight`` (Linear num_classes -> embed, no bias), ``generator.gen_z.*``,
``generator.layers.N.*`` (GenBlocks ``bn_0..3``/``conv_0..3``; the self-attention layer is one
entry of the same list, ``snconv1x1_{theta,phi,g,o_conv}`` + ``gamma``), ``generator.bn``,
``generator.conv_to_rgb``. Spectral-normalised layers store ``weight_orig``, ``weight_u``,
``weight_v``; batch norms store per-truncation statistics ``running_means``/``running_vars`` of
shape (n_stats, C) for truncation values 0, 1/(n_stats-1), ..., 1.

What HF BigGAN-deep does (and this module does too): the conditioning vector is the *full* z
concatenated with the class embedding, ``cond = [z, E onehot(y)]`` (2 x 128), fed to gen_z and
to every conditional batch norm (no hierarchical z chunks: those are BigGAN, not BigGAN-deep).

Blocks and states (Z = z_dim, E = class_embed_dim):

- block 0 ``gen_z``: ``{"z": (Z,), "embed": (E,)}`` -> ``{"h": (C0, 4, 4), "cond": (Z+E,)}``.
  "embed" is the class embedding (``class_embedding(idx)``); a class index is chosen with
  ``class_idx=`` / ``set_class(idx)``, and ``sample_latent`` returns z ~ truncated normal and the
  embedding of that class (a random class per sample when none is set).
- block i >= 1: ``generator.layers[i-1]`` (a GenBlock, or the attention layer):
  ``{"h", "cond"}`` -> ``{"h", "cond"}``; the last block also applies ``generator.bn``, ReLU,
  ``conv_to_rgb`` (first 3 channels) and tanh -> ``{"img": (3, R, R)}`` in [-1, 1].

Spectral norm never runs a power iteration in eval mode: W / sigma with sigma = u^T W v from
the stored u, v (exactly torch's ``spectral_norm`` in eval). In training mode one iteration per
call updates u, v like torch does; adapters are loaded in eval mode.

Training mode (used only by ``recon_core.training``): the batch norms use batch statistics, as
BigGAN does while training, and fold them (momentum 0.1, unbiased variance) into *every* row of
the per-truncation tables, so a trained model's eval statistics are those of its training
distribution at any truncation (BigGAN's "standing statistics" per truncation are not computed).
``channels`` (default 3, HF) takes the first ``channels`` outputs of ``conv_to_rgb``: 1 for grey
data; it is recorded in the config only when not 3.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import BadInput, is_int
from .base import BlockInfo, GeneratorAdapter, GeneratorMeta, State

#: the HF biggan-deep-128 ``layers`` (up-sample?, in multiplier, out multiplier of channel_width)
DEEP_128_LAYERS = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
                   [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]
#: roles of the state entries (base.ROLES): the class embedding and cond = [z, embedding] condition
#: every block
ROLES = {"z": "latent", "embed": "conditioning", "h": "features", "cond": "conditioning", "img": "image"}


def layers_for_resolution(resolution: int) -> List[list]:
    """BigGAN-deep layer list for ``resolution`` = 4 * 2^u: per level a plain block then an
    up-sampling one, channel multipliers halving from 2^(u-1) to 1 (what training builds)."""
    u = int(math.log2(resolution // 4)) if resolution >= 4 else 0
    if u < 1 or 4 * 2**u != resolution:
        raise BadInput(f"BigGAN resolution must be 4 * 2^u (8, 16, 32, ...), got {resolution}")
    out = []
    for i in range(u):
        m = 2 ** (u - 1 - i)
        out += [[False, m, m], [True, m, max(1, m // 2) if i < u - 1 else m]]
    return out


# ---- spectral norm ----------------------------------------------------------------------------
class SNParam(nn.Module):
    """Base of spectrally normalised layers: ``weight_orig`` (param), ``weight_u`` (out,) and
    ``weight_v`` (fan_in,) buffers; ``weight()`` = weight_orig / (u^T W v)."""

    def _init_sn(self, weight: torch.Tensor, eps: float) -> None:
        self.weight_orig = nn.Parameter(weight)
        w_mat = weight.flatten(1)
        # converge u, v for the random init, so a random-weight (eval-mode) model divides by the
        # true top singular value rather than by u^T W v of two random vectors (tiny or negative)
        u = F.normalize(torch.randn(w_mat.shape[0]), dim=0, eps=eps)
        for _ in range(20):
            v = F.normalize(w_mat.t() @ u, dim=0, eps=eps)
            u = F.normalize(w_mat @ v, dim=0, eps=eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)
        self.sn_eps = eps

    def weight(self) -> torch.Tensor:
        w_mat = self.weight_orig.flatten(1)
        if self.training:
            # torch's behaviour in training mode: one power iteration, no gradient through u, v
            with torch.no_grad():
                v = F.normalize(w_mat.t() @ self.weight_u, dim=0, eps=self.sn_eps)
                u = F.normalize(w_mat @ v, dim=0, eps=self.sn_eps)
                self.weight_v.copy_(v)
                self.weight_u.copy_(u)
            # clones (as torch's spectral_norm does): the next call's in-place update must not
            # touch tensors saved for this call's backward (several forwards, one backward)
            u, v = self.weight_u.clone(), self.weight_v.clone()
        else:
            u, v = self.weight_u, self.weight_v
        sigma = torch.dot(u, w_mat @ v)
        return self.weight_orig / sigma


class SNLinear(SNParam):
    """Spectrally normalised linear layer: weight_orig (out, in), optional bias (out,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-4):
        super().__init__()
        w = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self._init_sn(w, eps)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)


class SNConv2d(SNParam):
    """Spectrally normalised conv: weight_orig (out, in, k, k), bias (out,) optional."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True, eps: float = 1e-4):
        super().__init__()
        w = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self._init_sn(w, eps)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


# ---- layers (names as in HF's model.py) -----------------------------------------------------
def interpolate_stats(stats: torch.Tensor, truncation: float) -> torch.Tensor:
    """Statistics for ``truncation`` from the (n_stats, C) table, exactly as HF computes them.

    HF: coef, i = modf(truncation / step); stats[i] * coef + stats[i+1] * (1 - coef). Note the
    weights are the reverse of linear interpolation (coef weighs the *lower* entry), and float
    rounding can land just below a grid point (0.3 / 0.02 = 14.999...). We reproduce it so
    outputs match the released model; at grid points where the division is exact (e.g. 0.4, 1.0)
    it is the stored entry."""
    step = 1.0 / (stats.shape[0] - 1)
    coef, start = math.modf(truncation / step)
    start = int(start)
    if coef != 0.0:
        return stats[start] * coef + stats[start + 1] * (1 - coef)
    return stats[start]


class BigGANBatchNorm(nn.Module):
    """Batch norm with per-truncation statistics (``running_means``/``running_vars``,
    (n_stats, C)); conditional: gain 1 + scale(cond), bias offset(cond) (SN linears, no bias);
    otherwise affine ``weight``/``bias`` (C,). Eval mode uses the tables; training mode uses
    batch statistics and folds them into every row of the tables (momentum 0.1)."""

    momentum = 0.1

    def __init__(self, num_features: int, cond_dim: Optional[int] = None, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.conditional = cond_dim is not None
        if self.conditional:
            self.scale = SNLinear(cond_dim, num_features, bias=False, eps=eps)
            self.offset = SNLinear(cond_dim, num_features, bias=False, eps=eps)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            with torch.no_grad():
                n = x.numel() // x.shape[1]
                m = self.momentum
                self.running_means.mul_(1 - m).add_(m * mean)
                self.running_vars.mul_(1 - m).add_(m * var * (n / max(n - 1, 1)))
            mean, var = mean.view(1, -1, 1, 1), var.view(1, -1, 1, 1)
        else:
            mean = interpolate_stats(self.running_means, truncation).view(1, -1, 1, 1)
            var = interpolate_stats(self.running_vars, truncation).view(1, -1, 1, 1)
        x = (x - mean) / torch.sqrt(var + self.eps)
        if self.conditional:
            return x * (1 + self.scale(cond)[:, :, None, None]) + self.offset(cond)[:, :, None, None]
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SelfAttn(nn.Module):
    """SAGAN self-attention: theta, phi (C/8), g (C/2) 1x1 SN convs, phi and g max-pooled x2,
    o_conv back to C, residual weighted by ``gamma`` (1,)."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        if channels % 8:
            raise BadInput(f"BigGAN attention needs channels divisible by 8, got {channels}")
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False, eps=eps)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).view(n, c // 8, h * w)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).view(n, c // 8, h * w // 4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, hw, hw/4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).view(n, c // 2, h * w // 4)
        o = (g @ attn.transpose(1, 2)).view(n, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class GenBlock(nn.Module):
    """BigGAN-deep residual block: 4 x (cond BN, ReLU, SN conv) with a 1x1 -> 3x3 -> 3x3 -> 1x1
    bottleneck (in/4 channels), optional nearest x2 upsampling; the skip keeps the first ``out``
    channels (HF: in/2 when in != out) and is upsampled likewise."""

    def __init__(self, in_size: int, out_size: int, cond_dim: int, up_sample: bool, n_stats: int = 51, eps: float = 1e-4, reduction: int = 4):
        super().__init__()
        if out_size > in_size:
            raise BadInput(f"BigGAN GenBlock cannot widen channels ({in_size} -> {out_size})")
        mid = in_size // reduction
        if mid < 1:
            raise BadInput(f"BigGAN GenBlock with {in_size} channels has no bottleneck channels")
        self.up_sample = up_sample
        self.bn_0 = BigGANBatchNorm(in_size, cond_dim, n_stats, eps)
        self.conv_0 = SNConv2d(in_size, mid, 1, eps=eps)
        self.bn_1 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.bn_2 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.bn_3 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = SNConv2d(mid, out_size, 1, eps=eps)
        self.out_size = out_size

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        x0 = x
        x = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        x = F.relu(self.bn_1(x, truncation, cond))
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(F.relu(self.bn_2(x, truncation, cond)))
        x = self.conv_3(F.relu(self.bn_3(x, truncation, cond)))
        x0 = x0[:, : self.out_size]
        if self.up_sample:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return x + x0


class _Generator(nn.Module):
    """Container giving the ``generator.*`` key prefix; the adapter runs its parts block by block."""

    def __init__(self, z_dim, embed_dim, ch, layers, attention_layer_position, n_stats, eps):
        super().__init__()
        cond_dim = z_dim + embed_dim
        self.c0 = ch * layers[0][1]
        self.gen_z = SNLinear(cond_dim, 4 * 4 * self.c0, eps=eps)
        mods = []
        for i, (up, c_in, c_out) in enumerate(layers):
            if i == attention_layer_position:
                mods.append(SelfAttn(ch * c_in, eps=eps))
            mods.append(GenBlock(ch * c_in, ch * c_out, cond_dim, bool(up), n_stats=n_stats, eps=eps))
        self.layers = nn.ModuleList(mods)
        self.bn = BigGANBatchNorm(ch * layers[-1][2], None, n_stats, eps)
        # HF keeps all ch output channels of the last conv and uses the first 3
        self.conv_to_rgb = SNConv2d(ch * layers[-1][2], ch, 3, padding=1, eps=eps)


class BigGAN(GeneratorAdapter):
    """BigGAN-deep generator adapter (HF pytorch-pretrained-BigGAN layout).

    z_dim (128), class_embed_dim (128), channel_width (128), num_classes (1000), layers: list of
    [up_sample, in_mult, out_mult] (HF config ``layers``), attention_layer_position (8),
    eps (1e-4, batch norm and spectral norm), n_stats (51), truncation in (0, 1] (selects the BN
    statistics and scales the truncated-normal z of ``sample_latent``), class_idx (optional
    default class), channels (image channels, 1 or 3; <= channel_width). Output
    (N, channels, R, R) with R = 4 * 2^(number of up-sampling layers), native range [-1, 1] (tanh)."""

    def __init__(self, z_dim: int = 128, class_embed_dim: int = 128, channel_width: int = 128, num_classes: int = 1000,
                 layers: Optional[Sequence[Sequence]] = None, attention_layer_position: int = 8, eps: float = 1e-4,
                 n_stats: int = 51, truncation: float = 1.0, class_idx: Optional[int] = None, channels: int = 3,
                 weights_id: Optional[str] = None):
        super().__init__()
        layers = [[bool(u), int(a), int(b)] for u, a, b in (layers if layers is not None else DEEP_128_LAYERS)]
        if not layers:
            raise BadInput("BigGAN needs at least one layer")
        if min(z_dim, class_embed_dim, num_classes) < 1 or channel_width < 3 or n_stats < 2:
            # conv_to_rgb has channel_width outputs of which the first 3 are the image
            raise BadInput("BigGAN needs z_dim, class_embed_dim, num_classes >= 1, channel_width >= 3 and n_stats >= 2")
        if not (0 < float(truncation) <= 1):
            raise BadInput(f"BigGAN truncation must be in (0, 1], got {truncation}")
        if channels not in (1, 3):
            raise BadInput(f"BigGAN channels must be 1 or 3, got {channels}")
        self.img_channels = channels
        if not is_int(attention_layer_position) or attention_layer_position < 0:
            # a position >= len(layers) means no attention layer (HF behaves the same)
            raise BadInput(f"BigGAN attention_layer_position must be an integer >= 0, got {attention_layer_position!r}")
        self.z_dim, self.embed_dim, self.ch, self.num_classes = z_dim, class_embed_dim, channel_width, num_classes
        self.layer_cfg, self.attn_pos = layers, attention_layer_position
        self.truncation = float(truncation)
        self.embeddings = nn.Linear(num_classes, class_embed_dim, bias=False)
        self.generator = _Generator(z_dim, class_embed_dim, channel_width, layers, attention_layer_position, n_stats, eps)
        resolution = 4 * 2 ** sum(1 for u, _, _ in layers if u)
        self.class_idx = None
        self.meta = GeneratorMeta(
            architecture="biggan", resolution=resolution, channels=channels, latent_kind="normal", native_range=(-1.0, 1.0),
            weights_id=weights_id,
            config={"z_dim": z_dim, "class_embed_dim": class_embed_dim, "channel_width": channel_width,
                    "num_classes": num_classes, "layers": layers, "attention_layer_position": attention_layer_position,
                    "eps": eps, "n_stats": n_stats, "truncation": self.truncation, "class_idx": None},
        )
        if channels != 3:
            self.meta.config["channels"] = channels  # only when not HF's 3: existing configs unchanged
        self.set_class(class_idx)

    def config(self) -> dict:
        """Constructor arguments (JSON-able)."""
        return dict(self.meta.config)

    # ---- class conditioning -------------------------------------------------------------------
    def set_class(self, idx: Optional[int]) -> None:
        """Choose the class (0..num_classes-1) used by ``sample_latent``/``init_state``, or None."""
        if idx is not None:
            if not is_int(idx) or not (0 <= idx < self.num_classes):
                raise BadInput(f"BigGAN class must be an integer in 0..{self.num_classes - 1}, got {idx!r}")
        self.class_idx = idx
        self.meta.config["class_idx"] = idx

    def class_embedding(self, idx, n: int = 1) -> torch.Tensor:
        """Embedding of class index ``idx`` (int, or a (N,) long tensor): (N, E), no gradient."""
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        if idx.numel() == 1 and n > 1:
            idx = idx.expand(n)
        if ((idx < 0) | (idx >= self.num_classes)).any():
            raise BadInput(f"BigGAN class must be in 0..{self.num_classes - 1}")
        with torch.no_grad():
            one_hot = F.one_hot(idx, self.num_classes).to(**self._placement())
            return self.embeddings(one_hot)

    def truncated_z(self, n: int, rng: Optional[torch.Generator] = None) -> torch.Tensor:
        """z ~ truncation * TruncatedNormal(-2, 2) (HF ``truncated_noise_sample``): (N, Z), drawn
        on the CPU by rejection (redraw entries outside [-2, 2]) for reproducibility."""
        z = torch.randn(n, self.z_dim, generator=rng)
        bad = z.abs() > 2
        while bad.any():
            z[bad] = torch.randn(int(bad.sum()), generator=rng)
            bad = z.abs() > 2
        return (z * self.truncation).to(**self._placement())

    def sample_latent(self, n: int, rng: Optional[torch.Generator] = None) -> State:
        """{"z": truncated normal (N, Z), "embed": class embedding (N, E)}; the class is the one
        set on the adapter, else drawn uniformly per sample from ``rng``."""
        z = self.truncated_z(n, rng)
        if self.class_idx is not None:
            idx = torch.full((n,), self.class_idx, dtype=torch.long)
        else:
            idx = torch.randint(0, self.num_classes, (n,), generator=rng)
        return OrderedDict(z=z, embed=self.class_embedding(idx, n))

    def init_state(self, c: int, n: int, init: str = "cn", rng: Optional[torch.Generator] = None) -> State:
        """As the base class; in addition, when a class is set, the class part of the state
        ("embed" at cut 0, the last E entries of "cond" later) starts at that class's embedding
        (``init`` then applies to z / the z part only)."""
        st = super().init_state(c, n, init, rng)
        if self.class_idx is not None and init != "prior":
            e = self.class_embedding(self.class_idx, n)
            if c == 0:
                st["embed"] = e
            else:
                st["cond"] = torch.cat([st["cond"][:, : self.z_dim], e], dim=1)
        return st

    # ---- training hooks -----------------------------------------------------------------------
    @classmethod
    def data_config(cls, channels: int, num_classes: int) -> dict:
        """As the base class, plus the data's number of classes."""
        return {"channels": channels, "num_classes": num_classes}

    def training_latent(self, n: int, rng: torch.Generator, labels: Optional[torch.Tensor] = None) -> State:
        """{"z": truncated normal, "embed": the embedding of ``labels`` (n,), with gradient into
        the embedding table, which trains with the generator}."""
        z = self.truncated_z(n, rng)
        return OrderedDict(z=z, embed=self.embeddings(F.one_hot(labels, self.num_classes).to(z.dtype)))

    def preview_latents(self, rng: torch.Generator):
        """Eight rows cycling through the classes (one column per class when there are 2..10)."""
        nrow = self.num_classes if 2 <= self.num_classes <= 10 else 8
        n = nrow * 8
        z = self.truncated_z(n, rng)
        return OrderedDict(z=z, embed=self.class_embedding(torch.arange(n) % self.num_classes, n)), nrow

    # ---- blocks -------------------------------------------------------------------------------
    def block_infos(self) -> List[BlockInfo]:
        cond = (self.z_dim + self.embed_dim,)
        c, r = self.generator.c0, 4
        infos = [BlockInfo("gen_z", {"z": (self.z_dim,), "embed": (self.embed_dim,)}, {"h": (c, r, r), "cond": cond}, ROLES)]
        n = len(self.generator.layers)
        for i, layer in enumerate(self.generator.layers):
            ins = {"h": (c, r, r), "cond": cond}
            if isinstance(layer, GenBlock):
                c, r = layer.out_size, r * (2 if layer.up_sample else 1)
                name = f"l{i}_block{r}"
            else:
                name = f"l{i}_attn{r}"
            out = {"img": (self.img_channels, r, r)} if i == n - 1 else {"h": (c, r, r), "cond": cond}
            infos.append(BlockInfo(name, ins, out, ROLES))
        return infos

    def run_block(self, i: int, state: State) -> State:
        g = self.generator
        if i == 0:
            cond = torch.cat([state["z"], state["embed"]], dim=1)
            h = g.gen_z(cond)
            # HF (from TF): the linear output is laid out (4, 4, C) per sample
            h = h.view(-1, 4, 4, g.c0).permute(0, 3, 1, 2).contiguous()
            return OrderedDict(h=h, cond=cond)
        layer = g.layers[i - 1]
        h, cond = state["h"], state["cond"]
        h = layer(h, cond, self.truncation) if isinstance(layer, GenBlock) else layer(h)
        if i == len(g.layers):
            h = g.conv_to_rgb(F.relu(g.bn(h, self.truncation)))
            return OrderedDict(img=torch.tanh(h[:, : self.img_channels]))
        return OrderedDict(h=h, cond=cond)
