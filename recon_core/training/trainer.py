"""Train a generator of any architecture, vanilla or with RTIL, resumable and data-parallel.

``train(config, on_event) -> dict`` (the run.json record). A run directory holds:

- ``checkpoint.pt``: the generator in the project's own format (``checkpoints.checkpoint_bytes``;
  the EMA generator for the families that keep one), loadable with ``load_checkpoint`` /
  ``recon reconstruct --prior PATH``; extra key ``training`` (step, mode, data, run config).
- ``trainer_state.pt``: everything needed to continue bit for bit: raw G, D, EMA, both Adam
  states, BEGAN's k, the step, images seen, the data order (permutation, position, epoch) and every
  RNG state (torch CPU (+CUDA), numpy, python ``random``, the latent stream, the data-order stream).
  Tensors and plain containers only (read back with ``weights_only=True``).
- ``samples_XXXXXX.png``: a grid of samples from fixed latents (the same in every grid and after a
  resume), from the generator that is saved, in eval mode.
- ``run.json``: the full config, hyperparameters, steps done, wall time, data, parameter counts,
  world size and the exact command.

Files are written atomically (temp file + rename), trainer_state first: a run killed at any moment
resumes from the last complete trainer state. Only rank 0 writes.

Families (values: the registry entries, generators/registry.py; losses: ``objectives.py`` over
``losses.py``; discriminators: ``discriminators.py``; Adam (beta1, beta2)):

| arch | loss | lr G / D | betas | extra | source |
|---|---|---|---|---|---|
| dcgan | non-saturating | 2e-4 / 2e-4 | (0.5, 0.999) | N(0, 0.02) init | Radford et al. 2016; pytorch/examples |
| began | boundary equilibrium | 1e-4 / 1e-4 | (0.5, 0.999) | gamma 0.5, lambda_k 1e-3, k_0 0 | Berthelot et al. 2017 (lr, gamma, lambda_k); betas as carpedm20's BEGAN |
| vae | ELBO, Gaussian decoder std 0.1 | 1e-3 | (0.9, 0.999) | KL weight 1 | Kingma & Welling 2014; Kingma & Ba defaults |
| stylegan2 | non-saturating + lazy R1 | 2.5e-3 / 2.5e-3 | (0, 0.99) | R1 gamma 2e-4 R^2/B every 16 steps, EMA half-life B*10/32 kimg (ramp-up 0.05) | StyleGAN2-ADA "auto" config; rosinality/RTIL reference: lazy R1 interval 16 |
| pggan | non-saturating + lazy R1 | 1e-3 / 1e-3 | (0, 0.99) | R1 as StyleGAN2, EMA half-life 10 kimg | Karras et al. 2018 (lr, betas, G smoothing 10 kimg); R1 instead of WGAN-GP (see below) |
| biggan | hinge | 2e-4 / 2e-4 | (0, 0.999) | 2 D steps per G step, EMA half-life 10 kimg | BigGAN-PyTorch CIFAR script (lr, betas; it uses 4 D steps); Brock et al. 2019 (2 D steps) |

Deviations, on purpose: PGGAN trains at its final resolution (no progressive growing) with the
non-saturating loss + R1 rather than WGAN-GP (the RTIL mGAN reference code uses WGAN-GP with
growing); R1 is applied in the same D update every ``r1_every`` steps, scaled by ``r1_every`` (lazy
regularisation; no separate optimiser step, hence no Adam ratio correction); StyleGAN2 has no path
length regulariser and no style mixing; its noise inputs are drawn fresh per sample while training
(rosinality's ``randomize_noise``), the fixed buffers are used at inference; BigGAN's batch norms use
batch statistics while training (see the adapter). EMA follows StyleGAN2-ADA: after each step
beta = 0.5 ** (B / ema_nimg), ema_nimg = min(ema_kimg * 1000, images_seen * ema_rampup) (a
half-life of ema_kimg thousand images, shorter early on); buffers are copied.

Modes: ``vanilla``; ``rtil-ilo`` (G and the nested perturbed generators G_1..G_K at ``layers``,
losses averaged, see rtil.py); ``rtil-mgan`` (G and one N-code mixed generator per entry of
``codes`` at ``mgan_layer``, losses averaged). For the VAE (no discriminator) the ELBO's
reconstruction term is averaged over the same family of decoders (perturbed decoders reconstruct
x from its posterior sample; the mixed decoder mixes N posterior samples of x): an extension of
RTIL to a non-GAN model, as the paper suggests but does not spell out.

Data parallel: under ``torchrun`` (RANK/WORLD_SIZE set) the process group is initialised (gloo on
CPU, nccl on CUDA) and the G and D updates run through DistributedDataParallel. All randomness
is drawn for the global batch B on every rank and each rank takes its shard (B / world size
samples), so every rank sees the same latents a single process would, and parameters stay
identical (DDP averages the gradients; buffers are broadcast from rank 0).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import BadInput, ReconError, UnknownName, is_int, is_real
from ..events import Event, EventSink, null_sink
from ..generators import registry
from ..generators.checkpoints import build_adapter, checkpoint_bytes
from ..images import atomic_write_bytes, atomic_write_text, make_grid, save_image
from .data import check_spec, load_source
from .discriminators import build_discriminator
from .objectives import build_objective
from .rtil import check_layers, dirichlet_flat, ilo_image, mgan_image, render

MODES = ("vanilla", "rtil-ilo", "rtil-mgan")
STATE_FORMAT = "recon-trainer-state"
STATE_VERSION = 1
RUN_SCHEMA = 1
STATE_FILE, CKPT_FILE, RUN_FILE = "trainer_state.pt", "checkpoint.pt", "run.json"
#: seeds of the independent streams derived from --seed
LATENT_SEED_OFFSET, DATA_SEED_OFFSET, SAMPLE_SEED_OFFSET = 1, 2, 3

#: the per-architecture defaults (generator and discriminator widths for a small 32 px model,
#: chosen so that a CPU run of ~20 minutes sees tens of thousands of images: 64 channels up to
#: 16 px, 32 at 32 px for StyleGAN2/PGGAN; the training hyperparameters of the table above) are
#: in the architecture's registry entry; raise the widths with --config-json for longer budgets.
#: Hyperparameters of every architecture:
COMMON_HYPER = {"adam_eps": 1e-8, "ema_rampup": 0.05, "ilo_nested": True}
DEFAULT_MGAN_LAYER = 2


@dataclass
class TrainConfig:
    """Everything that defines a run. ``generator``/``discriminator``: width overrides merged
    into the registry entry's train_generator/train_discriminator; ``hyper``: overrides of its
    train_hyper (lr/lr_d also via their own fields); layers/sigma (rtil-ilo), codes/mgan_layer
    (rtil-mgan): None = defaults."""

    arch: str
    data: str
    out: str
    mode: str = "vanilla"
    steps: int = 1000
    batch: int = 32
    resolution: int = 32
    channels: Optional[int] = None
    layers: Optional[List[int]] = None
    sigma: Optional[float] = None
    codes: Optional[List[int]] = None
    mgan_layer: Optional[int] = None
    lr: Optional[float] = None
    lr_d: Optional[float] = None
    checkpoint_every: int = 500
    sample_every: int = 500
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    force: bool = False
    generator: dict = field(default_factory=dict)
    discriminator: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)
    command: Optional[str] = None

    def to_dict(self) -> dict:
        """The config as a plain dict (run.json, the trainer state)."""
        return asdict(self)


#: config fields that may change when resuming (everything else must match the saved run)
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "sample_every", "device", "resume", "force", "command", "out"}


# ---- distributed helpers -----------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist


def dist_env() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 when absent)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _all_mean(values: Dict[str, float], world: int, device) -> Dict[str, float]:
    """Average scalar statistics over ranks (identity for one process)."""
    if world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    _dist().all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def _broadcast_buffers(module: Optional[nn.Module], world: int) -> None:
    if module is None or world == 1:
        return
    for b in module.buffers():
        _dist().broadcast(b, 0)


# ---- small pieces --------------------------------------------------------------------------------
class DataOrder:
    """Reshuffled epochs over n items from its own generator; ``next(b)`` -> b indices.
    ``state()``/``load()`` make it resumable exactly."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.rng = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.rng)
        self.pos, self.epoch = 0, 0

    def next(self, b: int) -> torch.Tensor:
        """The next b indices, continuing into a fresh permutation at the end of an epoch."""
        out = []
        while b > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.rng)
                self.pos, self.epoch = 0, self.epoch + 1
            take = min(b, self.n - self.pos)
            out.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            b -= take
        return torch.cat(out)

    def state(self) -> dict:
        """Permutation, position, epoch and generator state."""
        return {"perm": self.perm.clone(), "pos": self.pos, "epoch": self.epoch, "rng": self.rng.get_state()}

    def load(self, s: dict) -> None:
        """Restore what ``state`` returned."""
        self.perm, self.pos, self.epoch = s["perm"].clone(), int(s["pos"]), int(s["epoch"])
        self.rng.set_state(s["rng"])


def rng_states(latent_rng: torch.Generator) -> dict:
    """Every RNG state (torch CPU and CUDA, numpy, python random, the latent stream) as tensors
    and plain containers."""
    np_state = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "latent": latent_rng.get_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(s: dict, latent_rng: torch.Generator) -> None:
    """Restore what ``rng_states`` returned."""
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    latent_rng.set_state(s["latent"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def resolve_config(cfg: TrainConfig, data_channels: int, num_classes: int) -> Tuple[dict, dict, dict]:
    """(generator config, discriminator config, hyperparameters) of a run, the architecture's
    registry defaults filled in."""
    arch = cfg.arch
    entry = registry.get(arch)
    from_data = entry.adapter.data_config(data_channels, num_classes)
    gen = {**entry.train_generator, **entry.train_args(cfg.resolution), **from_data}
    for k, v in cfg.generator.items():
        # the data's classes are never the config's, even for an unconditional generator
        if (k in from_data or k == "num_classes") and v != gen.get(k):
            raise BadInput(f"generator '{k}' is set by the data ({gen.get(k)}), not by --config-json ({v})")
        gen[k] = v
    disc = {**entry.train_discriminator, **cfg.discriminator}
    hyper = {**COMMON_HYPER, "loss": entry.objective, **entry.train_hyper}
    for k, v in cfg.hyper.items():
        if k not in hyper or k == "loss":
            raise BadInput(f"unknown training option '{k}' for {arch}; choose from: {', '.join(sorted(h for h in hyper if h != 'loss'))}")
        hyper[k] = v
    if cfg.lr is not None:
        hyper["lr"] = cfg.lr
    if cfg.lr_d is not None:
        if entry.discriminator is None:
            raise BadInput(f"--lr-d does not apply to the {arch.upper()} (it has no discriminator)")
        hyper["lr_d"] = cfg.lr_d
    if hyper.get("r1_gamma") == "auto":
        hyper["r1_gamma"] = 2e-4 * cfg.resolution**2 / cfg.batch  # StyleGAN2-ADA's heuristic
    if hyper.get("ema_kimg") == "auto":
        hyper["ema_kimg"] = cfg.batch * 10 / 32
    for k in ("lr", "lr_d"):
        if k in hyper and not (is_real(hyper[k]) and hyper[k] > 0):
            raise BadInput(f"{k.replace('_', '-')} must be > 0, got {hyper[k]!r}")
    if "d_steps" in hyper and not (is_int(hyper["d_steps"]) and hyper["d_steps"] >= 1):
        raise BadInput(f"d_steps must be an integer >= 1, got {hyper['d_steps']!r}")
    return gen, disc, hyper


def _check_int(name: str, v, lo: int) -> None:
    if not is_int(v) or v < lo:
        raise BadInput(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")


def validate(cfg: TrainConfig) -> None:
    """Static checks of a config (no data read): BadInput with a one-line message."""
    registry.get(cfg.arch)  # UnknownName for an unregistered architecture
    if cfg.mode not in MODES:
        raise UnknownName("mode", cfg.mode, MODES)
    check_spec(cfg.data)
    _check_int("steps", cfg.steps, 1)
    _check_int("batch", cfg.batch, 1)
    _check_int("resolution", cfg.resolution, 8)
    _check_int("checkpoint_every", cfg.checkpoint_every, 1)
    _check_int("sample_every", cfg.sample_every, 1)
    if cfg.channels not in (None, 1, 3):
        raise BadInput(f"--channels must be 1 or 3, got {cfg.channels!r}")
    if cfg.mode != "rtil-ilo" and (cfg.layers is not None or cfg.sigma is not None):
        raise BadInput("--layers and --sigma apply to --mode rtil-ilo")
    if cfg.mode != "rtil-mgan" and (cfg.codes is not None or cfg.mgan_layer is not None):
        raise BadInput("--codes and --mgan-layer apply to --mode rtil-mgan")
    if cfg.sigma is not None and not (is_real(cfg.sigma) and cfg.sigma > 0 and math.isfinite(cfg.sigma)):
        raise BadInput(f"--sigma must be > 0, got {cfg.sigma!r}")
    if cfg.codes is not None and (not cfg.codes or any(not is_int(n) or n < 1 for n in cfg.codes)):
        raise BadInput(f"--codes must be integers >= 1, got {cfg.codes!r}")
    for name in ("generator", "discriminator", "hyper"):
        if not isinstance(getattr(cfg, name), dict):
            raise BadInput(f"{name} overrides must be a JSON object")
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise BadInput(f"device must be cpu or cuda, got '{cfg.device}'")


# ---- the trainer ----------------------------------------------------------------------------------
class _Unit(nn.Module):
    """One DDP unit: registers the module whose gradients are synchronised and calls ``fn``
    (the loss computation) in its forward, so DistributedDataParallel sees one forward per backward."""

    def __init__(self, module: nn.Module, fn: Callable):
        super().__init__()
        self.module_ = module
        self._fn = [fn]  # a list: not registered as a submodule

    def forward(self, *args):
        """The loss computation's (loss, stats)."""
        return self._fn[0](*args)


class Trainer:
    """Builds the models, optimisers and data of a run and runs the steps (see ``train``)."""

    def __init__(self, cfg: TrainConfig, on_event: EventSink = null_sink):
        validate(cfg)
        self.cfg, self.on_event = cfg, on_event
        self.entry = registry.get(cfg.arch)
        self._init_distributed()
        self.out = Path(cfg.out)
        self.data = load_source(cfg.data, cfg.resolution, cfg.channels, "train")
        self.gen_cfg, self.disc_cfg, self.hp = resolve_config(cfg, self.data.channels, self.data.num_classes)
        self.objective = build_objective(self.hp["loss"], self.hp)
        self._build_models()
        self._init_rtil()

        betas = tuple(float(b) for b in self.hp["betas"])
        eps = float(self.hp["adam_eps"])
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=float(self.hp["lr"]), betas=betas, eps=eps)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=float(self.hp["lr_d"]), betas=betas, eps=eps) if self.d is not None else None

        self.latent_rng = torch.Generator().manual_seed(cfg.seed + LATENT_SEED_OFFSET)
        self.order = DataOrder(len(self.data), cfg.seed + DATA_SEED_OFFSET)
        self.step = 0
        self.images_seen = 0
        self.wall_before = 0.0
        self.resumed_at: List[int] = []
        self.last_stats: Dict[str, float] = {}
        self._init_units()

    def _init_distributed(self) -> None:
        """Join (or start) the process group under torchrun; the rank's device and batch shard."""
        cfg = self.cfg
        self.rank, self.world, self.local_rank = dist_env()
        self.owns_group = False
        if self.world > 1:
            dist = _dist()
            if not dist.is_initialized():
                backend = "nccl" if str(cfg.device).startswith("cuda") else "gloo"
                if backend == "nccl":
                    torch.cuda.set_device(self.local_rank)
                dist.init_process_group(backend)
                self.owns_group = True
            if cfg.batch % self.world:
                raise BadInput(f"--batch {cfg.batch} is not divisible by the {self.world} processes")
        self.device = torch.device(f"cuda:{self.local_rank}" if cfg.device == "cuda" and self.world > 1 else cfg.device)
        self.b_local = cfg.batch // self.world
        self.shard = slice(self.rank * self.b_local, (self.rank + 1) * self.b_local)

    def _build_models(self) -> None:
        """G, D (None without one) and the EMA copy of G, from the global RNG seeded by --seed
        (so a run is reproducible)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.g = build_adapter(cfg.arch, **self.gen_cfg).to(self.device)
        if self.g.meta.resolution != cfg.resolution:
            raise BadInput(f"the generator config makes {self.g.meta.resolution} px images, not --resolution {cfg.resolution}")
        if self.entry.train_init is not None:
            self.entry.train_init(self.g)
        self.d = build_discriminator(cfg.arch, cfg.resolution, self.data.channels, self.data.num_classes, **self.disc_cfg)
        if self.d is not None:
            self.d = self.d.to(self.device)
        self.g.train()
        if self.d is not None:
            self.d.train()
        self.ema = None
        if float(self.hp.get("ema_kimg") or 0) > 0:
            self.ema = copy.deepcopy(self.g).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)

    def _init_rtil(self) -> None:
        """The RTIL family's cuts: ILO's layers (default: after the first and second block past the
        sampling cut), mGAN's composing layer and numbers of codes."""
        cfg = self.cfg
        self.start = self.entry.train_start
        self.layers: List[int] = []
        self.codes: List[int] = []
        self.sigma = float(cfg.sigma) if cfg.sigma is not None else 1.0
        if cfg.mode == "rtil-ilo":
            self.layers = check_layers(self.g, cfg.layers if cfg.layers is not None else [self.start + 1, self.start + 2], self.start)
        if cfg.mode == "rtil-mgan":
            default = min(DEFAULT_MGAN_LAYER, len(self.g.blocks) - 1)
            self.mgan_layer = check_layers(self.g, [cfg.mgan_layer if cfg.mgan_layer is not None else default], self.start, "mgan_layer")[0]
            self.codes = list(cfg.codes) if cfg.codes is not None else [10]

    def _init_units(self) -> None:
        """One DDP unit and optimiser per phase of the objective ("G", and "D" with a discriminator)."""
        units = {"G": _Unit(self.g, partial(self.objective.loss, "G", self))}
        if self.d is not None:
            units["D"] = _Unit(self.d, partial(self.objective.loss, "D", self))
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            units = {k: DDP(u, device_ids=ids) for k, u in units.items()}
        self.units = units
        self.opts = {"G": self.opt_g, "D": self.opt_d}

    # ---- randomness (global batch drawn on every rank, then sharded) ---------------------------
    def randn(self, shape: tuple) -> torch.Tensor:
        """Standard normal (B_local, *shape): the rank's shard of a (B, *shape) draw."""
        return torch.randn((self.cfg.batch,) + tuple(shape), generator=self.latent_rng)[self.shard].to(self.device)

    def rand(self, shape: tuple) -> torch.Tensor:
        """Uniform [0, 1) (B_local, *shape): the rank's shard of a (B, *shape) draw."""
        return torch.rand((self.cfg.batch,) + tuple(shape), generator=self.latent_rng)[self.shard].to(self.device)

    def labels(self) -> Optional[torch.Tensor]:
        """Class labels of a fake batch (class-conditional architectures only, else None): uniform
        over the data's classes, the global batch (B,)."""
        if not self.entry.class_conditional:
            return None
        return torch.randint(0, self.data.num_classes, (self.cfg.batch,), generator=self.latent_rng).to(self.device)

    def local(self, y: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The rank's shard of global labels (None stays None)."""
        return None if y is None else y[self.shard]

    def sample(self, y: Optional[torch.Tensor] = None) -> OrderedDict:
        """A latent state at cut ``self.start`` for B_local samples (global labels ``y``), with
        gradient through what makes it (BigGAN's class embedding, StyleGAN2's mapping network);
        the noise inputs there are drawn fresh per sample while training."""
        lat = self.g.training_latent(self.cfg.batch, self.latent_rng, y)
        st = self.g.advance(OrderedDict((k, v[self.shard].to(self.device)) for k, v in lat.items()), 0, self.start)
        for name in self.g.entries(self.start, "noise"):
            st[name] = self.randn(tuple(st[name].shape[1:]))
        return st

    def fakes(self) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The family's generated batches, [-1, 1]: [(images (B_local, C, R, R), labels)], one per
        generator (plain first)."""
        out = []
        y = self.labels()
        out.append((render(self.g, self.sample(y), self.start), self.local(y)))
        if self.cfg.mode == "rtil-ilo":
            nested = bool(self.hp["ilo_nested"])
            for k in range(1, len(self.layers) + 1):
                y = self.labels()
                ls = self.layers[:k] if nested else self.layers[k - 1:k]
                out.append((ilo_image(self.g, self.sample(y), self.start, ls, self.sigma, self.randn), self.local(y)))
        elif self.cfg.mode == "rtil-mgan":
            for n in self.codes:
                y = self.labels()
                states = [self.sample(y) for _ in range(n)]
                cat = OrderedDict((k, torch.cat([s[k] for s in states])) for k in states[0])
                alpha = dirichlet_flat(self.b_local, n, self.rand).to(self.device)
                out.append((mgan_image(self.g, cat, self.start, self.mgan_layer, n, alpha), self.local(y)))
        return out

    # ---- one step -------------------------------------------------------------------------------
    def real_batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The rank's shard of the next global batch: ([-1, 1] images, labels)."""
        idx = self.order.next(self.cfg.batch)[self.shard]
        x, y = self.data.get(idx)
        return (x * 2 - 1).to(self.device), y.to(self.device)

    def train_step(self) -> Dict[str, float]:
        """One step: the objective's phases (d_steps discriminator updates, then the generator's)."""
        stats: Dict[str, torch.Tensor] = {}
        for phase in self.objective.phases():
            if self.d is not None:
                # D's parameters need gradients in its own updates only
                for p in self.d.parameters():
                    p.requires_grad_(phase == "D")
            real, y = self.real_batch() if self.objective.reads_real(phase) else (None, None)
            loss, st = self.units[phase](real, y)
            opt = self.opts[phase]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            stats.update(st, **{f"loss_{phase.lower()}": loss.detach()})
        out = _all_mean({k: float(v) for k, v in stats.items()}, self.world, self.device)
        out.update(self.objective.end_step(out))
        self.step += 1
        self.images_seen += self.cfg.batch
        self._update_ema()
        return out

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        ema_nimg = float(self.hp["ema_kimg"]) * 1000
        if self.hp.get("ema_rampup"):
            ema_nimg = min(ema_nimg, self.images_seen * float(self.hp["ema_rampup"]))
        beta = 0.5 ** (self.cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.g.parameters()):
                pe.copy_(p.detach().lerp(pe, beta))
            for be, b in zip(self.ema.buffers(), self.g.buffers()):
                be.copy_(b)

    # ---- outputs ----------------------------------------------------------------------------------
    def saved_generator(self) -> nn.Module:
        """The generator written to checkpoint.pt (the EMA one when kept), in eval mode, with
        StyleGAN2's truncation centre estimated (does not touch the training state)."""
        g = copy.deepcopy(self.ema if self.ema is not None else self.g).eval()
        g.after_training()
        return g

    def sample_grid(self, g: nn.Module) -> torch.Tensor:
        """Samples of ``g`` from fixed latents (seed + SAMPLE_SEED_OFFSET): (1, C, H', W') grid."""
        rng = torch.Generator().manual_seed(self.cfg.seed + SAMPLE_SEED_OFFSET)
        with torch.no_grad():
            z, nrow = g.preview_latents(rng)
            x = g(z)
        return make_grid(x.cpu(), nrow=nrow)

    def record(self, finished: bool, wall: float) -> dict:
        """The run.json record."""
        import recon_core

        n_params = lambda m: int(sum(p.numel() for p in m.parameters())) if m is not None else 0  # noqa: E731
        cfg = self.cfg.to_dict()
        rec = {
            "schema_version": RUN_SCHEMA,
            "recon_version": getattr(recon_core, "__version__", None),
            "torch_version": torch.__version__,
            "command": self.cfg.command,
            "config": cfg,
            "steps_done": self.step,
            "steps_requested": self.cfg.steps,
            "finished": finished,
            "images_seen": self.images_seen,
            "wall_time_s": round(wall, 3),
            "world_size": self.world,
            "device": str(self.device),
            "data": {"train": self.data.info(), "test_split": "see recon_core.training.data"},
            "generator": {"architecture": self.cfg.arch, "config": self.gen_cfg, "parameters": n_params(self.g),
                          "saved": "ema" if self.ema is not None else "raw"},
            "discriminator": {"config": self.disc_cfg, "parameters": n_params(self.d)},
            "hyperparameters": self.hp,
            "rtil": {"layers": self.layers, "sigma": self.sigma if self.cfg.mode == "rtil-ilo" else None,
                     "codes": self.codes, "mgan_layer": getattr(self, "mgan_layer", None)},
            "resumed_at": self.resumed_at,
            "last_stats": self.last_stats,
            "files": {"checkpoint": CKPT_FILE, "trainer_state": STATE_FILE},
        }
        return rec

    def state_dict(self, wall: float) -> dict:
        """The trainer state (trainer_state.pt) after ``wall`` seconds of training."""
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "config": self.cfg.to_dict(), "step": self.step, "images_seen": self.images_seen, "wall_time_s": wall,
            **self.objective.state_dict(), "resumed_at": list(self.resumed_at),
            "g": self.g.state_dict(), "d": self.d.state_dict() if self.d is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "order": self.order.state(), "rng": rng_states(self.latent_rng),
        }

    def save(self, wall: float, finished: bool) -> None:
        """Write trainer_state.pt, checkpoint.pt, run.json (atomically, in that order; rank 0)."""
        _broadcast_buffers(self.g, self.world)
        _broadcast_buffers(self.d, self.world)
        _broadcast_buffers(self.ema, self.world)
        if self.rank != 0:
            return
        buf = io.BytesIO()
        torch.save(_to_cpu(self.state_dict(wall)), buf)
        atomic_write_bytes(self.out / STATE_FILE, buf.getvalue())
        g = self.saved_generator()
        extra = {"training": {"step": self.step, "mode": self.cfg.mode, "data": self.cfg.data, "images_seen": self.images_seen,
                              "layers": self.layers, "codes": self.codes, "sigma": self.sigma if self.cfg.mode == "rtil-ilo" else None,
                              "mgan_layer": getattr(self, "mgan_layer", None)}}
        atomic_write_bytes(self.out / CKPT_FILE, checkpoint_bytes(g, extra))
        atomic_write_text(self.out / RUN_FILE, json.dumps(self.record(finished, wall), indent=2, default=str) + "\n")

    def load(self, s: dict) -> None:
        """Restore a trainer state (after the models were built): everything, RNGs last."""
        self.g.load_state_dict(s["g"])
        if self.d is not None:
            self.d.load_state_dict(s["d"])
        if self.ema is not None:
            self.ema.load_state_dict(s["ema"])
        self.opt_g.load_state_dict(s["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(s["opt_d"])
        self.step, self.images_seen = int(s["step"]), int(s["images_seen"])
        self.objective.load_state_dict(s)
        self.wall_before = float(s["wall_time_s"])
        self.resumed_at = list(s.get("resumed_at", [])) + [self.step]
        self.order.load(s["order"])
        set_rng_states(s["rng"], self.latent_rng)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def read_state(path: Path) -> dict:
    """Read a trainer state (weights_only) with one-line errors."""
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise ReconError(f"cannot read the trainer state '{path}' ({type(e).__name__}); the run cannot be resumed") from None
    if not isinstance(s, dict) or s.get("format") != STATE_FORMAT:
        raise ReconError(f"'{path}' is not a recon trainer state")
    if int(s.get("version", 0)) > STATE_VERSION:
        raise ReconError(f"'{path}' was written by a newer recon (trainer state version {s.get('version')})")
    return s


def _check_resumable(saved: dict, cfg: TrainConfig) -> None:
    now = cfg.to_dict()
    for k, v in saved.items():
        if k in RESUMABLE_CHANGES:
            continue
        if now.get(k) != v:
            raise BadInput(f"cannot resume: {k} was {v!r} in the saved run, now {now.get(k)!r} (only {', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'force', 'out', 'command'}))} may change)")


def prepare_out(cfg: TrainConfig) -> Optional[dict]:
    """Check / create the run directory; return the saved trainer state to resume, or None.
    Refuses a non-empty directory unless resume (which continues) or force (which starts over)."""
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    if cfg.resume and state_path.is_file():
        return read_state(state_path)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.force:
        if cfg.resume:
            raise BadInput(f"cannot resume: '{out}' holds no {STATE_FILE}; use another --out, or --force to start over there")
        raise BadInput(f"refusing to overwrite the run directory '{out}' (not empty); use --resume to continue it or --force to start over")
    return None


def train(config: TrainConfig, on_event: EventSink = null_sink) -> dict:
    """Run (or resume) training; returns the run.json record. Emits Event(phase="train", step,
    total, loss=G loss (VAE: negative ELBO), extra={losses, images_per_s, ...}) every step, plus
    extra={"checkpoint": path} / {"samples": path} when those are written. Rank 0 only emits."""
    return run(config, on_event)[1]


def run(config: TrainConfig, on_event: EventSink = null_sink) -> Tuple[Trainer, dict]:
    """``train``, also returning the Trainer (its models, for tests and notebooks)."""
    cfg = config
    validate(cfg)
    rank, _, _ = dist_env()
    saved = prepare_out(cfg) if rank == 0 else None
    t = Trainer(cfg, on_event if rank == 0 else null_sink)
    try:
        if t.world > 1:
            # the decision to resume is rank 0's (it reads the directory); share it
            flag = torch.tensor([1 if saved is not None else 0], device=t.device)
            _dist().broadcast(flag, 0)
            if flag.item() and saved is None:
                saved = read_state(Path(cfg.out) / STATE_FILE)
        if saved is not None:
            _check_resumable(saved["config"], cfg)
            t.load(saved)
        elif rank == 0:
            out = Path(cfg.out)
            out.mkdir(parents=True, exist_ok=True)
            # --force: remove the replaced run's outputs now, so a kill before the first
            # checkpoint cannot leave its trainer state to be resumed by mistake
            for p in [out / STATE_FILE, out / CKPT_FILE, out / RUN_FILE, *out.glob("samples_*.png")]:
                if p.is_file():
                    p.unlink()
        return t, _loop(t)
    finally:
        if t.owns_group:
            _dist().destroy_process_group()


def _loop(t: Trainer) -> dict:
    cfg = t.cfg
    t0 = time.perf_counter()
    emit = t.on_event
    if t.step == 0 and t.rank == 0:
        path = t.out / "samples_000000.png"
        save_image(t.sample_grid(t.saved_generator()), path)
    window: List[float] = []  # durations of the last 10 steps (outputs excluded)
    while t.step < cfg.steps:
        ts = time.perf_counter()
        stats = t.train_step()
        window = (window + [time.perf_counter() - ts])[-10:]
        ips = len(window) * cfg.batch / max(sum(window), 1e-9)
        t.last_stats = {k: round(v, 6) for k, v in stats.items()}
        extra = {**t.last_stats, "images_per_s": round(ips, 2), "images_seen": t.images_seen}
        if not all(math.isfinite(v) for v in stats.values()):
            # the last checkpoint (before the divergence) is kept: never overwrite it with NaNs
            raise ReconError(f"training diverged at step {t.step} (non-finite loss: {t.last_stats}); the last checkpoint "
                             f"is kept: lower the learning rate or change the config")
        if t.step % cfg.sample_every == 0 or t.step == cfg.steps:
            if t.rank == 0:
                path = t.out / f"samples_{t.step:06d}.png"
                save_image(t.sample_grid(t.saved_generator()), path)
                extra["samples"] = str(path)
        if t.step % cfg.checkpoint_every == 0 or t.step == cfg.steps:
            t.save(t.wall_before + time.perf_counter() - t0, t.step == cfg.steps)
            extra["checkpoint"] = str(t.out / CKPT_FILE)
        emit(Event(phase="train", step=t.step, total=cfg.steps, loss=stats.get("loss_g"), extra=extra))
    if not window:
        # a resumed run that was already complete: rewrite its outputs (same on every rank)
        t.save(t.wall_before, True)
    return t.record(True, t.wall_before + time.perf_counter() - t0)
