"""The Deep Decoder (Heckel & Hand 2019): an untrained, under-parameterised image model.

Architecture (as in the authors' reference code, ``decodernw(num_channels_up=[k] * depth)``):

    input  B0: fixed random tensor (k, H/2^d, W/2^d), entries U[0, 0.1] (the reference's init)
    d x    [1x1 conv k->k (no bias) -> bilinear x2 upsample -> ReLU -> channel norm]
    1 x    [1x1 conv k->k (no bias) -> ReLU -> channel norm]          (full resolution)
    out    1x1 conv k->C (no bias) -> sigmoid                          -> image in (0, 1)

``depth`` d counts the upsampling layers (the reference's ``len(num_channels_up)``); the paper's
"number of layers" is d + 1 (its last layer does not upsample). With this count the parameter
number is (d+1) k^2 + 2 k (d+1) + C k, and the paper's 64 px example (depth 5, k = 44) is exactly
the largest k with fewer parameters than n = 12288 (``choose_width``). The Generator Surgery
paper's 128 px setting "d = 6, k = 89" counts layers (the paper's convention): it is depth 5 here
(6 layers, 5 upsamplings, 89 = the largest k below n = 49152); depth 6 here gives k = 82.

Channel norm: the reference applies ``BatchNorm2d(affine=True)`` in training mode to a batch of
one image, i.e. each channel is normalised over its H x W pixels, then scaled and shifted by a
learned (gamma, beta). We compute exactly that per sample, so several decoders (restarts) can be
evaluated as one batch without BatchNorm mixing their statistics.

Every weight carries a leading *restart* axis R: the 1x1 convolutions are per-restart matrix
products (``einsum``), so R independent decoders run as one batched computation and their
parameters form a ``State`` that ``solvers.common.optimise_state`` can optimise directly.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInput, is_int

#: entries of the fixed random input are U[0, INPUT_SCALE] (reference: uniform_() * 1/10)
INPUT_SCALE = 0.1
#: BatchNorm2d's default epsilon, used by the reference's channel normalisation
NORM_EPS = 1e-5


def num_params(width: int, depth: int, channels: int) -> int:
    """Number of optimised scalars of one Deep Decoder: (d+1) k^2 conv weights, 2 k (d+1) norm
    scales and shifts, C k output weights (k = width, d = depth, C = channels)."""
    return (depth + 1) * width * width + 2 * width * (depth + 1) + channels * width


def _check_shape(img_shape, depth: int) -> Tuple[int, int, int]:
    if not (is_int(depth) and depth >= 0):
        raise BadInput(f"deep decoder depth must be an integer >= 0, got {depth!r}")
    if len(img_shape) != 3 or min(img_shape) < 1:
        raise BadInput(f"deep decoder img_shape must be (C, H, W), got {tuple(img_shape)}")
    C, H, W = (int(s) for s in img_shape)
    f = 2**depth
    if H % f or W % f:
        # the input is H/2^d x W/2^d and each layer doubles it: the sizes must divide exactly
        raise BadInput(
            f"deep decoder depth {depth} needs H and W divisible by 2^{depth} = {f}, got {H}x{W}; use a smaller depth"
        )
    return C, H, W


def choose_width(img_shape, m: int, depth: int) -> int:
    """The largest width k whose decoder has fewer than ``m`` parameters (under-parameterised).

    img_shape: (C, H, W); m: number of measurements (the bound); depth: upsampling layers.
    Raises BadInput when even k = 1 has m or more parameters. Example: (3, 64, 64), m = 12288,
    depth 5 -> 44 (the paper's setting)."""
    C, _, _ = _check_shape(img_shape, depth)
    if not (is_int(m) and m >= 1):
        raise BadInput(f"number of measurements m must be a positive integer, got {m!r}")
    # solve (d+1) k^2 + (2(d+1) + C) k < m for the largest integer k, then fix rounding
    a, b = depth + 1, 2 * (depth + 1) + C
    k = int((-b + math.sqrt(b * b + 4 * a * m)) / (2 * a))
    while k > 0 and num_params(k, depth, C) >= m:
        k -= 1
    while num_params(k + 1, depth, C) < m:
        k += 1
    if k < 1:
        raise BadInput(
            f"a depth-{depth} deep decoder has at least {num_params(1, depth, C)} parameters, "
            f"not fewer than m = {m}; use more measurements or a smaller depth"
        )
    return k


def init_params(img_shape, width: int, depth: int, n: int = 1, rng: Optional[torch.Generator] = None,
                device="cpu", dtype=torch.float32) -> "OrderedDict[str, torch.Tensor]":
    """Initial weights of ``n`` independent decoders, each tensor with a leading axis of size n.

    Keys: ``conv{i}`` (n, k, k) for i = 0..depth, ``gamma{i}``/``beta{i}`` (n, k), ``out`` (n, C, k).
    Conv weights follow PyTorch's default Conv2d init, U(-1/sqrt(k), 1/sqrt(k)) for a 1x1 kernel
    (what the reference gets); norm scales 1 and shifts 0 (BatchNorm's init). Drawn on the CPU
    from ``rng`` so results do not depend on the device."""
    C, _, _ = _check_shape(img_shape, depth)
    if not (is_int(width) and width >= 1):
        raise BadInput(f"deep decoder width must be a positive integer, got {width!r}")
    k = width
    bound = 1.0 / math.sqrt(k)
    p = OrderedDict()
    for i in range(depth + 1):
        p[f"conv{i}"] = (torch.rand((n, k, k), generator=rng) * 2 - 1) * bound
        p[f"gamma{i}"] = torch.ones(n, k)
        p[f"beta{i}"] = torch.zeros(n, k)
    p["out"] = (torch.rand((n, C, k), generator=rng) * 2 - 1) * bound
    return OrderedDict((key, v.to(device=device, dtype=dtype)) for key, v in p.items())


def init_input(img_shape, width: int, depth: int, n: int = 1, rng: Optional[torch.Generator] = None,
               device="cpu", dtype=torch.float32) -> torch.Tensor:
    """The fixed random input B0 of ``n`` decoders: (n, k, H/2^d, W/2^d), entries U[0, 0.1]."""
    _, H, W = _check_shape(img_shape, depth)
    f = 2**depth
    t = torch.rand((n, width, H // f, W // f), generator=rng) * INPUT_SCALE
    return t.to(device=device, dtype=dtype)


def _channel_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Per sample and channel over H x W with the biased variance (BatchNorm2d in training mode
    on a batch of one), then each restart's own scale gamma (n, k) and shift beta (n, k).

    One fused ``F.group_norm`` over the n x k (restart, channel) planes as the channels of one
    sample, with one group per plane: exactly this normalisation, and its affine weights are then
    per plane, i.e. per restart and channel. Written out as mean / var / divide it was 3-4x slower
    on a CPU, and the group norm without affine followed by an ``addcmul`` 2.5-3x slower forward
    plus backward (the addcmul's broadcast backward), by hand 2026-12-03: the decoder's small
    tensors make such per-op costs most of a step."""
    n, k, h, w = x.shape
    if h * w > 1:
        return F.group_norm(x.reshape(1, n * k, h, w), n * k, gamma.reshape(-1), beta.reshape(-1),
                            eps=NORM_EPS).reshape(n, k, h, w)
    # one pixel: x - mean(x) = 0 (group_norm refuses a single value per channel)
    return torch.addcmul(beta[:, :, None, None], x * 0.0, gamma[:, :, None, None])


#: below this size the library's bilinear kernel is faster than the two matrix products
_UPSAMPLE_MATMUL_MIN = 16


@functools.lru_cache(maxsize=32)
def _upsample_matrix(size: int, device, dtype) -> torch.Tensor:
    """(2 size, size): bilinear x2 upsampling along one axis (align_corners=False), taken from
    ``F.interpolate`` itself on the identity, so its weights and edge handling are the library's."""
    eye = torch.eye(size, device=device, dtype=dtype)[None]
    return F.interpolate(eye, scale_factor=2, mode="linear", align_corners=False)[0].T.contiguous()


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (align_corners=False) of x (n, k, h, w) -> (n, k, 2h, 2w).

    Bilinear upsampling is separable: for h, w >= 16 it runs as two matrix products with the
    per-axis matrices (``_upsample_matrix``), 2-3x faster forward plus backward than the
    library's CPU kernel at the decoder's sizes (by hand, 2026-12-03); equal up to float rounding."""
    n, k, h, w = x.shape
    if min(h, w) < _UPSAMPLE_MATMUL_MIN:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    uh, uw = _upsample_matrix(h, x.device, x.dtype), _upsample_matrix(w, x.device, x.dtype)
    return torch.matmul(uh, torch.matmul(x.reshape(n * k, h, w), uw.T)).reshape(n, k, 2 * h, 2 * w)


def _conv1x1(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-restart 1x1 convolution without bias: w (n, k_out, k_in), x (n, k_in, h, w) ->
    (n, k_out, h, w), as one batched matrix product (einsum's dispatch cost per call is a
    visible share of a step on the decoder's small tensors)."""
    n, c, h, wd = x.shape
    return torch.bmm(w, x.reshape(n, c, h * wd)).reshape(n, w.shape[1], h, wd)


def decode(params, net_input: torch.Tensor) -> torch.Tensor:
    """Run n decoders: params as from ``init_params`` (leading axis n), net_input (n, k, h, w)
    -> images (n, C, h 2^d, w 2^d) in (0, 1)."""
    depth = sum(1 for key in params if key.startswith("conv")) - 1
    x = net_input
    for i in range(depth + 1):
        # a 1x1 convolution without bias is a per-pixel matrix product with the (k_out, k_in) weight
        x = _conv1x1(params[f"conv{i}"], x)
        if i < depth:
            x = _upsample2(x)
        x = F.relu(x)
        x = _channel_norm(x, params[f"gamma{i}"], params[f"beta{i}"])
    return torch.sigmoid(_conv1x1(params["out"], x))


class DeepDecoder(nn.Module):
    """One (or ``n`` batched) Deep Decoder(s) as a module: ``forward()`` -> (n, C, H, W) in (0, 1).

    img_shape: (C, H, W); width k (see ``choose_width``); depth d (upsampling layers, see the
    module docstring). The random input is a buffer (fixed, never optimised)."""

    def __init__(self, img_shape, width: int, depth: int = 5, n: int = 1, rng: Optional[torch.Generator] = None):
        super().__init__()
        self.img_shape, self.width, self.depth, self.n = tuple(int(s) for s in img_shape), width, depth, n
        self.params = nn.ParameterDict(
            {k: nn.Parameter(v) for k, v in init_params(img_shape, width, depth, n, rng).items()}
        )
        self.register_buffer("net_input", init_input(img_shape, width, depth, n, rng))

    def num_params(self) -> int:
        """Parameters of one decoder (per restart), as in the paper's |theta|."""
        return num_params(self.width, self.depth, self.img_shape[0])

    def forward(self) -> torch.Tensor:  # noqa: D401
        """The decoders' images (n, C, H, W) in (0, 1)."""
        return decode(OrderedDict(self.params.items()), self.net_input)
