"""The deepinv bridge (optional extra: ``pip install recon[deepinv]``, tested with deepinv 0.5.0).

- ``to_deepinv(op)``: a recon operator as a ``deepinv.physics.LinearPhysics`` (``A``,
  ``A_adjoint``, ``A_dagger`` are the operator's own), so deepinv's tools (``adjointness_test``,
  ``compute_sqnorm``, its solvers and reconstructors) run on recon's operators.
- ``from_deepinv(physics, img_shape)``: a deepinv linear physics as a recon ``LinearOperator``,
  so recon's solvers (CSGM, Generator Surgery, ...) run on deepinv's operators.
- ``as_deepinv_generator(prior)``: a recon prior as the latent -> image network deepinv's
  ``CSGMGenerator`` optimises (``nz`` attribute, latents (N, nz, 1, 1)).

deepinv is imported when one of these is called, never when recon is imported; without it they
raise ``MissingDependency``. A wrapped deepinv physics carries no recon spec: its ``spec()``
says so, and ``from_spec`` / ``save_measurements`` refuse it with a one-line OperatorError.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import BadInput, MissingDependency, OperatorError
from ..operators.base import LinearOperator
from ..operators.noise import NoiseSpec

#: the deepinv release the bridge is tested with (pyproject's ``deepinv`` extra pins it)
DEEPINV_VERSION = "0.5.0"


def require_deepinv():
    """The imported ``deepinv`` module; MissingDependency (one line, with the pip command) if
    it is not installed."""
    try:
        import deepinv
    except ImportError:
        raise MissingDependency(
            f"the deepinv bridge needs the optional extra: pip install recon[deepinv] (deepinv=={DEEPINV_VERSION})"
        ) from None
    return deepinv


@functools.lru_cache(maxsize=None)
def _physics_class():
    """ReconPhysics, defined on first use because its base class comes from deepinv."""
    dinv = require_deepinv()

    class ReconPhysics(dinv.physics.LinearPhysics):
        """A recon ``LinearOperator`` as a deepinv ``LinearPhysics``: x (N, C, H, W) ->
        y (N, *op.meas_shape). ``A``, ``A_adjoint`` and ``A_dagger`` call the operator's own
        (so ``A_dagger`` is recon's pseudo-inverse or its documented approximation); noise is
        deepinv's ``noise_model``. The operator is a submodule: ``.to(device)`` moves both.
        deepinv's per-call physics parameters (keyword arguments) do not apply and are ignored."""

        def __init__(self, op: LinearOperator, noise_model=None, **kwargs):
            if noise_model is not None:
                kwargs["noise_model"] = noise_model
            super().__init__(img_size=tuple(op.img_shape), device=op.device, **kwargs)
            self.op = op

        def A(self, x, **kwargs):
            return self.op.A(x)

        def A_adjoint(self, y, **kwargs):
            return self.op.A_adjoint(y)

        def A_dagger(self, y, *args, **kwargs):
            return self.op.A_dagger(y)

    ReconPhysics.__module__ = __name__
    ReconPhysics.__qualname__ = "ReconPhysics"
    return ReconPhysics


def to_deepinv(op: LinearOperator, noise: Optional[NoiseSpec] = None, **kwargs):
    """``op`` as a ``deepinv.physics.LinearPhysics`` (class ``ReconPhysics``, ``.op`` is ``op``).

    ``noise``: a recon NoiseSpec, turned into deepinv's ``GaussianNoise`` with the per-entry std
    it resolves to for ``op`` (deepinv draws it from torch's global generator, not from the
    spec's seed); None = no noise. ``kwargs`` go to ``LinearPhysics`` (e.g. ``max_iter``)."""
    if not isinstance(op, LinearOperator):
        raise OperatorError(f"to_deepinv needs a recon LinearOperator, got {type(op).__name__}")
    dinv = require_deepinv()
    noise_model = None
    if noise is not None:
        if not isinstance(noise, NoiseSpec):
            raise BadInput(f"to_deepinv: noise must be a NoiseSpec or None, got {type(noise).__name__}")
        noise_model = dinv.physics.GaussianNoise(sigma=noise.std(op))
    return _physics_class()(op, noise_model=noise_model, **kwargs)


class DeepinvOperator(LinearOperator):
    """A deepinv ``LinearPhysics`` as a recon operator: (N, C, H, W) -> (N, *meas_shape), where
    ``A`` is ``physics.A`` (noise-free), ``A_adjoint`` is ``physics.A_adjoint`` and ``A_dagger``
    is ``physics.A_dagger`` (deepinv's closed form where the class has one, else its iterative
    least-squares solver: an approximation to deepinv's tolerance). ``backproject`` uses recon's
    exact route (conjugate gradients on A A^T). dtype and device follow the physics' tensors
    (deepinv's are float32). Not a registered family and not serialisable: ``spec()`` describes
    the physics for the record (including the object's id, so two wrapped objects never share a
    spec) and ``from_spec`` refuses to rebuild it."""

    kind = "deepinv"

    def __init__(self, physics, img_shape, meas_shape: Optional[Sequence[int]] = None):
        dinv = require_deepinv()
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise OperatorError(
                f"from_deepinv needs a deepinv LinearPhysics (with an adjoint), got {type(physics).__name__}"
            )
        holder = next(iter(physics.buffers()), None)
        super().__init__(img_shape, device=holder.device if holder is not None else "cpu")
        self.physics = physics  # a submodule: .to() moves it
        if meas_shape is None:
            with torch.no_grad():  # one probe: the physics' output shape for one image
                probe = physics.A(torch.zeros((1,) + self.img_shape, device=self.device))
            if not isinstance(probe, torch.Tensor):
                raise OperatorError(f"from_deepinv: {type(physics).__name__} returns {type(probe).__name__}, not one tensor")
            meas_shape = tuple(probe.shape[1:])
        self.meas_shape = tuple(int(s) for s in meas_shape)
        self.previewable = self.meas_shape == self.img_shape

    def spec(self) -> dict:
        """A record of the wrapped physics; ``serialisable: False`` makes from_spec refuse it."""
        cls = type(self.physics)
        name = f"{cls.__module__}.{cls.__qualname__}"
        return {
            "kind": self.kind, "img_shape": list(self.img_shape), "seed": self.seed, "physics": name,
            "instance": f"{id(self.physics):x}", "serialisable": False,
            "reason": f"it wraps a deepinv {cls.__qualname__} object, whose parameters recon does not record; wrap the object again with from_deepinv",
        }

    def extra_repr(self) -> str:
        return f"img_shape={self.img_shape}, meas_shape={self.meas_shape}"

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x)

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        return self.physics.A_adjoint(y)

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """deepinv's ``physics.A_dagger(y)``: (N, *meas_shape) -> (N, C, H, W)."""
        return self.physics.A_dagger(self._check_y(y))

    def preview(self, y: torch.Tensor):
        """Image-shaped measurements (inpainting, blur, denoising) clamped to [0, 1], else None."""
        return self._check_y(y).clamp(0, 1) if self.previewable else None


def from_deepinv(physics, img_shape: Sequence[int], meas_shape: Optional[Sequence[int]] = None, unwrap: bool = True) -> LinearOperator:
    """A deepinv linear ``physics`` as a recon operator for images of ``img_shape`` = (C, H, W).

    ``meas_shape``: the per-image measurement shape (default: found by applying the physics to
    one zero image). A ``ReconPhysics`` made by ``to_deepinv`` gives back its recon operator
    (serialisable, unchanged) unless ``unwrap`` is False."""
    if unwrap and isinstance(physics, _physics_class()):
        if tuple(physics.op.img_shape) != tuple(int(s) for s in img_shape):
            raise OperatorError(f"from_deepinv: the wrapped recon operator takes images {physics.op.img_shape}, not {tuple(img_shape)}")
        return physics.op
    return DeepinvOperator(physics, img_shape, meas_shape)


class DeepinvGenerator(nn.Module):
    """A recon prior as deepinv's generator backbone: z (N, nz, 1, 1) -> image (N, C, H, W) in
    [0, 1] (the prior's ``forward``), with the ``nz`` attribute ``CSGMGenerator`` reads.

    Only priors whose latent is one vector (DCGAN, ...) fit; the prior is a submodule."""

    def __init__(self, prior):
        super().__init__()
        shapes = prior.state_shapes(0)
        if len(shapes) != 1 or len(next(iter(shapes.values()))) != 1:
            raise BadInput(
                f"as_deepinv_generator needs a prior whose latent is one vector; {prior.meta.architecture} has {dict(shapes)}"
            )
        (self.key, (self.nz,)), = shapes.items()
        self.prior = prior

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) for z of shape (N, nz) or (N, nz, 1, 1)."""
        return self.prior({self.key: z.reshape(z.shape[0], self.nz)})


def as_deepinv_generator(prior) -> DeepinvGenerator:
    """``prior`` (a recon GeneratorAdapter) as the backbone of deepinv's ``CSGMGenerator``."""
    return DeepinvGenerator(prior)
