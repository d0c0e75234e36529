"""Partial random circulant compressed sensing: A = S F D.

D is a random +-1 diagonal (n x n), F the circulant matrix whose first row is g ~ N(0, 1/m)^n,
S keeps m random entries (sorted indices). All three act on the flattened image vec(x) of length
n = C*H*W (C, H, W row-major), so A is applied in O(n log n) time and O(n) memory by one real FFT
of length n: the only compressed-sensing operator here that scales to 1024 px
(benchmarks/circulant.py: 3 x 1024 x 1024 at ratio 0.1).

With first row g, F_ij = g[(j - i) mod n], so F v = irfft(conj(G) * rfft(v)) (a circular
cross-correlation with g) and F^T u = irfft(G * rfft(u)), G = rfft(g).
"""

from __future__ import annotations

import math

import torch

from .base import LinearOperator, register
from .gaussian import measurements_from_ratio


@register("cs-circulant")
class CirculantCS(LinearOperator):
    """y = S F D vec(x): (N, C, H, W) -> (N, m), m = round(ratio * C*H*W), ``ratio`` in (0, 1].

    Preserves the input dtype. The pseudo-inverse / back-projection solve A A^T = S F F^T S^T by
    the base class's conjugate gradients (A A^T is well conditioned for ratio <~ 0.5: a few dozen
    iterations); for ratio = 1, S is a permutation and (A A^T)^-1 = S (F F^T)^-1 S^T is applied
    in closed form by dividing by |G|^2 in Fourier space (CG would crawl there: the eigenvalues
    |G_k|^2 of F F^T are exponentially distributed, so some are tiny).

    Buffers: ``signs`` (n,) int8, ``g_hat`` (n//2 + 1,) complex64, ``rows`` (m,) long."""

    _caches = ("_g_hat64",)

    def __init__(self, img_shape, *, seed: int = 0, device="cpu", ratio=0.1):
        super().__init__(img_shape, seed=seed, device=device)
        n = self.n
        self.ratio, m = measurements_from_ratio(self.kind, ratio, n)
        self.meas_shape = (m,)
        rng = self._rng()
        # draw order is part of the spec's meaning: signs, then g, then the kept rows
        signs = torch.randint(0, 2, (n,), generator=rng, dtype=torch.int8) * 2 - 1
        g = torch.randn(n, generator=rng) / math.sqrt(m)
        idx = torch.randperm(n, generator=rng)[:m].sort().values
        # int8 signs: 1 byte per entry; multiplying promotes to the image dtype
        self.register_buffer("signs", signs.to(self.device))
        self.register_buffer("g_hat", torch.fft.rfft(g.double()).to(torch.complex64).to(self.device))
        self.register_buffer("rows", idx.to(self.device))

    def params(self) -> dict:
        return {"ratio": self.ratio}

    def _spectrum(self, dtype) -> torch.Tensor:
        if dtype == torch.float64:
            if self._g_hat64 is None:
                self._g_hat64 = self.g_hat.to(torch.complex128)
            return self._g_hat64
        return self.g_hat

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        v = x.reshape(x.shape[0], -1) * self.signs
        v = torch.fft.irfft(torch.fft.rfft(v) * self._spectrum(x.dtype).conj(), n=self.n)
        return v[:, self.rows]

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        u = y.new_zeros((y.shape[0], self.n))
        u[:, self.rows] = y
        u = torch.fft.irfft(torch.fft.rfft(u) * self._spectrum(y.dtype), n=self.n) * self.signs
        return u.reshape((y.shape[0],) + self.img_shape)

    def _AAt_solve(self, r: torch.Tensor, tol: float = 1e-7, max_iter: int = 500) -> torch.Tensor:
        """Solve (A A^T) u = r: closed form when m = n, else conjugate gradients (base class)."""
        if self.meas_shape[0] != self.n:
            return super()._AAt_solve(r, tol=tol, max_iter=max_iter)
        # m = n: S S^T = S^T S = I, so (S C S^T)^-1 = S C^-1 S^T with C = F F^T = irfft(|G|^2 .)
        power = self._spectrum(r.dtype).abs().square()
        u = r.new_zeros((r.shape[0], self.n))
        u[:, self.rows] = r
        u = torch.fft.irfft(torch.fft.rfft(u) / power, n=self.n)
        return u[:, self.rows]
