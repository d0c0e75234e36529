"""RTIL generators (Gunn, Cocola, Hand): the plain generator and its perturbed / multi-code
relatives, sharing every weight, written only against the adapter contract (blocks and states).

Through the contract: ``head(z, c)`` is the state entering cut c, ``advance(state, a, b)`` carries a
state from cut a to cut b, ``run_block(i, state)`` is block i. ``render`` runs the rest of the
generator and maps the native range *affinely* to [-1, 1]: ``tail`` clamps to [0, 1], which would
zero the gradient of every pixel outside the range (a pixel stuck below black could never come
back), so training never goes through the clamp; it runs the last block with ``run_block``.
Images here are in [-1, 1] (the discriminators' range); ``render(...) == tail(...) * 2 - 1``
wherever tail does not clamp.

- RTIL-ILO: G~(z0, z1) = g1(z1 + g0(z0)), z1 ~ N(0, sigma^2 I) added to every feature map of the
  state (the entries whose role is features or skip, per-sample shape (C, H, W); not StyleGAN2's
  running rgb image or noise inputs, not vectors such as BigGAN's conditioning or w+). With layers l_1 < ... < l_K the family is G_0 = G (plain) and
  G_k = noise at l_1..l_k (nested, as the reference code's rtil=k generators: noise after conv1 and
  after each of the first k-1 blocks), so ILO's round k optimises a layer that was perturbed, with
  every earlier one, during training. The reference code adds N(0, 1) (sigma = 1, its default
  here) and draws an independent z0 for each generator of the family.
- RTIL-mGAN: x = g1(sum_j alpha'_j g0(z_j)), alpha' ~ Dir_N(1) (flat Dirichlet, drawn as
  normalised Exp(1) variables), one scalar per code applied to every entry of the state at the
  composing layer (so every channel is weighted equally, as in the paper); trained jointly with
  the plain generator (and possibly several N: the reference trains plain, 10 and 20 codes).

Randomness comes from callables so the trainer decides the stream (and the data-parallel shard):
``randn(shape)`` returns (B, *shape) standard normal noise.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, List, Sequence

import torch

from ..errors import BadInput
from ..generators.base import GeneratorAdapter, State

Randn = Callable[[tuple], torch.Tensor]


def render(g: GeneratorAdapter, state: State, start: int) -> torch.Tensor:
    """Blocks start..end, native range mapped affinely (no clamp) to [-1, 1]: (N, C, R, R)."""
    last = len(g.blocks) - 1
    raw = g.run_block(last, g.advance(state, start, last))["img"]
    lo, hi = g.meta.native_range
    return (raw - lo) * (2.0 / (hi - lo)) - 1.0


def feature_names(g: GeneratorAdapter, cut: int) -> List[str]:
    """Entries of the state entering ``cut`` that are feature maps (role features or skip), i.e.
    what RTIL-ILO perturbs; not StyleGAN2's running rgb image nor its noise inputs."""
    return g.entries(cut, "features", "skip")


def check_layers(g: GeneratorAdapter, layers: Sequence[int], start: int = 0, what: str = "layers") -> List[int]:
    """Sorted unique intermediate cuts in start..len(blocks)-1 (>= 1), each with a feature entry."""
    last = len(g.blocks) - 1
    out = sorted(set(int(l) for l in layers))
    if not out:
        raise BadInput(f"--{what} needs at least one layer")
    for l in out:
        if not (max(1, start) <= l <= last):
            raise BadInput(f"{what} {l} is not an intermediate layer of this {g.meta.architecture} (valid: {max(1, start)}..{last})")
        if what == "layers" and not feature_names(g, l):
            raise BadInput(f"layer {l} of {g.meta.architecture} has no feature map to perturb")
    return out


def perturb(g: GeneratorAdapter, state: State, cut: int, sigma: float, randn: Randn) -> State:
    """state + z1 on every feature entry, z1 ~ N(0, sigma^2 I); other entries unchanged."""
    out = OrderedDict(state)
    for name in feature_names(g, cut):
        t = state[name]
        out[name] = t + sigma * randn(tuple(t.shape[1:])).to(device=t.device, dtype=t.dtype)
    return out


def ilo_image(g: GeneratorAdapter, state: State, start: int, layers: Sequence[int], sigma: float, randn: Randn) -> torch.Tensor:
    """G_k with noise at every cut of ``layers`` (sorted, >= start): [-1, 1] images (N, C, R, R).
    ``layers`` empty gives the plain generator."""
    cur = start
    for l in layers:
        state = perturb(g, g.advance(state, cur, l), l, sigma, randn)
        cur = l
    return render(g, state, cur)


def dirichlet_flat(n: int, k: int, rand: Callable[[tuple], torch.Tensor]) -> torch.Tensor:
    """n draws of a flat Dirichlet Dir_k(1): (n, k), rows on the simplex. ``rand(shape)`` gives
    U(0, 1) samples (n, *shape); -log U ~ Exp(1), normalised."""
    e = -torch.log(rand((k,)).clamp_min(1e-12))
    return e / e.sum(1, keepdim=True)


def mix(states: State, n_codes: int, alpha: torch.Tensor) -> State:
    """Mix a code-major batch: every entry (N*B, ...) -> sum_j alpha[:, j] * entry[j*B:(j+1)*B] (B, ...)."""
    b = alpha.shape[0]
    out = OrderedDict()
    for name, t in states.items():
        t = t.reshape(n_codes, b, *t.shape[1:])
        a = alpha.t().reshape(n_codes, b, *([1] * (t.dim() - 2))).to(t.dtype)
        out[name] = (a * t).sum(0)
    return out


def mgan_image(g: GeneratorAdapter, states: State, start: int, layer: int, n_codes: int, alpha: torch.Tensor) -> torch.Tensor:
    """x = g1(sum_j alpha_j g0(z_j)): ``states`` is the code-major batch (N*B entries at ``start``),
    alpha (B, N). The N*B codes go through g0 as one batch. Returns [-1, 1] images (B, C, R, R)."""
    return render(g, mix(g.advance(states, start, layer), n_codes, alpha), layer)
