"""Checkpoint formats -> our adapters, and the project's own format.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint that holds pickled
code or arbitrary objects is refused, never executed. Formats recognised here:

- ``recon``: the project's own ``{"format": "recon-generator", "version", "architecture",
  "config", "state_dict"}``.
- ``netG``: pytorch/examples DCGAN ``netG`` state dict (``main.{i}.weight``, BatchNorm at
  ``main.{i+1}``), bare or wrapped as ``{"netG_state_dict": ...}`` (the PyTorch DCGAN faces
  tutorial, e.g. gan-face-generate), optionally with DataParallel's ``module.`` prefix. The
  configuration (resolution, nz, ngf, nc) is inferred from the shapes.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import CheckpointError, UnknownName
from .base import GeneratorAdapter
from .dcgan import DCGAN

OWN_FORMAT = "recon-generator"
OWN_VERSION = 1

#: architecture name -> adapter class (constructor takes the config as keyword arguments)
ARCHITECTURES: Dict[str, Callable[..., GeneratorAdapter]] = {"dcgan": DCGAN}


def build_adapter(arch: str, **config) -> GeneratorAdapter:
    """A randomly initialised adapter of architecture ``arch`` with the given config."""
    if arch not in ARCHITECTURES:
        raise UnknownName("architecture", arch, ARCHITECTURES)
    try:
        return ARCHITECTURES[arch](**config)
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


#: format name -> (detect(obj) -> bool, load(obj, arch, source, **config) -> adapter), tried in
#: order by ``detect_format``; one entry per public format
FORMATS: Dict[str, Tuple[Callable, Callable]] = {
    "recon": (_is_recon, _load_recon),
    "netG": (_is_netg, _load_netg),
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
    """Load a generator checkpoint file into an adapter on ``device`` (eval mode)."""
    obj = read_checkpoint(path)
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
