"""The LinearOperator contract, the operator registry, and spec (de)serialisation.

Every forward operator maps a batch of images x (N, C, H, W), float32 in [0, 1], to
measurements y (N, *meas_shape). Operators are linear and carry all their randomness in
tensors drawn once, at construction, from a ``torch.Generator`` seeded from ``spec()["seed"]``,
so ``from_spec(op.spec())`` rebuilds exactly the same operator on any device.

Operators are ``torch.nn.Module``s, in deepinv's shape: ``op(x)`` is ``op.A(x)``; the tensors an
operator draws or derives at construction (a Gaussian matrix, a mask's pixel indices, ...) are
registered buffers, so ``op.to(device)``, ``.cuda()``, ``state_dict()`` and ``copy.deepcopy``
work as in torch (``to`` moves the operator in place and returns it). Caches built lazily from
the buffers (a Cholesky factor, FFT filters) are dropped whenever the buffers move and rebuilt
on the next call. Moving never changes the operator: ``spec()`` stays the same.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Callable, Dict, Optional, Tuple, Type

import torch
from torch import nn

from ..errors import OperatorError, UnknownName

_REGISTRY: Dict[str, Type["LinearOperator"]] = {}
_ALIASES: Dict[str, str] = {}


def register(name: str, *aliases: str) -> Callable[[Type["LinearOperator"]], Type["LinearOperator"]]:
    """Class decorator: register an operator family under ``name`` (and optional aliases)."""

    def deco(cls):
        cls.kind = name
        _REGISTRY[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls

    return deco


def _ensure_loaded() -> None:
    # importing the package registers every family (one module per family)
    from . import blur, circulant, composed, fourier, gaussian, identity, inpaint, superres  # noqa: F401


def list_operators() -> list:
    """Names of every registered operator family, aliases included, sorted."""
    _ensure_loaded()
    return sorted(list(_REGISTRY) + list(_ALIASES))


def get(name: str) -> Type["LinearOperator"]:
    """The operator class registered under ``name`` (or alias); UnknownName otherwise."""
    _ensure_loaded()
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise UnknownName("operator", name, list_operators())
    return _REGISTRY[name]


def default_memory_budget() -> int:
    """A quarter of the machine's physical RAM, in bytes (8 GB if it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 8 * 10**9


def build(kind: str, img_shape, *, seed: int = 0, device="cpu", max_bytes: Optional[int] = None, **params) -> "LinearOperator":
    """Construct operator ``kind`` for images of shape ``img_shape`` = (C, H, W).

    ``max_bytes``: refuse (OperatorError) an operator whose estimated memory exceeds it, before
    allocating anything; None = ``default_memory_budget()``."""
    cls = get(kind)
    img_shape = _image_shape(kind, img_shape)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [] if any(p.kind is p.VAR_KEYWORD for p in accepted.values()) else sorted(set(params) - set(accepted))
    if unknown:
        takes = [p for p in accepted if p not in ("self", "img_shape", "seed", "device")]
        raise OperatorError(f"{kind} takes {', '.join(takes) or 'no parameters'}; got {', '.join(unknown)}")
    budget = default_memory_budget() if max_bytes is None else int(max_bytes)
    need = cls.estimate_bytes(img_shape, **params)
    if need > budget:
        raise OperatorError(
            f"{kind} on {'x'.join(map(str, img_shape))} images needs about {need / 1e9:.1f} GB, over the memory budget of "
            f"{budget / 1e9:.1f} GB (--max-memory); use cs-circulant (O(n) memory) or a smaller image"
        )
    return cls(img_shape, seed=int(seed), device=device, **params)


def _image_shape(kind: str, img_shape) -> tuple:
    """``img_shape`` as a (C, H, W) tuple of positive ints; OperatorError otherwise."""
    try:
        shape = tuple(int(s) for s in img_shape)
        ok = len(shape) == 3 and all(v >= 1 and v == s for v, s in zip(shape, img_shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OperatorError(f"{kind}: img_shape must be (C, H, W) of positive integers, got {img_shape!r}")
    return shape


def from_spec(spec: dict, device="cpu", max_bytes: Optional[int] = None) -> "LinearOperator":
    """Rebuild the exact operator described by ``spec`` (as returned by ``op.spec()``)."""
    if not isinstance(spec, dict) or "kind" not in spec or "img_shape" not in spec:
        raise OperatorError("operator spec must be a dict with 'kind' and 'img_shape'")
    if spec.get("serialisable") is False:  # e.g. a wrapped deepinv physics (interop/deepinv.py)
        raise OperatorError(f"operator '{spec['kind']}' cannot be rebuilt from its spec: {spec.get('reason', 'it is not serialisable')}")
    spec = dict(spec)
    kind = spec.pop("kind")
    img_shape = spec.pop("img_shape")
    seed = spec.pop("seed", 0)
    try:
        return build(kind, img_shape, seed=seed, device=device, max_bytes=max_bytes, **spec)
    except TypeError as e:  # unknown/missing parameter names in a hand-edited spec
        raise OperatorError(f"invalid parameters in '{kind}' spec: {e}") from None


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product of two batched tensors -> (N,)."""
    return (a.reshape(a.shape[0], -1) * b.reshape(b.shape[0], -1)).sum(1)


class LinearOperator(nn.Module):
    """Base class of every forward operator: a ``torch.nn.Module`` whose ``forward`` is ``A``.

    Subclasses set ``meas_shape`` and implement ``_A``/``_At`` (on batches, shapes already
    checked); they override ``A_dagger``/``_AAt_solve`` where a closed form exists. ``params()``
    returns the JSON-able constructor parameters (everything but img_shape/seed/device). Tensors
    that define the operator are registered with ``register_buffer`` (they follow ``.to()`` and
    appear in ``state_dict()``); lazily built caches are listed in ``_caches`` and reset by
    ``_drop_caches`` whenever the module's tensors are moved or cast."""

    kind = "base"
    #: True when the measurements can be shown as an image (compare.png) via ``preview``
    previewable = False
    #: names of lazily built, derived attributes (None until built): reset when tensors move
    _caches: Tuple[str, ...] = ()

    def __init__(self, img_shape: Tuple[int, int, int], *, seed: int = 0, device="cpu"):
        super().__init__()
        if len(img_shape) != 3 or min(img_shape) < 1:
            raise OperatorError(f"img_shape must be (C, H, W) with positive sizes, got {tuple(img_shape)}")
        self.img_shape = tuple(int(s) for s in img_shape)
        self.seed = int(seed)
        # an empty, non-persistent buffer that follows .to(): the operator's device even when it
        # holds no other tensor (identity, superres); the same device-holder trick as deepinv's
        self.register_buffer("_device_holder", torch.empty(0, device=device), persistent=False)
        self.meas_shape: Tuple[int, ...] = self.img_shape
        self._drop_caches()

    @property
    def device(self) -> torch.device:
        """The device the operator's tensors live on (follows ``.to(device)``)."""
        return self._device_holder.device

    def _drop_caches(self) -> None:
        """Reset every lazily built cache (called at construction and when tensors move)."""
        for name in self._caches:
            setattr(self, name, None)

    def _apply(self, fn, *args, **kwargs):
        # every .to()/.cuda()/.double() goes through _apply: caches built for the old device or
        # dtype would be stale, so drop them and let the next call rebuild them
        self._drop_caches()
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``op(x)`` = ``op.A(x)``: (N, C, H, W) -> (N, *meas_shape)."""
        return self.A(x)

    def extra_repr(self) -> str:
        """The spec's parameters, shown by ``repr(op)``."""
        return ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "kind")

    @classmethod
    def estimate_bytes(cls, img_shape, **params) -> int:
        """Rough memory the operator itself needs, in bytes, before building it (default: a few
        image-sized float buffers; dense families override)."""
        return 16 * math.prod(int(s) for s in img_shape)

    # ---- construction helpers -------------------------------------------------------------
    def _rng(self) -> torch.Generator:
        """A CPU generator seeded from the spec: CPU draws are identical on every device."""
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed)
        return g

    @property
    def n(self) -> int:
        """Signal dimension C*H*W."""
        return math.prod(self.img_shape)

    @property
    def m(self) -> int:
        """Number of (real) measurements."""
        return math.prod(self.meas_shape)

    def params(self) -> dict:
        """JSON-able constructor parameters (override)."""
        return {}

    def spec(self) -> dict:
        """A JSON-able description from which ``from_spec`` rebuilds this exact operator."""
        return {"kind": self.kind, "img_shape": list(self.img_shape), "seed": self.seed, **self.params()}

    # ---- shape checks ---------------------------------------------------------------------
    def _check_tensor(self, t, what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise OperatorError(f"{self.kind}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if not (t.is_floating_point() or t.is_complex()):
            raise OperatorError(f"{self.kind}: {what} must be a floating-point tensor, got {t.dtype}")

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        self._check_tensor(x, "images")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            raise OperatorError(
                f"{self.kind}: expected images of shape (N, {', '.join(map(str, self.img_shape))}), got {tuple(x.shape)}"
            )
        return x

    def _check_y(self, y: torch.Tensor) -> torch.Tensor:
        self._check_tensor(y, "measurements")
        if y.dim() == len(self.meas_shape):
            y = y.unsqueeze(0)
        if tuple(y.shape[1:]) != tuple(self.meas_shape):
            raise OperatorError(
                f"{self.kind}: expected measurements of shape (N, {', '.join(map(str, self.meas_shape))}), got {tuple(y.shape)}"
            )
        return y

    # ---- the contract ---------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Forward map: (N, C, H, W) -> (N, *meas_shape)."""
        return self._A(self._check_x(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Adjoint map A^T: (N, *meas_shape) -> (N, C, H, W)."""
        return self._At(self._check_y(y))

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Pseudo-inverse A^+ y = A^T (A A^T)^-1 y (minimum-norm solution); subclasses that use
        an approximation say so in their docstring."""
        y = self._check_y(y)
        return self._At(self._AAt_solve(y))

    def backproject(self, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """IAGAN back-projection (eq. 10): x_hat + A^+ (y - A x_hat), so A(result) = y.

        Uses the exact pseudo-inverse (closed form where available, else conjugate gradients on
        A A^T), never an approximate A_dagger."""
        x_hat = self._check_x(x_hat)
        y = self._check_y(y)
        return x_hat + self._At(self._AAt_solve(y - self._A(x_hat)))

    def residual_energy(self, x: torch.Tensor, y: torch.Tensor, coarse: bool = False) -> torch.Tensor:
        """Per-row squared residual ||y - A x||^2: x (N, C, H, W), y (1 or N, *meas_shape) ->
        (N,), differentiable in x (the solvers' measurement loss). Subclasses may compute it in
        fewer passes (same values up to float rounding). ``coarse``: the caller accepts a
        bfloat16-accurate value (the fast schedule's early evaluations, asked for only where the
        device computes bfloat16 natively); an operator with a faster bfloat16 form may use it,
        the others ignore it."""
        r = self.A(x) - y
        return r.reshape(r.shape[0], -1).pow(2).sum(1)

    def preview(self, y: torch.Tensor) -> Optional[torch.Tensor]:
        """The measurements shown as an image (N, C, H, W) for compare.png, or None."""
        if not self.previewable:
            return None
        return self.A_dagger(y).clamp(0, 1)

    # ---- to implement ---------------------------------------------------------------------
    def _A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _AAt_solve(self, r: torch.Tensor, tol: float = 1e-7, max_iter: int = 500) -> torch.Tensor:
        """Solve (A A^T) u = r for u in measurement space, by conjugate gradients.

        Written here rather than taken from scipy because it must run batched, on torch tensors,
        on any device, with autograd off. Subclasses override with closed forms."""
        with torch.no_grad():
            AAt = lambda v: self._A(self._At(v))  # noqa: E731
            u = torch.zeros_like(r, dtype=torch.float64)
            r64 = r.double()
            res = r64.clone()
            p = res.clone()
            rs = _dot(res, res)
            r0 = rs.clamp_min(1e-300)
            shape = (-1,) + (1,) * (r.dim() - 1)
            for _ in range(max_iter):
                # apply the operator in the caller's dtype: float64 callers get float64 accuracy
                Ap = AAt(p.to(r.dtype)).double()
                alpha = rs / _dot(p, Ap).clamp_min(1e-300)
                u = u + alpha.view(shape) * p
                res = res - alpha.view(shape) * Ap
                rs_new = _dot(res, res)
                if bool((rs_new / r0).max() < tol**2):
                    break
                p = res + (rs_new / rs.clamp_min(1e-300)).view(shape) * p
                rs = rs_new
            return u.to(r.dtype)
