"""Every operator's pseudo-inverse against a dense one (issue #18): at small sizes the matrix M of
A is built by applying A to the identity basis, and A_dagger (applied to the measurement basis)
must equal torch.linalg.pinv(M), including the minimum-norm property (A^+ y lies in the row space
of A). Operators whose A_dagger is a documented approximation are held to what they document,
and their ``backproject`` (documented exact) to the dense pseudo-inverse."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recon_core.operators import build
from recon_core.operators.blur import TIKHONOV_EPS
from recon_core.operators.inpaint import Inpaint
from tests.operators.test_operators import IDS, SWEEP, _y

#: A_dagger is an approximation by design (superres: bicubic upsampling; blur: Tikhonov)
DOCUMENTED_APPROX = {"superres", "blur"}


def dense(op) -> torch.Tensor:
    """The (m, n) float64 matrix of ``op``: column j is A e_j."""
    eye = torch.eye(op.n, dtype=torch.float64).reshape((op.n,) + op.img_shape)
    return op.A(eye).reshape(op.n, op.m).T


def dense_dagger(op, fn=None) -> torch.Tensor:
    """The (n, m) float64 matrix of ``fn`` (default op.A_dagger) applied to the measurement basis."""
    fn = fn or op.A_dagger
    eye = torch.eye(op.m, dtype=torch.float64).reshape((op.m,) + tuple(op.meas_shape))
    return fn(eye).reshape(op.m, op.n).T


def _tol(op) -> float:
    """Relative tolerance of an exact A_dagger: closed forms to rounding; conjugate gradients
    (composed, cs-circulant below ratio 1) to their stopping rule (relative residual 1e-7)."""
    cg = op.kind == "composed" or (op.kind == "cs-circulant" and op.m < op.n)
    return 1e-5 if cg else 1e-9


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_exact_pinv(op, fn=None, tol=1e-9) -> None:
    """Assert that ``fn`` (default op.A_dagger) is the Moore-Penrose pseudo-inverse of ``op``:
    equal to the dense pinv on every basis vector, and for random y a minimum-norm solution
    (A x = y for full row rank; x = P_row x, no component in the null space of A)."""
    M = dense(op)
    P = torch.linalg.pinv(M)
    D = dense_dagger(op, fn)
    assert _rel(D, P) < tol, f"{op.kind}: A_dagger differs from the dense pinv by {_rel(D, P):.2e}"
    y = _y(op, n=3).reshape(3, -1)
    x = (fn or op.A_dagger)(y.reshape((3,) + tuple(op.meas_shape))).reshape(3, -1)
    row_space = P @ M  # orthogonal projector onto the row space of A
    assert _rel(x @ row_space.T, x) < tol, f"{op.kind}: A_dagger y has a component in the null space of A"
    if torch.linalg.matrix_rank(M) == op.m:  # full row rank: A^+ is a right inverse
        assert _rel(x @ M.T, y) < tol, f"{op.kind}: A A_dagger y != y"


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_dagger_matches_dense_pinv(case):
    kind, params, shape = case
    op = build(kind, shape, seed=3, **params)
    if kind not in DOCUMENTED_APPROX:
        check_exact_pinv(op, tol=_tol(op))
        return
    # documented approximations: A_dagger is what the docstring says; backproject is exact
    M = dense(op)
    D = dense_dagger(op)
    if kind == "superres":  # bicubic upsampling (no anti-aliasing) of y to (H, W)
        up = lambda y: F.interpolate(y, size=shape[1:], mode="bicubic", align_corners=False)  # noqa: E731
        assert _rel(D, dense_dagger(op, up)) < 1e-12
    else:  # blur: Tikhonov s / (s^2 + eps) per singular value = (M^T M + eps I)^-1 M^T
        tik = torch.linalg.solve(M.T @ M + TIKHONOV_EPS * torch.eye(op.n, dtype=torch.float64), M.T)
        assert _rel(D, tik) < 1e-9
    assert _rel(D, torch.linalg.pinv(M)) > 1e-3  # and it really is not A^+ (else document it as exact)
    # backproject(0, y) = A^+ y, documented exact: superres by CG on A A^T; blur by its SVD with
    # squared singular values below 1e-10 cut (s < 1e-5), so the dense pinv gets the same cutoff
    bp = lambda y: op.backproject(torch.zeros((y.shape[0],) + shape, dtype=y.dtype), y)  # noqa: E731
    if kind == "superres":
        check_exact_pinv(op, bp, tol=1e-5)
    else:
        assert _rel(dense_dagger(op, bp), torch.linalg.pinv(M, atol=1e-5)) < 1e-6


class _HalfFill(Inpaint):
    """A wrong right-inverse: hidden pixels set to 0.5 (A A^+ y = y, but not minimum-norm)."""

    def A_dagger(self, y):
        x = self._At(self._check_y(y))
        hidden = ~self.mask
        x[..., hidden] = 0.5
        return x


class _MeanFill(Inpaint):
    """A linear wrong right-inverse: hidden pixels set to the mean of the kept ones."""

    def A_dagger(self, y):
        y = self._check_y(y)
        x = self._At(y)
        x[..., ~self.mask] = y.mean(-1, keepdim=True)
        return x


@pytest.mark.parametrize("cls", [_HalfFill, _MeanFill])
def test_the_check_catches_a_wrong_right_inverse(cls):
    op = cls((2, 8, 8), seed=1, frac=0.5)
    y = _y(op)
    assert torch.allclose(op.A(op.A_dagger(y)), y)  # a right inverse: the old sweep would pass it
    with pytest.raises(AssertionError, match="differs from the dense pinv"):
        check_exact_pinv(op)
    check_exact_pinv(Inpaint((2, 8, 8), seed=1, frac=0.5))  # the real one passes
