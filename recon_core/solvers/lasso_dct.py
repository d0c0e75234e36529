"""Lasso-DCT baseline: sparsity of the image in the 2-D DCT (the Lasso baseline of Bora et al.).

    z_hat = argmin_z ||y - A Phi z||^2 + lam ||z||_1,   x_hat = clamp(Phi z_hat, 0, 1)

Phi is the inverse orthonormal 2-D DCT applied to each channel, z has the image's shape
(1, C, H, W). Solved matrix-free with FISTA (Beck & Teboulle 2009) using only A, A_adjoint and
the DCT, so it scales to operators that are never formed as matrices. The smooth part has
gradient 2 Phi^T A^T (A Phi z - y), Lipschitz constant L = 2 ||A Phi||^2 = 2 ||A||^2 (Phi is
orthonormal); ||A||^2 is estimated by power iteration on A^T A. The problem is convex, so there
are no restarts: ``Result.losses`` has one entry. ``solve`` takes the ``prior`` argument of the
common solver signature and ignores it (the CLI may pass None).

The DCT is written here with torch.fft rather than taken from scipy.fft: it must run on torch
tensors on any device (CUDA included) inside the iteration without host round trips, and
scipy.fft works on NumPy arrays on the CPU only. It is tested against scipy.fft.dctn(norm="ortho").
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..errors import BadInput, is_real
from ..events import Event, EventSink, null_sink
from .common import MethodConfig, opt, Problem, Result, check_positive, measurement_loss, seeded_rng, timer

#: power iteration underestimates ||A||^2 (it converges from below); a step 1/L with L below the
#: true Lipschitz constant can make FISTA oscillate, so the estimate is inflated by this factor
LIPSCHITZ_MARGIN = 1.02
POWER_ITERS = 100
REPORT_EVERY = 10


#: capability: this method uses no generator (the CLI loads none)
NEEDS_PRIOR = False

@dataclass
class LassoDCTConfig(MethodConfig):
    """Lasso-DCT settings: lam (l1 weight; 0.01, METHODS.md's setting for this objective),
    steps (FISTA iterations, at most), tol (stop when ||z_k - z_{k-1}|| <= tol ||z_k||),
    adaptive_restart (reset FISTA's momentum when it points uphill, O'Donoghue & Candes 2015's
    gradient scheme: same minimiser, far fewer iterations on ill-conditioned operators).

    Whose defaults: the Generator Surgery paper's Lasso-DCT objective (lambda 0.01 on ||y - A Phi
    z||^2). Bora et al.'s CelebA scripts use lmbd 0.1 with their own loss scaling."""

    #: FISTA only: its steps belong to no optimiser option (see MethodConfig)
    SCHEDULES = ()

    lam: float = opt(0.01, 'l1 weight lambda.')
    steps: int = 1000
    tol: float = opt(1e-6, 'Relative change of z that stops FISTA.')
    adaptive_restart: bool = opt(True, "Restart FISTA's momentum when it points uphill.")


# ---- orthonormal DCT-II / DCT-III along one axis, via the FFT (Makhoul 1980) -----------------------
@functools.lru_cache(maxsize=32)
def _factors(N: int, dtype: torch.dtype, device: str) -> tuple:
    """Constants of the length-N transforms, cached because FISTA applies the same DCT every
    step and, on small images, building them costs more than the FFT itself:
    fwd (N,) complex: s_k exp(-i pi k / 2N), s the orthonormal scales (sqrt(1/N) at k = 0,
    sqrt(2/N) otherwise); inv_a, inv_b (N,) complex: see ``_idct_last``; perm: the Makhoul
    reordering [0, 2, 4, ..., 5, 3, 1]; unperm: its inverse; rev: [0, N-1, N-2, ..., 1]."""
    k = torch.arange(N, dtype=torch.float64)
    w = torch.polar(torch.ones_like(k), -math.pi * k / (2 * N))
    s = torch.full((N,), math.sqrt(2.0 / N), dtype=torch.float64)
    s[0] = math.sqrt(1.0 / N)
    rev = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(N - 1, 0, -1)])
    inv_a = w.conj() / s
    inv_b = -1j * w.conj() / s[rev]
    inv_b[0] = 0  # c_N = 0
    perm = torch.cat([torch.arange(0, N, 2), torch.arange(1, N, 2).flip(0)])
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    c = lambda t: t.to(device=device, dtype=cdtype)  # noqa: E731
    return c(w * s), c(inv_a), c(inv_b), perm.to(device), torch.argsort(perm).to(device), rev.to(device)


def _dct_last(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last axis (scipy.fft.dct(x, norm="ortho"))."""
    fwd, _, _, perm, _, _ = _factors(x.shape[-1], x.dtype, str(x.device))
    # with v = x reordered (even samples ascending, then odd ones descending), one length-N FFT
    # gives sum_n x_n cos(pi k (2n+1) / 2N) = Re(exp(-i pi k / 2N) V_k)   (Makhoul 1980)
    return (torch.fft.fft(x.index_select(-1, perm), dim=-1) * fwd).real


def _idct_last(X: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_dct_last`` (orthonormal DCT-III, scipy.fft.idct(X, norm="ortho"))."""
    _, inv_a, inv_b, _, unperm, rev = _factors(X.shape[-1], X.dtype, str(X.device))
    # with c_k = X_k / s_k = sum_n v_n cos(pi k (2n+1) / 2N) and v real, exp(-i pi k / 2N) V_k =
    # c_k - i c_{N-k} (c_N = 0): V = a X + b X[rev], the constants a, b folding in the scales
    V = X * inv_a + X.index_select(-1, rev) * inv_b
    return torch.fft.ifft(V, dim=-1).real.index_select(-1, unperm)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two axes (each channel separately): (..., H, W) ->
    (..., H, W); equals scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")."""
    return _dct_last(_dct_last(x).transpose(-1, -2)).transpose(-1, -2)


def idct2(X: torch.Tensor) -> torch.Tensor:
    """Inverse of ``dct2`` (= its transpose, Phi): equals scipy.fft.idctn(X, axes=(-2, -1),
    norm="ortho")."""
    return _idct_last(_idct_last(X).transpose(-1, -2)).transpose(-1, -2)


# ---- the solver ------------------------------------------------------------------------------------
def operator_norm_sq(A, dtype=torch.float32, device="cpu", iters: int = POWER_ITERS, seed: int = 0) -> float:
    """||A||^2 (largest eigenvalue of A^T A) by power iteration from a seeded random image."""
    v = torch.randn((1,) + tuple(A.img_shape), generator=seeded_rng(seed)).to(device=device, dtype=dtype)
    v = v / v.norm()
    est = 0.0
    with torch.no_grad():
        for _ in range(iters):
            w = A.A_adjoint(A.A(v))
            new = float(w.norm())
            if new == 0.0:
                return 0.0
            v = w / new
            if abs(new - est) <= 1e-7 * new:
                est = new
                break
            est = new
    return est


def soft_threshold(z: torch.Tensor, t: float) -> torch.Tensor:
    """Proximal map of t ||.||_1: sign(z) max(|z| - t, 0), elementwise."""
    return torch.sign(z) * (z.abs() - t).clamp_min(0)


def _check(config: LassoDCTConfig) -> None:
    lam, tol = config.lam, config.tol
    if not is_real(lam) or not math.isfinite(lam) or lam < 0:
        raise BadInput(f"lam must be a number >= 0, got {lam!r}")
    check_positive("steps", config.steps, integer=True)
    if not isinstance(config.adaptive_restart, bool):
        raise BadInput(f"adaptive_restart must be true or false, got {config.adaptive_restart!r}")
    if not is_real(tol) or not math.isfinite(tol) or tol < 0:
        raise BadInput(f"tol must be a number >= 0, got {tol!r}")


def solve(problem: Problem, prior=None, config: LassoDCTConfig = LassoDCTConfig(), on_event: EventSink = null_sink,
          seed: int = 0) -> Result:
    """FISTA on the Lasso in the DCT domain (``prior`` ignored). x_hat (1, C, H, W) in [0, 1];
    state {"z": DCT coefficients (1, C, H, W)}; losses: [measurement loss of x_hat]; extra:
    objective (Lasso objective at z_hat), iterations, converged, lipschitz, nonzero fraction.
    Events and history report the Lasso objective (the quantity FISTA decreases) every 10 steps."""
    clock = timer()
    _check(config)
    A, y = problem.A, problem.y
    dtype = y.dtype if y.is_floating_point() else torch.float32
    lam = float(config.lam)

    def objective(z: torch.Tensor) -> float:
        return float(measurement_loss(A, y, idct2(z))[0] + lam * z.abs().sum())

    L = 2.0 * operator_norm_sq(A, dtype=dtype, device=y.device, seed=seed) * LIPSCHITZ_MARGIN
    z = torch.zeros((1,) + tuple(A.img_shape), device=y.device, dtype=dtype)
    history, it, converged = [], 0, False
    if L > 0:  # L = 0 only for A = 0: then z = 0 is optimal
        w, t = z.clone(), 1.0
        with torch.no_grad():
            for it in range(1, int(config.steps) + 1):
                grad = 2.0 * dct2(A.A_adjoint(A.A(idct2(w)) - y))
                z_new = soft_threshold(w - grad / L, lam / L)
                if config.adaptive_restart and float(((w - z_new) * (z_new - z)).sum()) > 0:
                    t = 1.0  # the momentum points uphill: drop it (O'Donoghue & Candes' restart)
                t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                w = z_new + ((t - 1.0) / t_new) * (z_new - z)
                change = float((z_new - z).norm())
                z, t = z_new, t_new
                converged = change <= config.tol * max(float(z.norm()), 1e-30)
                if it % REPORT_EVERY == 0 or converged or it == config.steps:
                    f = objective(z)
                    history.append({"step": it, "loss": f})
                    on_event(Event(phase="lasso-dct", step=it, total=int(config.steps), loss=f,
                                   extra={"converged": converged}))
                if converged:
                    break
    with torch.no_grad():
        x_hat = idct2(z).clamp(0, 1)
        loss = float(measurement_loss(A, y, x_hat)[0])
        f = objective(z)
    return Result(
        x_hat=x_hat, state=OrderedDict(z=z), losses=[loss], best_restart=0, history=history, wall_time=clock(),
        extra={"objective": f, "iterations": it, "converged": converged, "lipschitz": L, "lam": lam,
               "nonzero_fraction": float((z != 0).float().mean())},
    )
