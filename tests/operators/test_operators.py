"""Forward operators: one sweep over every registered family, then per-family checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skimage.data
import torch

from recon_core.errors import OperatorError, UnknownName
from recon_core.operators import build, from_spec, get, list_operators
from recon_core.operators.noise import NoiseSpec, add_noise

# ---------------------------------------------------------------------------------------------
# the sweep: (kind, params, img_shape); every registered kind needs at least one entry
CASES = {
    "identity": [({}, (3, 16, 16))],
    "cs-gaussian": [({"ratio": 0.3}, (3, 16, 16)), ({"ratio": 1.0}, (1, 8, 8))],
    "cs-circulant": [({"ratio": 0.3}, (3, 16, 16)), ({"ratio": 1.0}, (2, 8, 8))],
    "cs-fourier": [({"ratio": 0.3}, (3, 16, 16)), ({"ratio": 0.4}, (1, 15, 16)), ({"ratio": 1.0}, (2, 9, 8))],
    "inpaint": [({"frac": 0.3}, (3, 16, 16)), ({"frac": 0.5, "mask": "box"}, (1, 12, 16))],
    "superres": [({"factor": 2}, (3, 16, 16)), ({"factor": 4}, (1, 12, 16))],
    "blur": [
        ({"kernel_size": 3}, (3, 16, 16)),
        ({"kernel_size": 5}, (1, 12, 15)),
        ({"kernel_size": 5, "boundary": "reflect"}, (2, 12, 16)),
    ],
    # parts' img_shape and seed are filled in from the composition (see composed.py)
    "composed": [
        ({"parts": [{"kind": "blur", "kernel_size": 3}, {"kind": "superres", "factor": 2}]}, (3, 16, 16)),
        ({"parts": [{"kind": "blur", "kernel_size": 3, "boundary": "reflect"}, {"kind": "inpaint", "frac": 0.5}]}, (1, 12, 16)),
        ({"parts": [{"kind": "superres", "factor": 2}, {"kind": "cs-gaussian", "ratio": 0.5}]}, (2, 16, 16)),
    ],
}
#: families whose A_dagger is a documented approximation rather than A^+
APPROX_DAGGER = {"superres", "blur"}


def _random(case) -> bool:
    """Whether the operator depends on its seed."""
    kind, params, _ = case
    if kind == "composed":  # parts without a seed take the composition's
        return any(_random((p["kind"], p, None)) for p in params["parts"])
    if kind in ("cs-gaussian", "cs-circulant"):
        return True
    if kind == "cs-fourier":
        return params["ratio"] < 1  # at ratio 1 every frequency is kept
    return kind == "inpaint" and params.get("mask", "random") == "random"


SWEEP = [(k, p, s) for k, entries in CASES.items() for p, s in entries]


def _params_id(p: dict) -> str:
    if "parts" in p:  # composed: the parts' kinds and parameters, in order
        return "+".join(q["kind"] + "".join(f"-{a}={b}" for a, b in q.items() if a != "kind") for q in p["parts"])
    return "-".join(f"{a}={b}" for a, b in p.items())


IDS = [f"{k}-{_params_id(p)}-{'x'.join(map(str, s))}" for k, p, s in SWEEP]
DTYPES = [torch.float32, torch.float64]
#: relative tolerances per dtype: (adjointness, A(backproject) == y)
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-6)}


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _x(op, n=2, dtype=torch.float64, seed=0):
    return torch.rand((n,) + op.img_shape, generator=_gen(seed), dtype=dtype)


def _y(op, n=2, dtype=torch.float64, seed=1):
    return torch.randn((n,) + tuple(op.meas_shape), generator=_gen(seed), dtype=dtype)


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def test_every_registered_kind_has_a_sweep_case():
    kinds = {get(name).kind for name in list_operators()}
    missing = kinds - set(CASES)
    assert not missing, f"add sweep cases for: {sorted(missing)}"
    assert set(CASES) <= kinds


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_adjoint(case, dtype):
    kind, params, shape = case
    op = build(kind, shape, seed=3, **params)
    x, y = _x(op, dtype=dtype), _y(op, dtype=dtype)
    Ax, Aty = op.A(x), op.A_adjoint(y)
    assert Ax.dtype == dtype and Aty.dtype == dtype
    assert tuple(Ax.shape) == (2,) + tuple(op.meas_shape) and tuple(Aty.shape) == (2,) + shape
    lhs, rhs = (Ax * y).sum().item(), (x * Aty).sum().item()
    # relative to |Ax| |y|: immune to cancellation in the inner product
    assert abs(lhs - rhs) <= TOL[dtype][0] * (Ax.norm() * y.norm()).item()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_backproject_matches_measurements(case, dtype):
    kind, params, shape = case
    op = build(kind, shape, seed=3, **params)
    y = op.A(_x(op, dtype=dtype))
    x_bp = op.backproject(_x(op, dtype=dtype, seed=7), y)
    assert x_bp.dtype == dtype and tuple(x_bp.shape) == (2,) + shape
    assert _rel(op.A(x_bp), y) < TOL[dtype][1]


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_dagger(case):
    kind, params, shape = case
    op = build(kind, shape, seed=3, **params)
    y = _y(op)
    xd = op.A_dagger(y)
    assert tuple(xd.shape) == (2,) + shape and xd.dtype == y.dtype
    if kind in APPROX_DAGGER:
        return
    # every exact family has full row rank: A A^+ = I, and A^+ A A^+ = A^+ (Moore-Penrose)
    assert _rel(op.A(xd), y) < 1e-6
    assert _rel(op.A_dagger(op.A(xd)), xd) < 1e-6


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_spec_round_trip(case):
    kind, params, shape = case
    op = build(kind, shape, seed=11, **params)
    spec = json.loads(json.dumps(op.spec()))
    assert spec["kind"] == kind and spec["img_shape"] == list(shape) and spec["seed"] == 11
    op2 = from_spec(spec)
    assert op2.spec() == op.spec() and op2.meas_shape == op.meas_shape
    x = _x(op, dtype=torch.float32)
    assert torch.equal(op2.A(x), op.A(x))
    y = op.A(x)
    assert torch.equal(op2.A_adjoint(y), op.A_adjoint(y))


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_seed(case):
    kind, params, shape = case
    x = _x(build(kind, shape, **params), dtype=torch.float32)
    a, b, c = (build(kind, shape, seed=s, **params).A(x) for s in (5, 5, 6))
    assert torch.equal(a, b)
    if _random(case):
        assert a.shape != c.shape or not torch.allclose(a, c)
    else:
        assert torch.equal(a, c)


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_shape_errors(case):
    kind, params, shape = case
    op = build(kind, shape, **params)
    C, H, W = shape
    with pytest.raises(OperatorError, match="expected images of shape"):
        op.A(torch.zeros(2, C, H + 1, W))
    with pytest.raises(OperatorError, match="expected images of shape"):
        op.backproject(torch.zeros(2, C + 1, H, W), op.A(_x(op)))
    bad_y = torch.zeros((2,) + tuple(op.meas_shape[:-1]) + (op.meas_shape[-1] + 1,))
    for f in (op.A_adjoint, op.A_dagger):
        with pytest.raises(OperatorError, match="expected measurements of shape"):
            f(bad_y)


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_batch_and_single_image(case):
    kind, params, shape = case
    op = build(kind, shape, seed=2, **params)
    x = _x(op, n=3)
    y = op.A(x)
    for i in range(3):
        assert torch.allclose(op.A(x[i : i + 1]), y[i : i + 1], atol=1e-12)
    assert torch.allclose(op.A(x[0]), y[:1], atol=1e-12)  # (C, H, W) is a batch of one
    Aty = op.A_adjoint(y)
    assert torch.allclose(op.A_adjoint(y[1:2]), Aty[1:2], atol=1e-12)


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_autograd_and_inference_mode(case):
    """Solvers differentiate through A: grad_x <A x, y> must equal A^T y; evaluation code may run
    under no_grad / inference_mode."""
    kind, params, shape = case
    op = build(kind, shape, seed=2, **params)
    x = _x(op).requires_grad_()
    y = _y(op)
    (op.A(x) * y).sum().backward()
    assert torch.allclose(x.grad, op.A_adjoint(y), atol=1e-12)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            xi, yi = _x(op), op.A(_x(op, seed=5))
            out = (op.A(xi), op.A_adjoint(yi), op.A_dagger(yi), op.backproject(xi, yi))
        assert all(torch.isfinite(t).all() for t in out)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_residual_energy_is_the_squared_residual_with_its_gradient(case, dtype):
    """The solvers' measurement loss ``residual_energy`` (some operators fuse it): per row
    ||y - A x||^2 and gradient 2 A^T (A x - y), for y of one row and of every row, with and
    without autograd."""
    kind, params, shape = case
    op = build(kind, shape, seed=4, **params)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for n, ny in ((1, 1), (3, 1), (3, 3)):
        x = _x(op, n, dtype=dtype).requires_grad_()
        y = _y(op, ny, dtype=dtype)
        e = op.residual_energy(x, y)
        with torch.no_grad():
            r = op.A(x) - y
            want = r.reshape(n, -1).pow(2).sum(1)
            assert _rel(e.detach(), want) <= tol
            assert _rel(op.residual_energy(x, y), want) <= tol
        w = torch.arange(1.0, n + 1, dtype=dtype)  # distinct weights per row: rows stay apart
        (g,) = torch.autograd.grad((w * e).sum(), x)
        assert _rel(g, 2 * w.view(-1, 1, 1, 1) * op.A_adjoint(r)) <= 10 * tol
        if kind != "cs-gaussian":  # the one operator with a bfloat16 form: test below
            assert torch.equal(op.residual_energy(x, y, coarse=True), e)


def _count_rows(monkeypatch, fn) -> list:
    """The row counts of every call of autograd Function ``fn``'s forward, as they happen."""
    calls, orig = [], fn.forward

    def counting(ctx, *a):
        calls.append(a[0].shape[0])
        return orig(ctx, *a)

    monkeypatch.setattr(fn, "forward", staticmethod(counting))
    return calls


def test_coarse_gaussian_residual_is_bfloat16_accurate_for_several_rows_only(monkeypatch):
    """cs-gaussian's ``coarse`` form (bfloat16 copies of A, the fast schedule's early
    evaluations) for several rows under autograd on the CPU: value and gradient within bfloat16
    rounding of the exact ones on a real photo; one row or no autograd: the exact form; the
    copies are cached and dropped when the operator moves."""
    from recon_core.operators import gaussian

    op = build("cs-gaussian", (3, 32, 32), seed=0, ratio=0.2)
    x_true = torch.from_numpy(skimage.data.astronaut()[::16, ::16][:32, :32].copy()).float().div(255).permute(2, 0, 1)[None]
    y = op.A(x_true) + 0.01 * torch.randn(1, *op.meas_shape, generator=torch.Generator().manual_seed(0))
    x = (x_true + 0.05 * torch.randn((3, *x_true.shape[1:]), generator=torch.Generator().manual_seed(1))).requires_grad_()
    calls = _count_rows(monkeypatch, gaussian._DenseResidualEnergyLow)
    exact = op.residual_energy(x, y)
    assert op._low is None
    low = op.residual_energy(x, y, coarse=True)
    assert calls == [3] and op._low[0].dtype == op._low[1].dtype == torch.bfloat16
    assert torch.equal(op._low[1], op._low[0].T)
    # the residual is a small difference of large vectors: bfloat16's rounding of A x
    # (relative 2^-9) is ~|A x| / |r| (here ~10) times larger relative to r
    assert 0 < _rel(low.detach(), exact.detach()) < 2e-2
    ge, gl = (torch.autograd.grad(v.sum(), x)[0] for v in (exact, low))
    assert 0 < _rel(gl, ge) < 5e-2 and gl.dtype == torch.float32
    # one row, no autograd: the exact form, bit for bit
    assert torch.equal(op.residual_energy(x[:1], y, coarse=True), op.residual_energy(x[:1], y))
    with torch.no_grad():
        assert torch.equal(op.residual_energy(x, y, coarse=True), op.residual_energy(x, y))
    assert calls == [3]
    assert op.double()._low is None  # moved or cast: the copies are rebuilt from the new A


def test_fused_gaussian_residual_is_used_for_several_rows_only(monkeypatch):
    """cs-gaussian's one-pass form runs exactly where it pays (several rows under autograd on
    the CPU) and equals the plain form there in float64."""
    from recon_core.operators import gaussian
    from recon_core.operators.base import LinearOperator
    from recon_core.operators.gaussian import GaussianCS

    op = build("cs-gaussian", (3, 32, 32), seed=0, ratio=0.3)  # several blocks of rows of A
    assert op.meas_shape[0] * op.n * 4 > 2 * gaussian._DenseResidualEnergy.BLOCK_BYTES
    calls = _count_rows(monkeypatch, gaussian._DenseResidualEnergy)
    x1 = _x(op, 1).float().requires_grad_()
    x3 = _x(op, 3).float().requires_grad_()
    y = _y(op, 1).float()
    op.residual_energy(x1, y)
    op.residual_energy(x3.detach(), y)
    assert calls == []
    op.residual_energy(x3, y)
    assert calls == [3]
    op._A = lambda x: 2 * GaussianCS._A(op, x)  # a changed forward map: the plain form follows it
    e = op.residual_energy(x3, y)
    assert calls == [3]
    assert torch.allclose(e, (2 * (x3.reshape(3, -1) @ op.matrix.T) - y).pow(2).sum(1), rtol=1e-4)
    del op._A
    op64 = op.double()
    x, y = _x(op64, 3).requires_grad_(), _y(op64, 3)
    e = op64.residual_energy(x, y)
    ref = LinearOperator.residual_energy(op64, x, y)
    assert torch.allclose(e, ref, rtol=1e-12)
    g, gr = (torch.autograd.grad(v.sum(), x)[0] for v in (e, ref))
    assert torch.allclose(g, gr, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_preview(case):
    kind, params, shape = case
    op = build(kind, shape, **params)
    p = op.preview(op.A(_x(op, dtype=torch.float32)))
    if not op.previewable:
        assert p is None
        return
    assert tuple(p.shape) == (2,) + shape and p.min() >= 0 and p.max() <= 1


def test_unknown_kind_suggests():
    with pytest.raises(UnknownName, match="did you mean 'cs-gaussian'"):
        get("cs-gausian")
    with pytest.raises(UnknownName, match="did you mean 'superres'"):
        build("super-res", (1, 8, 8))


def test_spec_with_unknown_parameter():
    spec = build("cs-gaussian", (1, 8, 8), ratio=0.5).spec()
    with pytest.raises(OperatorError, match="cs-gaussian takes ratio; got ratoi"):
        from_spec({**spec, "ratoi": 0.5})


def test_identity_alias():
    assert get("denoise") is get("identity")


# ---------------------------------------------------------------------------------------------
# compressed sensing families
CS = ["cs-gaussian", "cs-circulant", "cs-fourier"]


@pytest.mark.parametrize("kind", CS)
@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), float("inf"), "0.3", True, None])
def test_ratio_errors(kind, ratio):
    with pytest.raises(OperatorError, match=r"ratio must be (a number )?in \(0, 1\]"):
        build(kind, (1, 8, 8), ratio=ratio)


@pytest.mark.parametrize("kind", CS)
def test_too_few_measurements(kind):
    with pytest.raises(OperatorError, match="need m >= 1"):
        build(kind, (1, 8, 8), ratio=1e-3)


@pytest.mark.parametrize("kind", CS)
def test_measurement_count(kind):
    op = build(kind, (3, 16, 16), ratio=0.25)
    expected = 3 * round(0.25 * 256) if kind == "cs-fourier" else round(0.25 * 768)
    assert op.m == expected
    assert op.params() == {"ratio": 0.25}


def test_gaussian_entries():
    op = build("cs-gaussian", (3, 16, 16), ratio=0.5)
    m = op.meas_shape[0]
    assert op.matrix.shape == (m, 768)
    assert op.matrix.std().item() == pytest.approx(1 / math.sqrt(m), rel=0.02)
    assert abs(op.matrix.mean().item()) < 5 / math.sqrt(m) / math.sqrt(m * 768)  # 5 sigma of the mean


def test_circulant_matches_its_definition():
    """A = S F D with F_ij = g[(j - i) mod n] (first row g), built densely for a tiny case."""
    op = build("cs-circulant", (2, 4, 4), seed=4, ratio=0.5)
    n = op.n
    g = torch.fft.irfft(op.g_hat.to(torch.complex128), n=n)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    Fm = g[(j - i) % n]
    dense = Fm[op.rows] * op.signs.double()[None, :]
    cols = op.A(torch.eye(n, dtype=torch.float64).reshape(n, 2, 4, 4))  # row j = A e_j
    assert torch.allclose(cols.T, dense, atol=1e-12)
    assert torch.equal(op.rows, op.rows.sort().values) and op.rows.unique().numel() == op.m
    assert set(op.signs.tolist()) == {-1, 1}


def test_fourier_mask_structure():
    op = build("cs-fourier", (1, 16, 16), seed=0, ratio=0.1)
    mask = op.mask
    assert mask.shape == (16, 9) and bool(mask[0, 0])  # DC always kept
    # low frequencies are denser than high ones
    kh = torch.arange(16).clamp_max(16 - torch.arange(16))
    low = mask[(kh <= 3)][:, :4].float().mean()
    high = mask[(kh >= 5)][:, 5:].float().mean()
    assert low > 2 * high


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 7, 9), (1, 9, 6)])
def test_fourier_full_ratio_is_orthogonal(shape):
    op = build("cs-fourier", shape, ratio=1.0)
    n = op.n
    M = op.A(torch.eye(n, dtype=torch.float64).reshape((n,) + shape)).reshape(n, n)
    assert torch.allclose(M @ M.T, torch.eye(n, dtype=torch.float64), atol=1e-12)


def test_fourier_values_are_scaled_fft_coefficients():
    op = build("cs-fourier", (1, 8, 8), seed=1, ratio=0.5)
    x = _x(op, n=1)
    X = torch.fft.rfft2(x, norm="ortho").reshape(-1)
    y = op.A(x).reshape(-1)
    n_re = op.re_half.numel()
    assert torch.allclose(y[:n_re], X.real[op.re_half] * op.re_scale)
    assert torch.allclose(y[n_re:], X.imag[op.im_half] * math.sqrt(2))


# ---------------------------------------------------------------------------------------------
# inpaint
@pytest.mark.parametrize("frac", [0, -0.5, 1.1, float("nan"), "half"])
@pytest.mark.parametrize("mask", ["random", "box"])
def test_inpaint_frac_errors(frac, mask):
    with pytest.raises(OperatorError, match=r"frac must be in \(0, 1\]"):
        build("inpaint", (1, 8, 8), frac=frac, mask=mask)


def test_inpaint_frac_required_and_too_small():
    with pytest.raises(OperatorError, match="frac .* is required"):
        build("inpaint", (1, 8, 8))
    with pytest.raises(OperatorError, match="keeps 0 of 64 pixels"):
        build("inpaint", (1, 8, 8), frac=0.001)
    with pytest.raises(OperatorError, match="box mask keeps no pixel"):
        build("inpaint", (1, 8, 8), frac=0.001, mask="box")


def test_inpaint_random_and_box_masks():
    op = build("inpaint", (3, 16, 16), frac=0.25)
    assert op.meas_shape == (3, 64) and int(op.mask.sum()) == 64
    x = _x(op)
    assert torch.equal(op.A(x)[:, 1], x[:, 1].reshape(2, -1)[:, op.mask.reshape(-1)])  # same mask per channel
    box = build("inpaint", (1, 16, 16), frac=0.75, mask="box")
    keep = box.mask
    assert not keep[4:12, 4:12].any() and keep.sum() == 256 - 64  # centred 8x8 square removed
    assert box.spec() == {"kind": "inpaint", "img_shape": [1, 16, 16], "seed": 0, "mask": "box", "frac": 0.75}


def _save_mask(path, keep):
    from PIL import Image

    Image.fromarray((np.asarray(keep, dtype=np.uint8) * 255)).save(path)


def test_inpaint_mask_file(tmp_path):
    keep = np.zeros((12, 16), dtype=bool)
    keep[2:7, 3:11] = True
    path = tmp_path / "mask.png"
    _save_mask(path, keep)
    op = build("inpaint", (3, 12, 16), mask=str(path))
    assert torch.equal(op.mask, torch.from_numpy(keep)) and op.meas_shape == (3, int(keep.sum()))
    spec = json.loads(json.dumps(op.spec()))
    assert spec["mask"] == str(path.resolve()) and len(spec["mask_sha256"]) == 64 and "frac" not in spec
    x = _x(op)
    assert torch.equal(from_spec(spec).A(x), op.A(x))
    # the same mask re-saved (e.g. as RGB) still matches; a different mask does not
    from PIL import Image

    Image.open(path).convert("RGB").save(path)
    assert torch.equal(from_spec(spec).A(x), op.A(x))
    keep[0, 0] = True
    _save_mask(path, keep)
    with pytest.raises(OperatorError, match="changed since the operator was recorded"):
        from_spec(spec)


def test_inpaint_mask_file_errors(tmp_path):
    path = tmp_path / "mask.png"
    _save_mask(path, np.ones((8, 8), dtype=bool))
    with pytest.raises(OperatorError, match="8x8 .* but the image is 16x12; they must match"):
        build("inpaint", (1, 12, 16), mask=str(path))
    with pytest.raises(OperatorError, match="frac does not apply with a mask file"):
        build("inpaint", (1, 8, 8), mask=str(path), frac=0.5)
    with pytest.raises(OperatorError, match="'random', 'box' or an existing mask image file"):
        build("inpaint", (1, 8, 8), mask=str(tmp_path / "missing.png"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(OperatorError, match="cannot read mask file"):
        build("inpaint", (1, 8, 8), mask=str(tmp_path / "junk.png"))
    _save_mask(path, np.zeros((8, 8), dtype=bool))
    with pytest.raises(OperatorError, match="file mask keeps no pixel"):
        build("inpaint", (1, 8, 8), mask=str(path))


# ---------------------------------------------------------------------------------------------
# superres
@pytest.mark.parametrize(
    "factor, match",
    [(3, "factor 3 must divide the image size 16x16"), (1, "in 2..16"), (32, "in 2..16"), (2.0, "must be an integer"), (True, "must be an integer")],
)
def test_superres_factor_errors(factor, match):
    with pytest.raises(OperatorError, match=match):
        build("superres", (1, 16, 16), factor=factor)


def test_superres_divides_both_axes():
    with pytest.raises(OperatorError, match="must divide the image size 16x20"):
        build("superres", (1, 16, 20), factor=8)


def test_superres_preview_and_dagger():
    op = build("superres", (1, 8, 8), factor=4)
    y = torch.tensor([[[[0.1, 0.2], [0.3, 1.5]]]])
    p = op.preview(y)
    assert p.shape == (1, 1, 8, 8) and torch.equal(p[0, 0, :4, :4], torch.full((4, 4), 0.1))
    assert torch.equal(p[0, 0, 4:, 4:], torch.ones(4, 4))  # clamped
    xd = op.A_dagger(torch.full((1, 1, 2, 2), 0.5))
    assert torch.allclose(xd, torch.full((1, 1, 8, 8), 0.5))  # bicubic upsampling keeps constants


def test_superres_matches_pil_bicubic():
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    img = skdata.astronaut()  # 512 x 512 x 3 uint8
    op = build("superres", (3, 512, 512), factor=4)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ours = (op.A(x)[0].permute(1, 2, 0) * 255).round().clamp(0, 255).numpy()
    pil = np.asarray(Image.fromarray(img).resize((128, 128), Image.BICUBIC), dtype=np.float32)
    diff = np.abs(ours - pil)
    # PIL rounds and clips to 8 bits between its horizontal and vertical passes; a linear operator
    # cannot, so a few pixels next to saturated edges (bicubic overshoot) differ by more than 1/255
    assert (diff > 1).mean() < 0.005 and diff.mean() < 0.2 and diff.max() <= 8


# ---------------------------------------------------------------------------------------------
# blur
@pytest.mark.parametrize(
    "params, match",
    [
        ({"kernel_size": 4}, "odd integer in 1..16"),
        ({"kernel_size": 0}, "odd integer in 1..16"),
        ({"kernel_size": 17}, "odd integer in 1..16"),
        ({"kernel_size": 3.0}, "odd integer in 1..16"),
        ({"kernel_size": 3, "boundary": "zero"}, "unknown blur boundary .zero.; choose from: circular, reflect"),
    ],
)
def test_blur_param_errors(params, match):
    with pytest.raises(OperatorError, match=match):
        build("blur", (1, 16, 20), **params)


@pytest.mark.parametrize("boundary", ["circular", "reflect"])
def test_blur_values(boundary):
    op = build("blur", (1, 9, 9), kernel_size=3, boundary=boundary)
    assert torch.allclose(op.A(torch.full((1, 1, 9, 9), 0.7)), torch.full((1, 1, 9, 9), 0.7))
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 9.0
    y = op.A(x)[0, 0]
    assert torch.allclose(y[3:6, 3:6], torch.ones(3, 3)) and y.sum() == pytest.approx(9.0)
    corner = torch.zeros(1, 1, 9, 9)
    corner[0, 0, 0, 0] = 9.0
    yc = op.A(corner)[0, 0]
    if boundary == "circular":  # wraps around
        assert yc[8, 8] == pytest.approx(1.0)
    else:  # mirrored: row/col 1 is counted twice for the corner pixel's neighbours
        assert yc[8, 8] == 0 and yc[0, 0] == pytest.approx(1.0) and yc[1, 1] == pytest.approx(1.0)
    assert torch.equal(op.preview(y[None, None]), y[None, None].clamp(0, 1))


def test_blur_kernel_one_is_identity():
    for boundary in ("circular", "reflect"):
        op = build("blur", (2, 8, 8), kernel_size=1, boundary=boundary)
        x = _x(op)
        assert torch.allclose(op.A(x), x, atol=1e-12)
        assert torch.allclose(op.backproject(torch.zeros_like(x), x), x, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# noise
def test_noise_per_entry_std():
    op = build("identity", (1, 200, 200))
    y = torch.zeros(2, 1, 200, 200)
    noise = NoiseSpec("per-entry", 0.05, seed=3)
    eta = add_noise(y, noise, op)
    assert noise.std(op) == 0.05
    assert eta.std().item() == pytest.approx(0.05, rel=0.02) and abs(eta.mean().item()) < 1e-3


def test_noise_cs_norm_convention():
    op64 = build("cs-gaussian", (3, 64, 64), ratio=0.1)
    std = NoiseSpec("cs-norm", 0.1).std(op64)
    assert math.sqrt(op64.m) * std == pytest.approx(0.1)  # sqrt(E||eta||^2) = 0.1 at 64 px
    # larger images: E||eta||^2 / ||Ax||^2 constant, i.e. E||eta||^2 grows with n
    op128 = build("cs-circulant", (3, 128, 128), ratio=0.1)
    std128 = NoiseSpec("cs-norm", 0.1).std(op128)
    assert math.sqrt(op128.m) * std128 == pytest.approx(0.2)
    assert std128 == pytest.approx(0.1 * math.sqrt(op128.n / (op128.m * 12288)))
    d = NoiseSpec("cs-norm", 0.1, seed=2).to_dict(op64)
    assert d["std"] == pytest.approx(std) and NoiseSpec.from_dict(json.loads(json.dumps(d))) == NoiseSpec("cs-norm", 0.1, 2)


def test_noise_seed_determinism():
    op = build("cs-circulant", (3, 16, 16), ratio=0.5)
    y = op.A(_x(op, dtype=torch.float32))
    a, b = (add_noise(y, NoiseSpec("per-entry", 0.1, seed=4), op) for _ in range(2))
    c = add_noise(y, NoiseSpec("per-entry", 0.1, seed=5), op)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(add_noise(y, NoiseSpec("per-entry", 0.0), op), y)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"convention": "snr"}, "unknown noise convention"), ({"value": -0.1}, r"number in \[0, 1e\+06\], got -0.1"),
     ({"value": float("nan")}, "got nan"), ({"value": 1e308}, r"noise level must be a number in \[0, 1e\+06\], got 1e\+308")],
)
def test_noise_errors(kwargs, match):
    with pytest.raises(OperatorError, match=match):
        NoiseSpec(**kwargs)
