"""Named pretrained weights, described by ``weights/MANIFEST.json`` and never downloaded.

Each manifest entry names an architecture, its config, where the file lives (a file committed
under ``weights/``, or a file inside an installed pip package), its sha256 (verified on every
load), provenance and licence. ``resolve_prior`` turns a ``--prior`` value (zoo name or path)
into an adapter.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Optional

from ..errors import BadInput, CheckpointError, MissingWeights, UnknownName
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when weights are loaded (`recon priors` stays fast)
    from .base import GeneratorAdapter


def weights_dir() -> Path:
    """The folder holding MANIFEST.json: $RECON_WEIGHTS_DIR, else the repository's weights/."""
    env = os.environ.get("RECON_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def manifest() -> dict:
    """The parsed manifest: {name: entry}."""
    path = weights_dir() / "MANIFEST.json"
    if not path.is_file():
        raise MissingWeights(f"weights manifest not found at {path}; set RECON_WEIGHTS_DIR")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MissingWeights(f"weights manifest {path} is unreadable: {e}") from None
    return {e["name"]: e for e in data["models"]}


def list_priors() -> list:
    """Names of the zoo entries, sorted."""
    return sorted(manifest())


def entry(name: str) -> dict:
    """The manifest entry called ``name``; UnknownName (with a suggestion) otherwise."""
    m = manifest()
    if name not in m:
        raise UnknownName("prior", name, m)
    return m[name]


def entry_path(e: dict) -> Path:
    """Where the weights file of manifest entry ``e`` lives; MissingWeights if absent."""
    src = e["source"]
    if src["kind"] == "file":
        p = weights_dir() / src["path"]
    elif src["kind"] == "pip-package":
        try:
            dist = metadata.distribution(src["package"])
        except metadata.PackageNotFoundError:
            raise MissingWeights(
                f"prior '{e['name']}' needs the package {src['package']}: run `{src['install']}`"
            ) from None
        # locate the file without importing the package (its own dependencies are not needed)
        p = Path(dist.locate_file(src["path"]))
    else:
        raise MissingWeights(f"prior '{e['name']}': unknown source kind {src['kind']!r}")
    if not p.is_file():
        hint = f": run `{src['install']}`" if "install" in src else ""
        raise MissingWeights(f"weights of prior '{e['name']}' not found at {p}{hint}")
    return p


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path) -> str:
    """sha256 hex digest of a file (cached per path, size and mtime)."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def load_prior(name: str, device="cpu", **overrides) -> "GeneratorAdapter":
    """Load zoo entry ``name`` (sha256-verified) onto ``device``, in eval mode; ``overrides``
    (e.g. class_idx, truncation) replace config values of the entry."""
    e = entry(name)
    path = entry_path(e)
    digest = sha256_file(path)
    if digest != e["sha256"]:
        raise CheckpointError(f"sha256 of {path} is {digest[:12]}..., manifest says {e['sha256'][:12]}...: file altered or wrong version")
    from .checkpoints import load_checkpoint

    model = load_checkpoint(path, fmt=e.get("format"), arch=e["architecture"], device=device, **overrides)
    if {k: v for k, v in model.meta.config.items() if k not in overrides} != {k: v for k, v in e["config"].items() if k not in overrides}:
        raise CheckpointError(f"prior '{name}': checkpoint config {model.meta.config} differs from the manifest {e['config']}")
    model.meta.weights_id = name
    return model


def resolve_prior(prior: str, device="cpu", arch: Optional[str] = None, fmt: Optional[str] = None, **config) -> "GeneratorAdapter":
    """A ``--prior`` value -> adapter: a zoo name, or a path to a checkpoint file."""
    if Path(prior).exists():
        from .checkpoints import load_checkpoint

        model = load_checkpoint(prior, fmt=fmt, arch=arch, device=device, **config)
        model.meta.weights_id = str(prior)
        return model
    if any(sep in prior for sep in ("/", "\\")) or prior.endswith((".pt", ".pth", ".tar", ".ckpt", ".bin")):
        raise CheckpointError(f"checkpoint '{prior}' does not exist")
    if arch is not None or fmt is not None:
        raise BadInput(f"--arch and --prior-format apply to checkpoint paths; '{prior}' is a zoo name")
    return load_prior(prior, device=device, **config)


def prior_image_shape(prior: str, arch: Optional[str] = None, fmt: Optional[str] = None, **config) -> tuple:
    """(C, R, R) of the images a ``--prior`` value generates, without loading zoo weights."""
    if not Path(prior).exists() and prior in _names_quietly():
        e = entry(prior)
        return (int(e["channels"]), int(e["resolution"]), int(e["resolution"]))
    g = resolve_prior(prior, arch=arch, fmt=fmt, **config)
    return (g.meta.channels, g.meta.resolution, g.meta.resolution)


def _names_quietly() -> list:
    try:
        return list(manifest())
    except MissingWeights:
        return []
