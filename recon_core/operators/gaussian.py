"""Dense Gaussian compressed sensing: A in R^{m x n}, A_ij ~ N(0, 1/m).

Memory is O(m n) (4 m n bytes for A, 4 m n more for the bfloat16 copies the fast schedule's
bfloat16 evaluations build, plus 8 m^2 for the cached Cholesky factor of A A^T), so this
family is meant for images up to ~64-128 px; ``cs-circulant`` scales to 1024 px.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import OperatorError, is_real
from .base import LinearOperator, register


def measurements_from_ratio(kind: str, ratio, n: int) -> tuple:
    """Validate a sampling ratio m/n and return ``(ratio, m)`` with m = round(ratio * n).

    ``ratio`` must be a real number in (0, 1]; OperatorError names the parameter, the valid
    range, and the resulting m when it is < 1. Shared by the compressed-sensing families."""
    if not is_real(ratio) or not math.isfinite(ratio):
        raise OperatorError(f"{kind}: ratio must be a number in (0, 1], got {ratio!r}")
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:
        raise OperatorError(f"{kind}: ratio must be in (0, 1], got {ratio}")
    m = round(ratio * n)
    if m < 1:
        raise OperatorError(f"{kind}: ratio {ratio} gives m = {m} measurements for n = {n}; need m >= 1 (ratio > {0.5 / n:.3g})")
    if m > n:  # unreachable for ratio <= 1, kept as a guard for the rounding rule
        raise OperatorError(f"{kind}: ratio {ratio} gives m = {m} > n = {n}")
    return ratio, m


class _DenseApply(torch.autograd.Function):
    """y = x M^T for a dense M (m, n), x (N, n), with the memory layouts that are fast on a CPU.

    Why not ``x @ M.T`` with autograd: for a few rows both products are memory-bound reads of M,
    and which BLAS path torch picks depends on the layout: ``(M @ x.T).T`` reads M about twice as
    fast as ``x @ M.T`` for 2-8 rows, and autograd's backward of it would take the transposed
    path ``M.T @ g.T``, which is 10-30x slower here. So the backward is written out as ``g @ M``.
    (Measured by hand with 2 threads on this project's CPU, 2026-12-02; no benchmark repeats it.)"""

    @staticmethod
    def forward(ctx, x, M):
        ctx.save_for_backward(M)
        return (M @ x.T).T if x.shape[0] > 1 else x @ M.T

    @staticmethod
    def backward(ctx, g):
        (M,) = ctx.saved_tensors
        return _DenseApply.adjoint(g, M), None

    @staticmethod
    def adjoint(y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """y M for y (N, m): the adjoint A^T y as rows (N, n)."""
        return y @ M


class _DenseResidualEnergy(torch.autograd.Function):
    """Per-row ||x M^T - y||^2 for x (N, n), M (m, n), y (1 or N, m), with the gradient
    2 (x M^T - y) M formed in the same pass over M.

    Why: the plain loss reads M twice per evaluation (x M^T, then the adjoint in the backward),
    and for a few rows each read costs about as much as for one row times the rows (MKL's
    small-N products, see ``_DenseApply``). Residual row i depends only on row i of M, so one
    sweep over cache-sized blocks of M's rows gives both the residual and its adjoint while
    each block is in cache. Only for several rows on the CPU with x requiring grad: for one
    row the two plain passes are as fast, and the gradient is formed whether or not it is used.
    ``benchmarks/timings.py`` (``residual_ab``) times both forms."""

    #: bytes of M per block: fits a core's L2 plus slack on this project's CPU (measured best
    #: at 3-4 MB with 1 and 2 threads for 64 px images)
    BLOCK_BYTES = 1 << 22

    @staticmethod
    def forward(ctx, x, M, y):
        rows = max(1, _DenseResidualEnergy.BLOCK_BYTES // (M.shape[1] * M.element_size()))
        e = x.new_zeros(x.shape[0])
        g = torch.zeros_like(x)
        for i in range(0, M.shape[0], rows):
            block = M[i : i + rows]
            r = x @ block.T - y[:, i : i + rows]
            e += r.pow(2).sum(1)
            g.addmm_(r, block)
        ctx.save_for_backward(g)
        return e

    @staticmethod
    def backward(ctx, ge):
        (g,) = ctx.saved_tensors
        return 2 * ge.unsqueeze(1) * g, None, None


class _DenseResidualEnergyLow(torch.autograd.Function):
    """Per-row ||x M^T - y||^2 with M held in bfloat16 as M (m, n) and M^T (n, m), both
    contiguous: the residual x M^T and the gradient 2 r M each as one bfloat16 product (the
    residual rounded to bfloat16, then subtracted from y in x's dtype).

    Why both layouts: for a few rows the bfloat16 products read half the bytes of float32 ones
    and run 1.3-1.7x faster than the fused float32 pass (``_DenseResidualEnergy``) for 3 rows at
    m/n 0.05-0.2 on this project's CPU (AVX512-BF16, one thread), but ``g @ M`` in bfloat16 is
    ~1.4x slower than ``F.linear(g, M^T)`` with M^T stored, so the copy is kept (the two bfloat16
    copies take the bytes of one float32 copy). For one row the float32 GEMV is faster, so the
    caller uses this only for several rows (measured by hand, 2026-12-03;
    ``benchmarks/timings.py`` ``residual_ab`` times it)."""

    @staticmethod
    def forward(ctx, x, M_low, Mt_low, y):
        r = F.linear(x.to(M_low.dtype), M_low).to(x.dtype) - y
        ctx.save_for_backward(r, Mt_low)
        return r.pow(2).sum(1)

    @staticmethod
    def backward(ctx, ge):
        r, Mt_low = ctx.saved_tensors
        g = F.linear((2 * ge.unsqueeze(1) * r).to(Mt_low.dtype), Mt_low).to(r.dtype)
        return g, None, None, None


@register("cs-gaussian")
class GaussianCS(LinearOperator):
    """Dense Gaussian measurements y = A vec(x), A (m x n) with i.i.d. N(0, 1/m) entries.

    x: (N, C, H, W) -> y: (N, m), m = round(ratio * C*H*W), vec() in C, H, W (row-major) order.
    ``ratio`` in (0, 1]. Preserves the input dtype (float32 or float64). The pseudo-inverse uses
    a float64 Cholesky factor of A A^T, built on first use and cached, with iterative refinement
    (see ``_AAt_solve``): A_dagger is exact to the caller's precision. Buffer: ``matrix`` (m, n)."""

    _caches = ("_chol", "_low")

    def __init__(self, img_shape, *, seed: int = 0, device="cpu", ratio=0.1):
        super().__init__(img_shape, seed=seed, device=device)
        self.ratio, m = measurements_from_ratio(self.kind, ratio, self.n)
        self.meas_shape = (m,)
        self.register_buffer("matrix", (torch.randn(m, self.n, generator=self._rng()) / math.sqrt(m)).to(self.device))
        # _chol: float64 Cholesky factor of A A^T, built lazily (O(m^2 n) flops)

    def params(self) -> dict:
        return {"ratio": self.ratio}

    @classmethod
    def estimate_bytes(cls, img_shape, ratio=0.1, **params) -> int:
        """4 m n bytes for A, 4 m n for its bfloat16 copies (``residual_energy(coarse=True)``, the
        default fast preset's early evaluations) and 8 m^2 for the Cholesky factor (ratio
        validated later)."""
        n = math.prod(int(s) for s in img_shape)
        try:
            r = float(ratio)
        except (TypeError, ValueError):
            return 0
        if not 0 < r <= 1:  # invalid ratios are reported by __init__
            return 0
        m = max(1, round(r * n))
        return 8 * m * n + 8 * m * m

    def _mat(self, dtype) -> torch.Tensor:
        # float32 entries are exactly representable in float64: the float64 operator is the same A
        return self.matrix if dtype == self.matrix.dtype else self.matrix.to(dtype)

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return _DenseApply.apply(x.reshape(x.shape[0], -1), self._mat(x.dtype))

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        return _DenseApply.adjoint(y, self._mat(y.dtype)).reshape((y.shape[0],) + self.img_shape)

    def residual_energy(self, x: torch.Tensor, y: torch.Tensor, coarse: bool = False) -> torch.Tensor:
        """As the base class; for several rows on the CPU under autograd, one blocked pass over A
        (``_DenseResidualEnergy``) instead of A x and A^T r, or with ``coarse`` two bfloat16
        products (``_DenseResidualEnergyLow``; bfloat16 copies of A and A^T built on first use
        and cached: 4 m n bytes)."""
        x = self._check_x(x)
        # the one-pass form is this class's forward map written out: only while ``_A`` is still
        # that map (a subclass or a wrapped instance that changes ``_A`` gets the plain form);
        # A is fetched (perhaps cast) only once the cheap checks pass
        own = getattr(self._A, "__func__", None) is GaussianCS._A
        fused = (own and x.shape[0] > 1 and x.device.type == "cpu" and x.requires_grad and torch.is_grad_enabled()
                 and y.dtype == x.dtype and not y.requires_grad and not self.matrix.requires_grad)
        if not fused:
            return super().residual_energy(x, y)
        if coarse:
            if self._low is None:
                low = self.matrix.to(torch.bfloat16)
                self._low = (low, low.T.contiguous())
            return _DenseResidualEnergyLow.apply(x.reshape(x.shape[0], -1), *self._low, y.reshape(y.shape[0], -1))
        return _DenseResidualEnergy.apply(x.reshape(x.shape[0], -1), self._mat(x.dtype), y.reshape(y.shape[0], -1))

    def _AAt_solve(self, r: torch.Tensor, tol: float = 0.0, max_iter: int = 0) -> torch.Tensor:
        """Solve (A A^T) u = r to float64 accuracy; r: (N, m).

        The Gram matrix is formed in float32 (the m^2 n product is most of the cost, and float32
        runs it 3-4x faster than float64 here) and Cholesky-factored in float64, then iterative
        refinement with residuals r - A (A^T u) in r's precision removes the rounding: A A^T is
        well conditioned for Gaussian A with m < n (about ((1 + sqrt(m/n)) / (1 - sqrt(m/n)))^2),
        so each refinement step gains ~6 digits."""
        if self._chol is None:
            a = self.matrix.float()
            L, info = torch.linalg.cholesky_ex((a @ a.T).double())
            if int(info) != 0:  # only for m close to n, where A A^T can be numerically singular
                raise OperatorError(f"{self.kind}: A A^T is numerically singular (ratio {self.ratio}); use a smaller ratio")
            self._chol = L
        # residuals in the caller's precision: float32 callers need float32 accuracy only (and
        # skip a float64 copy of A); float64 callers get float64 accuracy
        u = torch.cholesky_solve(r.double().T, self._chol).T
        for _ in range(3):
            res = r - self._A(self._At(u.to(r.dtype)))
            if float(res.abs().max()) <= 8 * torch.finfo(r.dtype).eps * max(float(r.abs().max()), 1e-300):
                break
            u = u + torch.cholesky_solve(res.double().T, self._chol).T
        return u.to(r.dtype)
