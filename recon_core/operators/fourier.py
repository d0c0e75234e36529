"""Subsampled 2-D Fourier measurements with a variable-density mask (MRI-style).

Per channel, X = fft2(x, norm="ortho") (unitary). For a real image X is Hermitian,
X[-k] = conj(X[k]), so only the half plane of the rfft2 layout (H, W//2 + 1) carries
information, and within its columns kw = 0 and kw = W/2 (W even) only kh <= H/2 is unique.
The mask is drawn over these unique frequencies only, so no two measurements duplicate each other:

- a kept frequency k with k != -k gives two real measurements sqrt(2) Re X[k], sqrt(2) Im X[k];
- a self-conjugate frequency (k = -k: DC and the Nyquist corners) gives one, Re X[k]
  (its imaginary part is identically zero, so it is never a measurement).

The sqrt(2) makes every row of A a unit vector orthogonal to the others (the real and imaginary
parts of a unitary DFT row each have norm 1/sqrt(2)), hence A A^T = I and the exact pseudo-inverse
is A^+ = A^T = zero-fill + inverse FFT (real part). At ratio = 1, A is orthogonal.
"""

from __future__ import annotations

import math

import torch

from .base import LinearOperator, register
from .gaussian import measurements_from_ratio

#: sampling weight of a frequency at normalised radius r (r = 0.5 at the Nyquist edge of an axis)
#: is (1 + r / _R0) ** -_POWER: low frequencies are much denser, a few high ones still drawn
_R0 = 0.1
_POWER = 6.0


def _unique_half_plane(H: int, W: int):
    """Unique frequencies of a real H x W image, in the rfft2 layout.

    Returns (kh, kw, selfconj): long, long, bool tensors of equal length, covering each pair
    {k, -k} exactly once. Sum over entries of (1 if selfconj else 2) == H * W."""
    Wr = W // 2 + 1
    kh, kw = torch.meshgrid(torch.arange(H), torch.arange(Wr), indexing="ij")
    kh, kw = kh.reshape(-1), kw.reshape(-1)
    edge = (kw == 0) | ((W % 2 == 0) & (kw == W // 2))  # columns that are their own mirror
    keep = ~edge | (kh <= H // 2)
    kh, kw, edge = kh[keep], kw[keep], edge[keep]
    selfconj = edge & ((kh == 0) | ((H % 2 == 0) & (kh == H // 2)))
    return kh, kw, selfconj


@register("cs-fourier")
class FourierCS(LinearOperator):
    """Variable-density subsampled orthonormal 2-D FFT, same mask for every channel.

    x: (N, C, H, W) -> y: (N, C, m_c), m_c = round(ratio * H * W) real measurements per channel
    (so m = C * m_c and ratio ~ m / n), ``ratio`` in (0, 1]. Each channel's vector is
    [sqrt(2) Re X[k] or Re X[k] (self-conjugate k), for kept k ; sqrt(2) Im X[k] for kept k != -k],
    in raster order of the rfft2 layout within each half. The DC coefficient is always kept; the
    others are drawn without replacement with weight (1 + r/0.1)^-6 (r: radius in cycles/pixel),
    and when one real measurement is left over, the last drawn frequency keeps its real part only,
    so m_c is exact. A has orthonormal rows: A_dagger = A_adjoint (exact), backproject is exact.
    Preserves the input dtype. Buffers: the kept positions ``re_half``, ``im_half`` (rfft2 layout),
    ``re_full``, ``im_full`` (fft2 layout) and ``re_scale`` (float64 row scales)."""

    previewable = True
    _caches = ("_re_scale32",)

    def __init__(self, img_shape, *, seed: int = 0, device="cpu", ratio=0.25):
        super().__init__(img_shape, seed=seed, device=device)
        C, H, W = self.img_shape
        self.ratio, m_c = measurements_from_ratio(self.kind, ratio, H * W)
        self.meas_shape = (C, m_c)
        self.Wr = W // 2 + 1

        kh, kw, selfconj = _unique_half_plane(H, W)
        # radius in cycles/pixel, using the signed frequency along H (kw is already >= 0)
        fh = torch.where(kh <= H // 2, kh, kh - H).double() / H
        r = torch.sqrt(fh.square() + (kw.double() / W).square())
        weight = (1.0 + r / _R0) ** -_POWER
        # weighted sampling without replacement = sort by exponential race times E_i / w_i
        # (Efraimidis-Spirakis); DC (index 0 in raster order) gets time -1: always first
        u = torch.rand(kh.numel(), generator=self._rng(), dtype=torch.float64)
        race = -torch.log1p(-u) / weight
        race[0] = -1.0
        order = torch.argsort(race)
        cost = torch.where(selfconj[order], 1, 2)
        full = order[torch.cumsum(cost, 0) <= m_c]
        left = m_c - int(cost[: full.numel()].sum())
        # left is 0, or 1 when the next frequency is a pair: keep its real part only
        re_k = torch.cat([full, order[full.numel() : full.numel() + left]]).sort().values
        im_k = full[~selfconj[full]].sort().values

        def flat(k, width):
            return (kh[k] * width + kw[k]).to(self.device)

        # positions in the rfft2 layout (forward) and in the full fft2 layout (adjoint)
        self.register_buffer("re_half", flat(re_k, self.Wr))
        self.register_buffer("im_half", flat(im_k, self.Wr))
        self.register_buffer("re_full", flat(re_k, W))
        self.register_buffer("im_full", flat(im_k, W))
        # float64 so that float64 callers get rows orthonormal to 1e-16 (see _scale)
        scale = torch.full((re_k.numel(),), math.sqrt(2.0), dtype=torch.float64)
        scale[selfconj[re_k]] = 1.0
        self.register_buffer("re_scale", scale.to(self.device))

    def params(self) -> dict:
        return {"ratio": self.ratio}

    @property
    def mask(self) -> torch.Tensor:
        """Boolean (H, W//2 + 1) map of kept frequencies in the rfft2 layout (Re and/or Im)."""
        H = self.img_shape[1]
        mk = torch.zeros(H * self.Wr, dtype=torch.bool, device=self.device)
        mk[self.re_half] = True
        return mk.reshape(H, self.Wr)

    def _scale(self, dtype) -> torch.Tensor:
        # float64 callers get the float64 scales; others a float32 copy made once (a cache, so a
        # .to(torch.float64) of the module cannot turn float32 measurements into float64 ones)
        if dtype == torch.float64:
            return self.re_scale.double()
        if self._re_scale32 is None:
            self._re_scale32 = self.re_scale.float()
        return self._re_scale32

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        X = torch.fft.rfft2(x, norm="ortho").reshape(N, C, H * self.Wr)
        re = X.real[..., self.re_half] * self._scale(x.dtype)
        im = X.imag[..., self.im_half] * math.sqrt(2.0)
        return torch.cat([re, im], dim=-1)

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        # adjoint of x -> X = F x (real-linear, C^n with Re<a, b>) is Z -> Re(F^H Z); adjoint of
        # taking Re X[k] (Im X[k]) puts a (i b) at k. Nothing is put at -k: Re() accounts for it.
        N = y.shape[0]
        C, H, W = self.img_shape
        n_re = self.re_half.numel()
        cdtype = torch.complex128 if y.dtype == torch.float64 else torch.complex64
        Z = torch.zeros((N, C, H * W), dtype=cdtype, device=y.device)
        Z[..., self.re_full] = (y[..., :n_re] * self._scale(y.dtype)).to(cdtype)
        Z[..., self.im_full] += 1j * math.sqrt(2.0) * y[..., n_re:].to(cdtype)
        return torch.fft.ifft2(Z.reshape(N, C, H, W), norm="ortho").real.contiguous()

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Exact pseudo-inverse: A has orthonormal rows, so A^+ = A^T (zero-fill + inverse FFT)."""
        return self._At(self._check_y(y))

    def _AAt_solve(self, r: torch.Tensor, tol: float = 0.0, max_iter: int = 0) -> torch.Tensor:
        return r  # A A^T = I
