"""Several operators of one shape applied to consecutive groups of a batch (batched solving).

Solving B independent problems as one batch (``ilo.solve_batch``, ``mgan.solve_batch``) stacks
their rows image-major: rows [j*r, (j+1)*r) belong to problem j. When the B problems have
different operators (a Gaussian matrix or a mask drawn per image), ``StackedOperator`` applies
operator j to group j. It is not a registered family: it describes a batch, not a measurement
process, and has no spec of its own (each part keeps its spec).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from ..errors import OperatorError
from .base import LinearOperator


class StackedOperator(LinearOperator):
    """B operators with equal image and measurement shapes; a batch of N = B*r rows (r >= 1) is
    split into B equal consecutive groups and group j goes through ``parts[j]``:
    (B*r, C, H, W) -> (B*r, *meas_shape). Adjoint and (A A^T)^-1 act group by group too."""

    kind = "stacked"

    def __init__(self, parts: Sequence[LinearOperator]):
        parts = list(parts)
        if not parts:
            raise OperatorError("a stacked operator needs at least one operator")
        first = parts[0]
        for j, p in enumerate(parts):
            if not isinstance(p, LinearOperator):
                raise OperatorError(f"stacked operator: part {j} is not a LinearOperator ({type(p).__name__})")
            if p.img_shape != first.img_shape or tuple(p.meas_shape) != tuple(first.meas_shape):
                raise OperatorError(
                    f"stacked operator: part {j} maps {p.img_shape} -> {tuple(p.meas_shape)}, "
                    f"part 0 maps {first.img_shape} -> {tuple(first.meas_shape)}; they must match"
                )
        super().__init__(first.img_shape, seed=first.seed, device=first.device)
        self.meas_shape = tuple(first.meas_shape)
        # a ModuleList (indexable and iterable like a list) so .to() moves every part
        self.parts: List[LinearOperator] = nn.ModuleList(parts)

    def params(self) -> dict:
        return {"parts": [p.spec() for p in self.parts]}

    def _groups(self, t: torch.Tensor) -> List[torch.Tensor]:
        B = len(self.parts)
        if t.shape[0] % B:
            raise OperatorError(f"stacked operator of {B} parts: a batch of {t.shape[0]} rows does not split into {B} equal groups")
        return list(t.split(t.shape[0] // B))

    def _each(self, fn: str, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(p, fn)(g) for p, g in zip(self.parts, self._groups(t))])

    def _A(self, x):
        return self._each("_A", x)

    def _At(self, y):
        return self._each("_At", y)

    def residual_energy(self, x, y, coarse: bool = False):
        """Each part's own ``residual_energy`` on its group: a batch computes what each problem
        computes alone (same form, same rounding). y: one row per row of x, or one row for all."""
        xs = self._groups(self._check_x(x))
        ys = self._groups(y) if y.shape[0] == x.shape[0] else [y] * len(self.parts)
        return torch.cat([p.residual_energy(a, b, coarse) for p, a, b in zip(self.parts, xs, ys)])

    def A_dagger(self, y):
        """Each part's own A_dagger on its group (closed forms and approximations as documented there)."""
        return torch.cat([p.A_dagger(g) for p, g in zip(self.parts, self._groups(self._check_y(y)))])

    def _AAt_solve(self, r, tol: float = 1e-7, max_iter: int = 500):
        # each part's closed form where it has one (CG otherwise), never CG over the whole stack
        return torch.cat([p._AAt_solve(g, tol, max_iter) for p, g in zip(self.parts, self._groups(r))])
