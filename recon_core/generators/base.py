"""The GeneratorAdapter contract: a pretrained generator cut into an ordered list of blocks.

A *state* is a small ordered dict of named tensors (batch first): the inputs of a block. The
latent is the state entering block 0 (e.g. ``{"z": (N, 100)}``); the state entering block c is
what Generator Surgery, ILO and mGANprior optimise. Every adapter satisfies, for every cut c,
``tail(head(z, c), c) == forward(z)`` (tested for every architecture).

Every entry declares its *role* (``ROLES``) in its block's ``BlockInfo.roles``, so solvers and
training ask ``entries(c, role)`` for, say, the w+ latent or the noise inputs, never for a name.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import BadInput, UnknownName, is_int

State = Dict[str, torch.Tensor]


@dataclass
class GeneratorMeta:
    """Static description of an adapter.

    native_range: the generator's raw output range, mapped linearly to [0, 1] by ``tail``."""

    architecture: str
    resolution: int
    channels: int
    latent_kind: str = "normal"
    native_range: Tuple[float, float] = (-1.0, 1.0)
    weights_id: Optional[str] = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


#: what a state entry is: the prior's latent (cut 0), feature maps, a skip input carried past
#: blocks (BEGAN's h0), a w+ latent (n_layers, dim), per-layer noise inputs, a conditioning vector
#: (BigGAN's class embedding and z), or an image (the output, StyleGAN2's running rgb)
ROLES = ("latent", "features", "skip", "w+", "noise", "conditioning", "image")


@dataclass
class BlockInfo:
    """One block: its name, the per-sample shapes of the state it takes and returns, and the
    role (one of ``ROLES``) of each of those entries. ``roles`` may be a table of the adapter
    covering more names; the block keeps the entries of its own states and refuses a missing or
    unknown role (ValueError: an adapter bug, not a user error)."""

    name: str
    in_shapes: Dict[str, Tuple[int, ...]]
    out_shapes: Dict[str, Tuple[int, ...]]
    roles: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        names = list(dict.fromkeys([*self.in_shapes, *self.out_shapes]))
        for k in names:
            if self.roles.get(k) not in ROLES:
                raise ValueError(f"block {self.name}: state entry '{k}' has role {self.roles.get(k)!r}, not one of {ROLES}")
        self.roles = {k: self.roles[k] for k in names}


class GeneratorAdapter(nn.Module):
    """Base class of every generator adapter.

    Subclasses set ``self.meta``, build their layers, and implement ``block_infos()`` and
    ``run_block(i, state)``. The last block returns ``{"img": native-range image}``."""

    meta: GeneratorMeta

    # ---- to implement ---------------------------------------------------------------------
    def block_infos(self) -> List[BlockInfo]:
        """The ordered blocks with their state shapes (per sample, no batch axis)."""
        raise NotImplementedError

    def run_block(self, i: int, state: State) -> State:
        """Apply block i to ``state`` (the inputs of block i) -> inputs of block i+1."""
        raise NotImplementedError

    # ---- the contract ---------------------------------------------------------------------
    @property
    def blocks(self) -> List[BlockInfo]:
        """Ordered blocks (cached)."""
        if getattr(self, "_blocks", None) is None:
            self._blocks = self.block_infos()
        return self._blocks

    @property
    def cut_points(self) -> List[int]:
        """Valid cut indices: 0 (the latent, i.e. no surgery) .. number of blocks - 1."""
        return list(range(len(self.blocks)))

    def check_cut(self, c: int) -> int:
        """Return c (as a Python int) if it is a valid cut point, else raise BadInput naming the
        valid range (a bool is not a cut: True would have been cut 1)."""
        if not is_int(c) or c not in self.cut_points:
            raise BadInput(
                f"cut {c} is outside the cut points of {self.meta.architecture} "
                f"(valid: 0..{self.cut_points[-1]})"
            )
        return int(c)

    def state_shapes(self, c: int) -> Dict[str, Tuple[int, ...]]:
        """Per-sample shapes of the state entering block c."""
        return dict(self.blocks[self.check_cut(c)].in_shapes)

    def entries(self, c: int, *roles: str) -> List[str]:
        """Names of the entries of the state entering block c whose role is one of ``roles``, in
        state order (UnknownName for a role outside ``ROLES``)."""
        for r in roles:
            if r not in ROLES:
                raise UnknownName("state role", r, ROLES)
        info = self.blocks[self.check_cut(c)]
        return [k for k in info.in_shapes if info.roles[k] in roles]

    def latent_dim(self, c: int = 0) -> int:
        """Total number of scalars in the state entering block c."""
        n = 0
        for s in self.state_shapes(c).values():
            k = 1
            for d in s:
                k *= d
            n += k
        return n

    def _placement(self) -> dict:
        """Device and floating dtype of the adapter's parameters (latents are made to match)."""
        p = next(self.parameters(), None)
        return {"device": p.device, "dtype": p.dtype} if p is not None else {"device": torch.device("cpu"), "dtype": torch.float32}

    def sample_latent(self, n: int, rng: Optional[torch.Generator] = None) -> State:
        """Draw n latents from the prior (normal or uniform[-1,1]), drawn on the CPU for
        device-independent reproducibility, then moved to the adapter's device."""
        out = OrderedDict()
        for name, shape in self.state_shapes(0).items():
            if self.meta.latent_kind == "uniform":
                t = torch.rand((n,) + tuple(shape), generator=rng) * 2 - 1
            else:
                t = torch.randn((n,) + tuple(shape), generator=rng)
            out[name] = t.to(**self._placement())
        return out

    def init_state(self, c: int, n: int, init: str = "cn", rng: Optional[torch.Generator] = None) -> State:
        """An initial state at cut c for optimisation (Generator Surgery).

        init: "cn" censored normal clamp(N(0,1), -1, 1) (the paper's choice), "zero", "normal"
        N(0,1), "uniform" U[-1,1], or "prior": latents drawn from the prior and carried to cut c
        by the first c blocks (a natural start for structured states such as StyleGAN2's w+)."""
        if init == "prior":
            with torch.no_grad():
                return self.head(self.sample_latent(n, rng), c)
        out = OrderedDict()
        for name, shape in self.state_shapes(c).items():
            size = (n,) + tuple(shape)
            if init == "cn":
                t = torch.randn(size, generator=rng).clamp_(-1, 1)
            elif init == "zero":
                t = torch.zeros(size)
            elif init == "normal":
                t = torch.randn(size, generator=rng)
            elif init == "uniform":
                t = torch.rand(size, generator=rng) * 2 - 1
            else:
                raise UnknownName("init", init, ("cn", "zero", "normal", "uniform", "prior"))
            out[name] = t.to(**self._placement())
        return out

    def advance(self, state: State, start: int, stop: int) -> State:
        """Carry the state entering block ``start`` to the state entering block ``stop``
        (start <= stop): runs blocks start..stop-1."""
        self.check_cut(start)
        self.check_cut(stop)
        if stop < start:
            raise BadInput(f"cannot carry a state from cut {start} back to cut {stop}")
        for i in range(start, stop):
            state = self.run_block(i, state)
        return state

    def head(self, latent: State, upto: int) -> State:
        """Run blocks 0..upto-1: the state entering block ``upto`` (upto=0 returns the latent)."""
        return self.advance(latent, 0, upto)

    def tail(self, state: State, start: int = 0) -> torch.Tensor:
        """Run blocks start..end and map the output to [0, 1]: (N, C, R, R)."""
        self.check_cut(start)
        for i in range(start, len(self.blocks)):
            state = self.run_block(i, state)
        return self.to_unit(state["img"])

    # ---- training hooks (recon_core.training); the defaults suit unconditional generators ----
    @classmethod
    def data_config(cls, channels: int, num_classes: int) -> dict:
        """The constructor arguments a training run takes from its data (its image channels and
        classes); a run's config may not override them."""
        return {"channels": channels}

    def training_latent(self, n: int, rng: torch.Generator, labels: Optional[torch.Tensor] = None) -> State:
        """n latents to train on, drawn from ``rng``, differentiable in whatever trained module
        makes them (``labels``: (n,) classes, for class-conditional generators only)."""
        return self.sample_latent(n, rng)

    def preview_latents(self, rng: torch.Generator) -> Tuple[State, int]:
        """(latents, images per row) of the sample grids a training run writes."""
        return self.sample_latent(64, rng), 8

    def after_training(self) -> None:
        """Fill, on a trained copy about to be saved, what training does not keep up to date
        (nothing by default)."""

    def forward(self, latent) -> torch.Tensor:  # noqa: D401
        """G(z): image in [0, 1], (N, C, R, R). ``latent``: a state as ``sample_latent`` gives,
        or, for a latent of one entry, a plain tensor (N, *shape) of it (see ``as_latent``)."""
        return self.tail(self.as_latent(latent), 0)

    def as_latent(self, latent) -> State:
        """``latent`` as a state: a dict passes through; a plain tensor (N, *shape), or one
        latent (*shape), becomes the single latent entry (BadInput for a latent of several
        entries, e.g. BigGAN's z and class embedding, or a wrong shape)."""
        if not isinstance(latent, torch.Tensor):
            return latent
        shapes = self.state_shapes(0)
        if len(shapes) != 1:
            raise BadInput(f"{self.meta.architecture}'s latent has entries {', '.join(shapes)}: pass a dict "
                           "(e.g. G.sample_latent(n)), not one tensor")
        (name, shape), = shapes.items()
        if tuple(latent.shape) == tuple(shape):
            latent = latent.unsqueeze(0)
        if tuple(latent.shape[1:]) != tuple(shape):
            raise BadInput(f"latent of shape {tuple(latent.shape)} for {self.meta.architecture}: expected (N, {', '.join(map(str, shape))})")
        return OrderedDict([(name, latent.to(**self._placement()))])

    def sample(self, n: int, rng=None) -> torch.Tensor:
        """n images from the prior, G(z) with z drawn as ``sample_latent`` draws it: (n, C, R, R)
        in [0, 1], without gradients. ``rng``: a torch.Generator, an int seed, or None."""
        if not is_int(n) or n < 1:
            raise BadInput(f"sample: n must be a positive integer, got {n!r}")
        if is_int(rng):
            rng = torch.Generator().manual_seed(int(rng))  # int(): NumPy integers too
        with torch.no_grad():
            return self.forward(self.sample_latent(int(n), rng))

    def to_unit(self, raw: torch.Tensor) -> torch.Tensor:
        """Map the native output range linearly to [0, 1] and clamp (never min-max normalise)."""
        lo, hi = self.meta.native_range
        return ((raw - lo) / (hi - lo)).clamp(0, 1)
