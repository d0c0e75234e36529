"""Composition of operators: apply A1, then A2, ... (e.g. blur then super-resolution downsampling).

The idiom is one function, ``compose(A1, A2, ...)``, in application order, like deepinv's
``deepinv.physics.compose`` (there is no operator overload: ``*`` and ``@`` read in the opposite,
mathematical order, and would be easy to get backwards). The result is the registered family
``composed``: its spec lists the parts' specs, so ``from_spec`` rebuilds it exactly and it goes
through measurements files like any other operator::

    {"kind": "composed", "img_shape": [3, 64, 64], "seed": 0,
     "parts": [{"kind": "blur", "img_shape": [3, 64, 64], "seed": 0, "kernel_size": 9, ...},
               {"kind": "superres", "img_shape": [3, 64, 64], "seed": 0, "factor": 4}]}

Every part but the last must return images (a (C, H, W) measurement shape), since the next part
takes images: blur, identity and superres can come first; any family can come last.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Union

import torch
from torch import nn

from ..errors import OperatorError, ReconError
from .base import LinearOperator, build, get, register


def _part_shape(spec: dict, default) -> tuple:
    """The image shape a part spec declares (or ``default`` when it has none)."""
    return tuple(int(s) for s in spec.get("img_shape", default))


@register("composed")
class ComposedOperator(LinearOperator):
    """y = A_k(...A_2(A_1(x))): (N, C, H, W) -> (N, *meas_shape of the last part).

    ``parts``: a list (at least one) of operators or operator specs, in application order. A part
    spec may omit ``img_shape`` (it is the previous part's output shape) and ``seed`` (it is this
    operator's seed); ``spec()`` always records both, so the round trip is exact. Adjoint: the
    parts' adjoints in reverse order.

    ``A_dagger`` is the minimum-norm least-squares solution A^T (A A^T)^-1 y, with (A A^T) u = y
    solved by conjugate gradients (float64 accumulation, relative residual 1e-7, at most 500
    iterations): the exact pseudo-inverse, to that tolerance, when A has full row rank and
    A A^T is reasonably conditioned (e.g. a 3x3 box blur then a x2 downsampling). With an
    ill-conditioned part (a large box blur: A A^T has near-zero eigenvalues) CG stops at
    ``max_iter`` and the result is an approximation. The parts' own A_dagger are not chained:
    (A_2 A_1)^+ differs from A_1^+ A_2^+ in general. ``backproject`` uses the same solve.
    ``preview`` is the last part's preview when the parts before it keep the image shape."""

    def __init__(self, img_shape, *, seed: int = 0, device="cpu", parts: Sequence[Union[dict, LinearOperator]] = ()):
        super().__init__(img_shape, seed=seed, device=device)
        if isinstance(parts, (dict, LinearOperator)) or not isinstance(parts, (list, tuple, nn.ModuleList)) or not parts:
            raise OperatorError("composed: parts must be a non-empty list of operators or operator specs")
        built: List[LinearOperator] = []
        shape = self.img_shape
        for j, p in enumerate(parts):
            if j and len(shape) != 3:
                raise OperatorError(
                    f"composed: part {j - 1} ({built[-1].kind}) returns measurements of shape {shape}, not images; "
                    "only the last part may"
                )
            if isinstance(p, dict):
                p = self._build_part(j, p, shape, device)
            elif not isinstance(p, LinearOperator):
                raise OperatorError(f"composed: part {j} is neither an operator nor an operator spec ({type(p).__name__})")
            if p.img_shape != shape:
                raise OperatorError(f"composed: part {j} ({p.kind}) takes images of shape {p.img_shape}, but gets {shape}")
            built.append(p)
            shape = tuple(p.meas_shape)
        # a ModuleList so .to() moves every part and state_dict() holds their buffers
        self.parts: List[LinearOperator] = nn.ModuleList(built)
        self.meas_shape = shape
        last = built[-1]
        self.previewable = last.previewable and last.img_shape == self.img_shape

    def _build_part(self, j: int, spec: dict, shape: tuple, device) -> LinearOperator:
        """Part ``j`` from its spec, for input images of ``shape`` (the previous part's output)."""
        spec = dict(spec)
        if "kind" not in spec:
            raise OperatorError(f"composed: part {j} spec lacks 'kind'")
        kind = spec.pop("kind")
        declared = _part_shape(spec, shape)
        spec.pop("img_shape", None)
        if declared != shape:
            raise OperatorError(f"composed: part {j} ({kind}) spec declares img_shape {declared}, but gets {shape}")
        seed = spec.pop("seed", self.seed)
        try:
            # the whole composition's memory was checked by build(): no second budget here
            return build(kind, shape, seed=seed, device=device, max_bytes=2**62, **spec)
        except (TypeError, OperatorError) as e:
            raise OperatorError(f"composed: invalid parameters in part {j} ('{kind}') spec: {e}") from None

    @classmethod
    def estimate_bytes(cls, img_shape, parts=(), **params) -> int:
        """Sum of the parts' estimates, each at its declared image shape or, if none, at the full
        image shape (an upper bound: parts only keep or shrink images). Built parts count 0."""
        total = 16 * math.prod(int(s) for s in img_shape)
        if not isinstance(parts, (list, tuple)):
            return total  # reported by __init__
        for p in parts:
            if isinstance(p, dict) and isinstance(p.get("kind"), str):
                rest = {k: v for k, v in p.items() if k not in ("kind", "img_shape", "seed")}
                try:
                    total += get(p["kind"]).estimate_bytes(_part_shape(p, img_shape), **rest)
                except (TypeError, ValueError, ReconError):
                    pass  # bad part specs are reported by __init__ with their own message
        return total

    def params(self) -> dict:
        return {"parts": [p.spec() for p in self.parts]}

    def extra_repr(self) -> str:
        # the parts print themselves (they are submodules)
        return f"img_shape={list(self.img_shape)}, meas_shape={list(self.meas_shape)}"

    def spec(self) -> dict:
        """The parts' specs; not serialisable (``serialisable: False``) when a part is not."""
        spec = super().spec()
        for j, p in enumerate(spec["parts"]):
            if p.get("serialisable") is False:  # e.g. a wrapped deepinv physics
                return {**spec, "serialisable": False, "reason": f"part {j}: {p.get('reason', 'it is not serialisable')}"}
        return spec

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.parts:
            x = p._A(x)
        return x

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        for p in reversed(self.parts):
            y = p._At(y)
        return y

    def preview(self, y: torch.Tensor):
        """The last part's preview of y (N, C, H, W) when it takes full-size images, else None."""
        if not self.previewable:
            return None
        return self.parts[-1].preview(self._check_y(y))


def compose(*ops: LinearOperator) -> ComposedOperator:
    """The operator that applies ``ops[0]``, then ``ops[1]``, ...: A = A_k o ... o A_1.

    Each operator's measurement shape must be the next one's image shape. Nested compositions
    are flattened, so the spec lists the elementary parts. The parts are shared, not copied;
    the result lives on the first part's device."""
    flat: List[LinearOperator] = []
    for j, op in enumerate(ops):
        if not isinstance(op, LinearOperator):
            raise OperatorError(f"compose: argument {j} is not a LinearOperator ({type(op).__name__})")
        flat.extend(op.parts if isinstance(op, ComposedOperator) else [op])
    if not flat:
        raise OperatorError("compose needs at least one operator")
    return ComposedOperator(flat[0].img_shape, seed=flat[0].seed, device=flat[0].device, parts=flat)
