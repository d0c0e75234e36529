"""The small public Python API, re-exported by ``recon_core`` (``import recon_core as rc``).

Load a prior, build an operator, add noise, solve with any method by name, run the whole
``recon reconstruct`` pipeline, compute metrics. Images are float32 tensors (N, C, H, W) in
[0, 1]; one ``seed`` follows the CLI's seed policy (recon_core.pipeline), so ``rc.solve(...,
seed=S)`` solves as ``recon reconstruct --seed S`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Union

from .errors import BadInput, is_int

if TYPE_CHECKING:  # the heavy modules are imported when a function runs, not with recon_core
    import torch

    from .generators.base import GeneratorAdapter
    from .operators.base import LinearOperator
    from .solvers.common import Result


def load_prior(name: str = "dcgan-faces-64", device: str = "cpu", **options) -> "GeneratorAdapter":
    """A generator prior: a zoo name (see ``list_priors``) or a checkpoint path (``options``:
    arch, fmt, class_idx, truncation, ...), in eval mode on ``device``. ``G(z)`` maps latents
    to images in [0, 1]; ``G.sample(n, seed)`` draws n images."""
    from .generators.zoo import resolve_prior

    return resolve_prior(name, device=device, **options)


def operator(kind: str, img_shape: Sequence[int], *, seed: int = 0, device: str = "cpu", **params) -> "LinearOperator":
    """Forward operator ``kind`` (see ``list_operators``) for images of shape (C, H, W), e.g.
    ``operator("cs-gaussian", (3, 64, 64), ratio=0.1)``; ``A(x)`` applies it, ``A.A_adjoint``,
    ``A.A_dagger`` (pseudo-inverse) and ``A.spec()`` are there too."""
    from .operators import build

    return build(kind, tuple(img_shape), seed=seed, device=device, **params)


def add_noise(y: "torch.Tensor", A: "LinearOperator", std: float, convention: str = "per-entry", seed: int = 0) -> "torch.Tensor":
    """y + Gaussian noise of level ``std`` (per-entry: the std of each entry; cs-norm: the
    Surgery paper's sqrt(E||eta||^2) at 64 px, scaled to A), drawn from ``seed``."""
    from .operators import NoiseSpec
    from .operators import add_noise as _add

    return _add(y, NoiseSpec(convention, float(std), seed=int(seed)), A)


def solve(method: str, A: "LinearOperator", y: "torch.Tensor", prior: Optional["GeneratorAdapter"] = None, *,
          noise_std: float = 0.0, preset: str = "fast", seed: int = 0, on_event: Optional[Callable] = None,
          **options) -> "Result":
    """Reconstruct from ``y`` = A x (+ noise of per-entry std ``noise_std``) with ``method``
    (see ``list_methods``), as ``recon reconstruct`` would: ``preset`` ("fast" or "paper") on the
    paper's settings for the prior's architecture, then ``options`` (config fields, e.g.
    ``cut=2, restarts=5``); the solver seed of the seed policy from ``seed``. Returns the Result
    (``x_hat`` (1, C, H, W) in [0, 1], ``losses``, ``extra``); SolverDiverged if every restart
    diverged. ``prior`` may be None for pinv, lasso-dct and deep-decoder."""
    from .pipeline import build_config, solve_problems
    from .solvers import Problem

    if not is_int(seed):
        raise BadInput(f"seed must be an integer, got {seed!r}")
    arch, cuts = (prior.meta.architecture, prior.cut_points) if prior is not None else ("", None)
    cfg, _ = build_config(method, arch, options, cuts, preset)
    result = solve_problems(method, [Problem(A, y, float(noise_std))], prior, cfg, seed, on_event)[0]
    if isinstance(result, Exception):
        raise result
    return result


def reconstruct(image, out=None, **settings) -> dict:
    """The whole ``recon reconstruct`` run on one image file (``settings``: the keywords of
    ``recon_core.pipeline.Pipeline``, e.g. method, op, op_params, noise_std, seed, prior):
    returns its metrics.json record; with ``out`` (a folder) the outputs are written there."""
    from .pipeline import Pipeline

    force = bool(settings.pop("force", False))
    return Pipeline(**settings).run(image, out, force=force)


def compute_metrics(x: "torch.Tensor", x_hat: "torch.Tensor", y: Optional["torch.Tensor"] = None,
                    A: Optional["LinearOperator"] = None) -> dict:
    """PSNR, SSIM, LPIPS (real AlexNet weights; None with a reason when absent), MSE and, given
    y and A, the residual ||A x_hat - y|| / ||y|| of one image (1, C, H, W) in [0, 1]."""
    from .metrics import compute_metrics as _compute

    return _compute(x, x_hat, y, A)


def list_methods() -> List[str]:
    """The method names ``solve`` and ``reconstruct`` accept."""
    from .solvers import METHODS

    return list(METHODS)


def list_operators() -> List[str]:
    """The operator kinds ``operator`` accepts (aliases included)."""
    from .operators import list_operators as _list

    return _list()


def list_priors() -> List[str]:
    """The zoo's prior names, sorted (installed or not; see `recon priors`)."""
    from .generators.zoo import list_priors as _list

    return _list()


def example_image(name: str = "astronaut-face", size: Union[int, Sequence[int]] = 64,
                  channels: Optional[int] = None) -> "torch.Tensor":
    """A real photo shipped with recon (the astronaut face crop), (1, C, size, size) in [0, 1]."""
    from .images import example_image as _example

    return _example(name, size, channels)
