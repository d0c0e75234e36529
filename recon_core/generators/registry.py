"""One entry per generator architecture: every fact about it that is not in its adapter module.

An ``Architecture`` holds the adapter class, the public checkpoint formats that load into it (besides
the project's own ``recon`` format, which holds any architecture; see checkpoints.py), what
training needs (its discriminator, objective, default widths and hyperparameters, see
training/trainer.py for their sources), the papers' per-method settings (config field -> value,
applied by ``solvers.make_config``), and the tiny random-weight config the tests sweep.
``get(name)`` / ``names()`` in the style of torchvision's model registry.

The discriminators live in training/discriminators.py; the entry refers to the class so that a
new architecture is one entry here, not a branch in the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Type

from torch import nn

from ..errors import UnknownName
from ..training import discriminators as D
from .base import GeneratorAdapter
from .began import BEGAN
from .biggan import BigGAN, layers_for_resolution
from .dcgan import DCGAN
from .pggan import PGGAN
from .stylegan2 import StyleGAN2
from .vae import VAE


def _at_resolution(resolution: int) -> dict:
    return {"resolution": resolution}


@dataclass(frozen=True)
class Architecture:
    """Everything the project knows about one architecture, outside its adapter.

    - ``adapter``: the GeneratorAdapter class (constructor takes the config as keywords);
      ``formats``: the public checkpoint formats (checkpoints.FORMATS) holding this architecture.
    - ``discriminator``: its training discriminator class (None: trained without one, the VAE);
      ``class_conditional``: trained on labels (fakes get random classes; the discriminator is
      built with the number of classes); ``objective``: its loss family (training.objectives).
    - ``train_generator`` / ``train_discriminator`` / ``train_hyper``: default widths and
      hyperparameters of a `recon train-rtil` run; ``train_args(resolution)``: the generator
      arguments that follow from the run's resolution; ``train_start``: the cut training samples
      at (the state there is drawn fresh for every sample); ``train_init``: a weight
      initialisation applied to the new generator (None: the adapter's own).
    - ``paper``: method -> {config field: value}, the papers' settings for this architecture.
    - ``tiny`` / ``tiny_discriminator``: the tiny random-weight configs of the test sweeps.
    """

    name: str
    adapter: Type[GeneratorAdapter]
    formats: Tuple[str, ...]
    discriminator: Optional[Type[nn.Module]]
    objective: str
    train_generator: dict
    train_discriminator: dict
    train_hyper: dict
    tiny: dict
    tiny_discriminator: dict
    paper: Dict[str, dict] = field(default_factory=dict)
    class_conditional: bool = False
    train_args: Callable[[int], dict] = _at_resolution
    train_start: int = 0
    train_init: Optional[Callable[[nn.Module], None]] = None


_ENTRIES: List[Architecture] = [
    Architecture(
        "dcgan", DCGAN, formats=("netG",), discriminator=D.DCGANDiscriminator, objective="ns",
        train_generator={"nz": 100, "ngf": 32}, train_discriminator={"ndf": 32},
        train_hyper={"lr": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "r1_gamma": 0.0, "r1_every": 16, "ema_kimg": 0.0},
        # pytorch/examples' weights_init: N(0, 0.02) convolutions
        train_init=D.dcgan_init,
        # Generator Surgery Table 3 (surgery); its Table 5 (iagan)
        paper={"surgery": {"lr": 0.1, "cut": 1}, "iagan": {"csgm_steps": 1600, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4}},
        tiny={"resolution": 32, "nz": 8, "ngf": 4, "nc": 3}, tiny_discriminator={"ndf": 4},
    ),
    Architecture(
        "began", BEGAN, formats=(), discriminator=D.BEGANDiscriminator, objective="began",
        train_generator={"z_dim": 64, "n": 16}, train_discriminator={"n": 16, "h": 64},
        train_hyper={"lr": 1e-4, "lr_d": 1e-4, "betas": [0.5, 0.999], "d_steps": 1, "began_gamma": 0.5, "lambda_k": 1e-3, "k0": 0.0, "ema_kimg": 0.0},
        # Generator Surgery Table 3 (surgery); the IAGAN paper (iagan)
        paper={"surgery": {"lr": 1.0, "cut": 2}, "iagan": {"csgm_steps": 1600, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4}},
        tiny={"resolution": 32, "z_dim": 8, "n": 4, "channels": 3}, tiny_discriminator={"n": 4, "h": 8},
    ),
    Architecture(
        "vae", VAE, formats=("vae-antixk",), discriminator=None, objective="elbo",
        train_generator={"latent_dim": 64, "hidden_dims": [32, 64, 128]}, train_discriminator={},
        train_hyper={"lr": 1e-3, "betas": [0.9, 0.999], "vae_sigma": 0.1, "kl_weight": 1.0, "ema_kimg": 0.0},
        # Generator Surgery Tables 3 (surgery) and 5 (iagan)
        paper={"surgery": {"lr": 1.0, "cut": 1}, "iagan": {"csgm_steps": 1000, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4}},
        tiny={"resolution": 32, "latent_dim": 8, "hidden_dims": [4, 8, 8], "channels": 3}, tiny_discriminator={},
    ),
    Architecture(
        "stylegan2", StyleGAN2, formats=("rosinality",), discriminator=D.ResidualDiscriminator, objective="ns",
        train_generator={"style_dim": 128, "n_mlp": 2, "channel_multiplier": 1, "channel_max": 64, "channel_base": 1024},
        train_discriminator={"channel_base": 1024, "channel_max": 64},
        train_hyper={"lr": 2.5e-3, "lr_d": 2.5e-3, "betas": [0.0, 0.99], "d_steps": 1, "r1_gamma": "auto", "r1_every": 16, "ema_kimg": "auto"},
        # cut 1 is w+ and the noise inputs: the mapping trains through the w+ of every sample, and
        # the noises are drawn fresh per sample (rosinality's randomize_noise)
        train_start=1,
        tiny={"resolution": 16, "style_dim": 8, "n_mlp": 2, "channel_multiplier": 1, "channel_max": 8, "channel_base": 64, "noise_init": 0.1},
        tiny_discriminator={"channel_base": 64, "channel_max": 8},
    ),
    Architecture(
        "pggan", PGGAN, formats=("pggan",), discriminator=D.PGGANDiscriminator, objective="ns",
        train_generator={"z_dim": 128, "fmaps_base": 1024, "fmaps_max": 64}, train_discriminator={"fmaps_base": 1024, "fmaps_max": 64},
        train_hyper={"lr": 1e-3, "lr_d": 1e-3, "betas": [0.0, 0.99], "d_steps": 1, "r1_gamma": "auto", "r1_every": 16, "ema_kimg": 10.0},
        # the IAGAN paper (iagan)
        paper={"iagan": {"csgm_steps": 1800, "steps": 500, "lr_z": 1e-4, "lr_theta": 1e-3}},
        tiny={"resolution": 16, "z_dim": 16, "channels": 3, "fmaps_base": 64, "fmaps_max": 8},
        tiny_discriminator={"fmaps_base": 64, "fmaps_max": 8},
    ),
    Architecture(
        "biggan", BigGAN, formats=("hf-biggan",), discriminator=D.ProjectionDiscriminator, objective="hinge",
        train_generator={"z_dim": 64, "class_embed_dim": 32, "channel_width": 32}, train_discriminator={"ch": 8},
        train_hyper={"lr": 2e-4, "lr_d": 2e-4, "betas": [0.0, 0.999], "d_steps": 2, "ema_kimg": 10.0},
        class_conditional=True,
        # BigGAN-deep's layers for the resolution, no attention layer at these sizes, and the
        # untruncated prior while training
        train_args=lambda resolution: {"layers": layers_for_resolution(resolution), "truncation": 1.0, "attention_layer_position": 10_000},
        # Generator Surgery Table 3 (surgery)
        paper={"surgery": {"lr": 1.5, "cut": 7}},
        tiny={"z_dim": 4, "class_embed_dim": 4, "channel_width": 4, "num_classes": 5, "attention_layer_position": 2, "n_stats": 5,
              "layers": [[False, 16, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]], "truncation": 0.5},
        tiny_discriminator={"ch": 2},
    ),
]
_REGISTRY: Dict[str, Architecture] = {e.name: e for e in _ENTRIES}


def names() -> Tuple[str, ...]:
    """The registered architecture names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Architecture:
    """The entry of architecture ``name``; UnknownName (with a suggestion) otherwise."""
    if name not in _REGISTRY:
        raise UnknownName("architecture", name, _REGISTRY)
    return _REGISTRY[name]


def paper_settings(name: str, method: str) -> dict:
    """The papers' settings of ``method`` for architecture ``name`` ({config field: value}); {}
    when the papers give none or the architecture is not registered (e.g. a user's adapter)."""
    entry = _REGISTRY.get(name)
    return dict(entry.paper.get(method, {})) if entry is not None else {}
