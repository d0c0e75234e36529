"""Checkpoint formats -> our adapters, and the project's own format.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint that holds pickled
code or arbitrary objects is refused, never executed. Formats recognised here:

- ``recon``: the project's own ``{"format": "recon-generator", "version", "architecture",
  "config", "state_dict"}``.
- ``netG``: pytorch/examples DCGAN ``netG`` state dict (``main.{i}.weight``, BatchNorm at
  ``main.{i+1}``), bare or wrapped as ``{"netG_state_dict": ...}`` (the PyTorch DCGAN faces
  tutorial, e.g. gan-face-generate), optionally with DataParallel's ``module.`` prefix. The
  configuration (resolution, nz, ngf, nc) is inferred from the shapes.
- ``pggan``: mganprior/genforce PGGAN generators (``layer{i}.conv.weight``,
  ``layer{i}.wscale.bias``, ``output{j}.*``; or genforce's ``layer{i}.weight``/``.bias`` inside
  ``{"generator_smooth", ...}``); config inferred from the shapes.
- ``vae-antixk``: AntixK PyTorch-VAE ``vanilla_vae`` state dicts (bare or Lightning
  ``{"state_dict": {"model.*"}}``); config inferred from the shapes.
- ``rosinality``: rosinality/stylegan2-pytorch StyleGAN2 ``{"g_ema": state_dict, "latent_avg"}``
  (or a bare / ``module.``-prefixed state dict); config inferred from the shapes.
- ``hf-biggan``: an HF pytorch-pretrained-BigGAN *directory* (``config.json`` +
  ``pytorch_model.bin``), read by ``load_checkpoint`` when given a directory path.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import BadInput, CheckpointError, UnknownName
from . import registry
from .base import GeneratorAdapter
from .dcgan import DCGAN
from .pggan import PGGAN
from .vae import VAE

OWN_FORMAT = "recon-generator"
OWN_VERSION = 1

def build_adapter(arch: str, **config) -> GeneratorAdapter:
    """A randomly initialised adapter of architecture ``arch`` with the given config."""
    adapter = registry.get(arch).adapter
    import inspect

    # the prior options users set by hand (--class, --truncation): a one-line error naming the
    # option when the architecture has no such setting, not a Python signature message
    accepted = inspect.signature(adapter).parameters
    for key, option in (("class_idx", "--class"), ("truncation", "--truncation")):
        if key in config and key not in accepted:
            takers = sorted(a for a in registry.names() if key in inspect.signature(registry.get(a).adapter).parameters)
            raise BadInput(f"{option} does not apply to a {arch} prior (only to: {', '.join(takers) or 'none'})")
    try:
        return adapter(**config)
    except TypeError as e:
        raise CheckpointError(f"invalid {arch} config {config}: {e}") from None


def read_checkpoint(path) -> object:
    """torch.load(path, weights_only=True) on the CPU, with one-line errors.

    Pickled code (anything but tensors and plain containers) is refused without running it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    # torch.save writes a zip archive; the legacy format starts with a pickle protocol byte
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":
        raise CheckpointError(f"'{path}' is not a readable PyTorch checkpoint (unknown file format)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines()
        why = next((ln.strip() for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln), "")
        if not why:
            raise CheckpointError(f"'{path}' is not a readable PyTorch checkpoint (corrupt pickle data)") from None
        raise CheckpointError(
            f"refusing to load '{path}': it contains pickled objects other than tensors (possible code execution): {why}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError, AttributeError, IndexError, KeyError, TypeError) as e:
        raise CheckpointError(f"'{path}' is not a readable PyTorch checkpoint ({type(e).__name__})") from None


def _strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_state_dict_checked(module: nn.Module, sd: dict, source: str = "checkpoint") -> None:
    """Load ``sd`` into ``module`` strictly; on mismatch raise CheckpointError naming the first
    missing, unexpected or wrongly shaped key."""
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{source}: state dict must map names to tensors")
    own = module.state_dict()
    for k, v in own.items():
        if k not in sd:
            raise CheckpointError(f"{source}: missing key '{k}' (expected shape {tuple(v.shape)})")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: shape mismatch at '{k}': checkpoint {tuple(sd[k].shape)}, model {tuple(v.shape)}"
            )
    for k in sd:
        if k not in own:
            raise CheckpointError(f"{source}: unexpected key '{k}'")
    module.load_state_dict(sd, strict=True)


def netg_config(sd: dict) -> dict:
    """Infer the DCGAN config (resolution, nz, ngf, nc) from a pytorch/examples netG state dict."""
    convs = sorted(
        (int(k.split(".")[1]) for k, v in sd.items() if k.startswith("main.") and k.endswith(".weight") and v.dim() == 4)
    )
    if not convs:
        raise CheckpointError("not a DCGAN netG state dict: no 'main.N.weight' convolution kernels")
    n_layers = len(convs)
    first, last = sd[f"main.{convs[0]}.weight"], sd[f"main.{convs[-1]}.weight"]
    nz, c0 = first.shape[0], first.shape[1]
    ngf = c0 // 2 ** (n_layers - 2) if n_layers >= 2 else c0
    return {"resolution": 2 ** (n_layers + 1), "nz": int(nz), "ngf": int(ngf), "nc": int(last.shape[1])}


def _is_recon(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == OWN_FORMAT


def _load_recon(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if int(obj.get("version", 0)) > OWN_VERSION:
        raise CheckpointError(f"{source}: checkpoint version {obj.get('version')} is newer than this recon supports ({OWN_VERSION})")
    arch_ = obj.get("architecture")
    if arch is not None and arch != arch_:
        raise CheckpointError(f"{source}: checkpoint holds a '{arch_}' generator, not '{arch}'")
    model = build_adapter(arch_, **{**obj.get("config", {}), **config})
    load_state_dict_checked(model, obj.get("state_dict"), source)
    return model


def _is_netg(obj) -> bool:
    if not isinstance(obj, dict):
        return False
    if "netG_state_dict" in obj:
        return True
    keys = list(_strip_prefix(obj))
    return bool(keys) and all(isinstance(k, str) for k in keys) and any(k.startswith("main.") for k in keys)


def _load_netg(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if arch not in (None, "dcgan"):
        raise CheckpointError(f"{source}: netG checkpoints hold a DCGAN, not '{arch}'")
    sd = obj["netG_state_dict"] if "netG_state_dict" in obj else obj
    sd = _strip_prefix(dict(sd))
    model = DCGAN(**{**netg_config(sd), **config})
    load_state_dict_checked(model, sd, source)
    return model


# ---- PGGAN (genforce/mganprior) ----
# mganprior (models/pggan_generator.py + pggan_generator_network.py) converts the official
# TensorFlow models and saves the bare state dict: ``lod``, ``layer{i}.conv.weight``
# (out, in, kh, kw; layer0 is the dense layer stored as a 4x4 conv applied with padding 3),
# ``layer{i}.wscale.bias``, one toRGB per resolution ``output{j}.conv.weight`` /
# ``output{j}.wscale.bias``, and ``layer{i}.weight`` in (kh, kw, in, out) order for fused_scale
# layers. genforce (models/pggan_generator.py, converters/pggan_converter.py) saves
# ``{"generator", "discriminator", "generator_smooth"}`` whose state dicts name the same tensors
# ``layer{i}.weight`` / ``layer{i}.bias`` / ``output{j}.weight`` / ``output{j}.bias`` (a fused
# weight there is (in, out, kh, kw)). Both load into the mganprior names of ``PGGAN``; the
# intermediate toRGB layers (only used while growing, lod > 0) are dropped.

#: wrappers around the generator state dict; genforce's smoothed (EMA) generator is preferred,
#: as in its synthesize.py
_PGGAN_WRAPPERS = ("generator_smooth", "generator", "state_dict")


def _pggan_state_dict(obj) -> Optional[dict]:
    """The PGGAN generator state dict held by ``obj`` (bare or wrapped, optionally with
    DataParallel's ``module.`` prefix), or None when obj is not a PGGAN checkpoint."""
    if not isinstance(obj, dict):
        return None
    for name in _PGGAN_WRAPPERS:
        if isinstance(obj.get(name), dict):
            obj = obj[name]
            break
    if not obj or not all(isinstance(k, str) for k in obj):
        return None
    sd = _strip_prefix(dict(obj))
    mganprior = "layer0.conv.weight" in sd
    genforce = "layer0.weight" in sd and "layer0.bias" in sd
    if not (mganprior or genforce) or not any(k.startswith("output") for k in sd):
        return None
    return sd


def _pggan_split(key: str):
    """'layer12.conv.weight' -> ('layer', 12, 'conv.weight'); None for other keys."""
    for stem in ("layer", "output"):
        if key.startswith(stem):
            idx, _, rest = key[len(stem):].partition(".")
            if idx.isdigit() and rest:
                return stem, int(idx), rest
    return None


def _pggan_to_mganprior(sd: dict, fused_scale: Optional[bool]) -> Tuple[dict, bool]:
    """Rename a genforce-style PGGAN state dict to mganprior's names; returns (sd, fused_scale).

    mganprior's names tell fused layers apart (``layer{i}.weight`` instead of ``.conv.weight``);
    genforce's do not (a square fused kernel has the same shape as a conv kernel), so there
    fused_scale is taken from the caller (default False, as for every released model)."""
    if "layer0.conv.weight" in sd:
        fused = any((p := _pggan_split(k)) is not None and p[0] == "layer" and p[2] == "weight" for k in sd)
        return sd, fused
    fused = bool(fused_scale)
    out = {}
    for k, v in sd.items():
        p = _pggan_split(k)
        if p is None or p[2] not in ("weight", "bias"):
            out[k] = v  # lod, or a key the strict load will report
            continue
        stem, i, what = p
        if what == "bias":
            out[f"{stem}{i}.wscale.bias"] = v
        elif fused and stem == "layer" and i > 0 and i % 2 == 0:
            out[f"layer{i}.weight"] = v.permute(2, 3, 0, 1)  # (in, out, kh, kw) -> (kh, kw, in, out)
        else:
            out[f"{stem}{i}.conv.weight"] = v
    return out, fused


def pggan_config(sd: dict, source: str = "checkpoint") -> dict:
    """Infer the PGGAN config (resolution, z_dim, channels, fmaps_base, fmaps_max) from a
    state dict with mganprior's names."""
    layers = sorted({p[1] for p in map(_pggan_split, sd) if p is not None and p[0] == "layer"})
    if not layers or layers != list(range(len(layers))) or len(layers) % 2:
        raise CheckpointError(f"{source}: PGGAN layers must be layer0..layer(2L-1), found {['layer%d' % i for i in layers]}")
    n_blocks = len(layers) // 2
    resolution = 2 ** (n_blocks + 1)
    for k in ["layer0.conv.weight"] + [f"layer{2 * b + 1}.wscale.bias" for b in range(n_blocks)] + [f"output{n_blocks - 1}.conv.weight"]:
        if k not in sd:
            raise CheckpointError(f"{source}: missing key '{k}'")
    widths = [int(sd[f"layer{2 * b + 1}.wscale.bias"].shape[0]) for b in range(n_blocks)]
    fmaps_max = max(widths)
    # nf(r) = min(fmaps_base // r, fmaps_max): the first resolution below the cap pins fmaps_base
    # (up to r - 1; the smallest value is taken); a net that never drops below the cap fits any
    # fmaps_base >= fmaps_max * resolution
    fmaps_base = next((w * 4 * 2**b for b, w in enumerate(widths) if w < fmaps_max), fmaps_max * resolution)
    return {
        "resolution": resolution,
        "z_dim": int(sd["layer0.conv.weight"].shape[1]),
        "channels": int(sd[f"output{n_blocks - 1}.conv.weight"].shape[0]),
        "fmaps_base": int(fmaps_base),
        "fmaps_max": int(fmaps_max),
    }


def _is_pggan(obj) -> bool:
    return _pggan_state_dict(obj) is not None


def _load_pggan(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if arch not in (None, "pggan"):
        raise CheckpointError(f"{source}: this checkpoint holds a PGGAN generator, not '{arch}'")
    sd, fused = _pggan_to_mganprior(_pggan_state_dict(obj), config.get("fused_scale"))
    lod = sd.pop("lod", None)
    if lod is not None and (not isinstance(lod, torch.Tensor) or lod.numel() != 1 or float(lod) != 0.0):
        raise CheckpointError(
            f"{source}: PGGAN checkpoint has lod={lod.flatten()[:1].tolist() if isinstance(lod, torch.Tensor) else lod} "
            f"(a generator still growing); only lod 0, the full-resolution generator, is supported"
        )
    cfg = {**pggan_config(sd, source), "fused_scale": fused, **config}
    final = int(cfg["resolution"]).bit_length() - 3  # index of the top-resolution toRGB, log2(R) - 2
    # intermediate toRGB layers are unused at lod 0
    sd = {k: v for k, v in sd.items() if not ((p := _pggan_split(k)) is not None and p[0] == "output" and p[1] != final)}
    model = PGGAN(**cfg)
    load_state_dict_checked(model, sd, source)
    return model


# ---- VAE (AntixK PyTorch-VAE) ----
# AntixK's models/vanilla_vae.py (and its VAE variants with the same body): ``encoder.{i}.0``
# Conv2d, ``encoder.{i}.1`` BatchNorm2d, ``fc_mu``, ``fc_var``, ``decoder_input``,
# ``decoder.{i}.0`` ConvTranspose2d, ``decoder.{i}.1`` BatchNorm2d, ``final_layer.{0,1,3}``.
# Its training code (experiment.py, PyTorch Lightning) holds the model as ``self.model``, so a
# Lightning checkpoint is ``{"state_dict": {"model.<key>": ...}, "epoch": ..., ...}``. Both the
# bare state dict and the Lightning file load. The tanh output is taken to mean [-1, 1] unless the
# caller passes ``native_range=(0, 1)`` (AntixK's current data pipeline feeds [0, 1] images).


def _antixk_state_dict(obj) -> Optional[dict]:
    """The AntixK VAE state dict held by ``obj`` (bare, DataParallel or Lightning), or None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not obj or not all(isinstance(k, str) for k in obj):
        return None
    sd = _strip_prefix(_strip_prefix(dict(obj), "model."))
    if all(k in sd for k in ("decoder_input.weight", "final_layer.0.weight", "fc_mu.weight")):
        return sd
    return None


def vae_config(sd: dict, source: str = "checkpoint") -> dict:
    """Infer the VAE config (resolution, latent_dim, hidden_dims, channels) from an AntixK
    state dict."""
    enc = sorted(int(k.split(".")[1]) for k in sd if k.startswith("encoder.") and k.endswith(".0.weight") and k.count(".") == 3 and k.split(".")[1].isdigit())
    if not enc or enc != list(range(len(enc))):
        raise CheckpointError(f"{source}: VAE encoder convolutions must be encoder.0.0 .. encoder.N.0")
    hidden = [int(sd[f"encoder.{i}.0.weight"].shape[0]) for i in enc]
    flat = int(sd["fc_mu.weight"].shape[1])
    r0 = int(round((flat / hidden[-1]) ** 0.5))
    if r0 < 1 or r0 * r0 * hidden[-1] != flat:
        raise CheckpointError(
            f"{source}: shape mismatch at 'fc_mu.weight': {flat} inputs is not {hidden[-1]} channels times a square map"
        )
    return {
        "resolution": r0 * 2 ** len(hidden),
        "latent_dim": int(sd["fc_mu.weight"].shape[0]),
        "hidden_dims": hidden,
        "channels": int(sd["encoder.0.0.weight"].shape[1]),
    }


def _is_vae_antixk(obj) -> bool:
    return _antixk_state_dict(obj) is not None


def _load_vae_antixk(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if arch not in (None, "vae"):
        raise CheckpointError(f"{source}: this checkpoint holds an AntixK VAE, not '{arch}'")
    sd = _antixk_state_dict(obj)
    model = VAE(**{**vae_config(sd, source), **config})
    load_state_dict_checked(model, sd, source)
    return model


# ---- StyleGAN2 (rosinality) ----
# rosinality/stylegan2-pytorch (model.py ``Generator``) state dicts: ``style.{1..n_mlp}.weight``
# (S, S) / ``.bias`` (S,) (style.0 is PixelNorm), ``input.input`` (1, C4, 4, 4),
# ``conv1.conv.weight`` (1, C, C, 3, 3), ``conv1.conv.modulation.weight`` (C, S) / ``.bias`` (C,),
# ``conv1.noise.weight`` (1,), ``conv1.activate.bias`` (C,), ``to_rgb1.conv.*`` + ``to_rgb1.bias``
# (1, 3, 1, 1), ``convs.{N}.*`` (even N upsample and carry ``conv.blur.kernel`` (4, 4)),
# ``to_rgbs.{N}.*`` (+ ``upsample.kernel`` (4, 4)), ``noises.noise_{i}`` (1, 1, r, r). Its
# convert_weight.py saves ``{"g_ema": sd, "latent_avg": (S,)}`` (plus "g"/"d" on request); its
# train.py checkpoints also hold "args" (an argparse Namespace), which weights_only loading
# refuses: re-save ``{"g_ema", "latent_avg"}`` only. Size, style_dim, n_mlp and widths are inferred
# from the shapes; ``latent_avg`` is carried into the adapter (or estimated when absent); files
# with no ``noises.*`` buffers at all (rosinality's early pretrained 256 px model) get seeded noise.


def _rosinality_state_dict(obj) -> Optional[dict]:
    """The rosinality generator state dict held by ``obj`` (``g_ema`` or bare, optionally with
    ``module.`` prefixes), or None."""
    if not isinstance(obj, dict):
        return None
    sd = obj["g_ema"] if isinstance(obj.get("g_ema"), dict) else obj
    if not sd or not all(isinstance(k, str) for k in sd):
        return None
    sd = _strip_prefix(dict(sd))
    if all(k in sd for k in ("input.input", "style.1.weight", "conv1.conv.weight")):
        return sd
    return None


def stylegan2_config(sd: dict, source: str = "checkpoint") -> dict:
    """Infer the StyleGAN2 config (resolution, style_dim, n_mlp, channel widths) from a rosinality
    state dict (without prefixes)."""

    def count(prefix: str, suffix: str, start: int) -> int:
        n = start
        while f"{prefix}{n}{suffix}" in sd:
            n += 1
        return n - start

    n_mlp = count("style.", ".weight", 1)
    n_rgbs = count("to_rgbs.", ".bias", 0)
    if n_rgbs < 1:
        raise CheckpointError(f"{source}: missing key 'to_rgbs.0.bias' (a StyleGAN2 generator has at least one to_rgbs block)")
    size = 2 ** (n_rgbs + 2)
    widths = {4: int(sd["input.input"].shape[1])}
    for i in range(n_rgbs):
        k = f"to_rgbs.{i}.conv.weight"
        if k not in sd or sd[k].dim() != 5:
            raise CheckpointError(f"{source}: missing key '{k}' (or not a (1, 3, C, 1, 1) kernel)")
        widths[2 ** (i + 3)] = int(sd[k].shape[2])
    cmax = widths[4]
    # widths follow min(channel_max, channel_base * channel_multiplier // r): the first
    # resolution below the cap pins the product; rosinality's table is base 16384
    below = [(r, c) for r, c in sorted(widths.items()) if c < cmax]
    product = below[0][0] * below[0][1] if below else 16384 * 2
    base, mult = (16384, product // 16384) if product % 16384 == 0 else (product, 1)
    return {"resolution": size, "style_dim": int(sd["style.1.weight"].shape[1]), "n_mlp": n_mlp,
            "channel_multiplier": mult, "channel_max": cmax, "channel_base": base}


def _is_rosinality(obj) -> bool:
    return _rosinality_state_dict(obj) is not None


def _load_rosinality(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if arch not in (None, "stylegan2"):
        raise CheckpointError(f"{source}: this checkpoint holds a StyleGAN2 generator (rosinality), not '{arch}'")
    sd = _rosinality_state_dict(obj)
    avg = obj.get("latent_avg") if "g_ema" in obj else sd.pop("latent_avg", None)
    model = build_adapter("stylegan2", **{**stylegan2_config(sd, source), **config})
    noise_keys = [f"noises.noise_{i}" for i in range(model.num_layers)]
    if not any(k in sd for k in noise_keys):
        # rosinality's own pretrained files predate the noise buffers (its issues #71, #176; it
        # loads them with strict=False and random noise): fill them reproducibly instead
        rng = torch.Generator().manual_seed(0)
        for k in noise_keys:
            sd[k] = torch.randn(tuple(model.state_dict()[k].shape), generator=rng)
    # latent_avg is our buffer, not a key of rosinality's Generator: set it after the strict load
    load_state_dict_checked(model, {**sd, "latent_avg": model.latent_avg.clone()}, source)
    if isinstance(avg, torch.Tensor):
        if avg.numel() == 0 or avg.numel() % model.style_dim:
            raise CheckpointError(f"{source}: shape mismatch at 'latent_avg': checkpoint {tuple(avg.shape)}, model ({model.style_dim},)")
        model.set_latent_avg(avg.float())
    else:
        # no stored mean w (e.g. a bare state dict): estimate it, reproducibly
        model.set_latent_avg(model.mean_w(4096, torch.Generator().manual_seed(0)))
    return model


# ---- BigGAN (HF pytorch-pretrained-BigGAN) ----
# A model is a directory with ``config.json`` (BigGANConfig: output_dim, z_dim, class_embed_dim,
# channel_width, num_classes, layers [[up, in_mult, out_mult], ...], attention_layer_position, eps,
# n_stats) and ``pytorch_model.bin`` (``BigGAN.state_dict()``: ``embeddings.weight``
# (E, num_classes), ``generator.gen_z.{weight_orig,weight_u,weight_v,bias}``,
# ``generator.layers.{N}.bn_{0..3}.{running_means,running_vars}`` (n_stats, C) and
# ``.{scale,offset}.{weight_orig,weight_u,weight_v}``, ``.conv_{0..3}.*``, the attention entry
# ``generator.layers.{P}.snconv1x1_{theta,phi,g,o_conv}.*`` + ``gamma``, ``generator.bn.{weight,
# bias,running_means,running_vars}``, ``generator.conv_to_rgb.*``). ``load_checkpoint`` reads the
# directory into ``{"hf_biggan_config": dict, "hf_biggan_state_dict": dict}``.

HF_BIGGAN_FIELDS = ("z_dim", "class_embed_dim", "channel_width", "num_classes", "layers", "attention_layer_position", "eps", "n_stats")


def read_hf_biggan_dir(path) -> dict:
    """Read an HF BigGAN directory (config.json with json, pytorch_model.bin with weights_only)."""
    import json

    path = Path(path)
    cfg_path, bin_path = path / "config.json", path / "pytorch_model.bin"
    if not cfg_path.is_file() or not bin_path.is_file():
        raise CheckpointError(f"'{path}' is a directory but neither a `recon train-rtil` run (checkpoint.pt) nor an HF BigGAN "
                              "model (config.json and pytorch_model.bin)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"'{cfg_path}' is not a readable JSON config ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"'{cfg_path}' must hold a JSON object")
    return {"hf_biggan_config": cfg, "hf_biggan_state_dict": read_checkpoint(bin_path)}


def biggan_config_from_hf(cfg: dict, source: str = "checkpoint") -> dict:
    """Map an HF BigGANConfig dict to ``BigGAN`` constructor arguments (absent fields keep the
    HF defaults, which are ours)."""
    out = {k: cfg[k] for k in HF_BIGGAN_FIELDS if k in cfg}
    layers = out.get("layers")
    if layers is not None and not (
        isinstance(layers, list) and layers and all(isinstance(l, (list, tuple)) and len(l) == 3 for l in layers)
    ):
        raise CheckpointError(f"{source}: config 'layers' must be a list of [up_sample, in_mult, out_mult]")
    return out


def _is_hf_biggan(obj) -> bool:
    if not isinstance(obj, dict):
        return False
    if "hf_biggan_config" in obj:
        return True
    keys = _strip_prefix({k: None for k in obj if isinstance(k, str)})
    return "embeddings.weight" in keys and "generator.gen_z.weight_orig" in keys


def _load_hf_biggan(obj, arch: Optional[str], source: str, **config) -> GeneratorAdapter:
    if arch not in (None, "biggan"):
        raise CheckpointError(f"{source}: this checkpoint holds a BigGAN generator (HF), not '{arch}'")
    if "hf_biggan_config" not in obj:
        raise CheckpointError(f"{source}: HF BigGAN weights need their config.json: pass the directory holding config.json and pytorch_model.bin")
    sd = obj["hf_biggan_state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{source}: pytorch_model.bin must hold a state dict")
    sd = _strip_prefix(dict(sd))
    hf_cfg = obj["hf_biggan_config"]
    model = build_adapter("biggan", **{**biggan_config_from_hf(hf_cfg, source), **config})
    # dumps made before torch stored spectral-norm v lack weight_v: derive it from u
    # (v = normalize(W^T u), the first half of a power step, as HF's converter did)
    for k in model.state_dict():
        if k.endswith(".weight_v") and k not in sd and k[:-1] + "orig" in sd and k[:-1] + "u" in sd:
            w, u = sd[k[:-1] + "orig"], sd[k[:-1] + "u"]
            if w.dim() >= 2 and u.dim() == 1 and w.shape[0] == u.shape[0]:
                sd[k] = torch.nn.functional.normalize(w.flatten(1).t() @ u, dim=0, eps=1e-12)
    load_state_dict_checked(model, sd, source)
    if "output_dim" in hf_cfg and hf_cfg["output_dim"] != model.meta.resolution:
        raise CheckpointError(f"{source}: config output_dim {hf_cfg['output_dim']} but its layers give {model.meta.resolution} px")
    return model


#: format name -> (detect(obj) -> bool, load(obj, arch, source, **config) -> adapter), tried in
#: order by ``detect_format``; one entry per public format
FORMATS: Dict[str, Tuple[Callable, Callable]] = {
    "recon": (_is_recon, _load_recon),
    "netG": (_is_netg, _load_netg),
    "pggan": (_is_pggan, _load_pggan),
    "vae-antixk": (_is_vae_antixk, _load_vae_antixk),
    "rosinality": (_is_rosinality, _load_rosinality),
    "hf-biggan": (_is_hf_biggan, _load_hf_biggan),
}


def detect_format(obj) -> str:
    """Name of the checkpoint format of a loaded object; CheckpointError if none matches."""
    for name, (detect, _) in FORMATS.items():
        if detect(obj):
            return name
    raise CheckpointError(f"not a recognised generator checkpoint (formats: {', '.join(FORMATS)})")


def from_object(obj, fmt: Optional[str] = None, arch: Optional[str] = None, source: str = "checkpoint", **config) -> GeneratorAdapter:
    """Build an adapter (eval mode) from an already loaded checkpoint object."""
    fmt = fmt or detect_format(obj)
    if fmt not in FORMATS:
        raise UnknownName("checkpoint format", str(fmt), FORMATS)
    detect, load = FORMATS[fmt]
    if not detect(obj):
        raise CheckpointError(f"{source}: not a '{fmt}' checkpoint")
    return load(obj, arch, source, **config).eval()


def load_checkpoint(path, fmt: Optional[str] = None, arch: Optional[str] = None, device="cpu", **config) -> GeneratorAdapter:
    """Load a generator checkpoint file, a `recon train-rtil` run directory (its checkpoint.pt),
    or an HF BigGAN directory into an adapter on ``device`` (eval mode)."""
    if Path(path).is_dir() and (Path(path) / "checkpoint.pt").is_file() and not (Path(path) / "config.json").exists():
        path = Path(path) / "checkpoint.pt"  # a train-rtil run directory
    obj = read_hf_biggan_dir(path) if Path(path).is_dir() else read_checkpoint(path)
    return from_object(obj, fmt=fmt, arch=arch, source=f"'{path}'", **config).to(device)


def checkpoint_bytes(model: GeneratorAdapter, extra: Optional[dict] = None) -> bytes:
    """Serialise ``model`` in the project's own format (tensors and plain containers only)."""
    obj = {
        "format": OWN_FORMAT,
        "version": OWN_VERSION,
        "architecture": model.meta.architecture,
        "config": dict(model.meta.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(model: GeneratorAdapter, path, extra: Optional[dict] = None) -> Path:
    """Write ``model`` in the project's own format, atomically (temp file + rename)."""
    from ..images import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(model, extra))
    return path
