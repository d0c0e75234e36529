"""IAGAN, Deep Decoder, Hybrid, Lasso-DCT, pinv and back-projection post-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from recon_core.errors import BadInput
from recon_core.operators import build
from recon_core.priors import deep_decoder as ddp
from recon_core.solvers import Problem, get_method
from recon_core.solvers import deep_decoder, hybrid, iagan, lasso_dct, pinv, postprocess
from recon_core.solvers.common import measurement_loss, seeded_rng
from tests.conftest import load_benchmark, tiny_prior

#: small settings per method so that every one runs in about a second on the tiny prior
FAST = {
    "iagan": dict(csgm_steps=30, steps=30, lr_theta=1e-2, restarts=2),
    "deep-decoder": dict(depth=3, steps=60, restarts=2),
    "hybrid": dict(n_pre=20, steps=30, restarts=2, dd_depth=3),
    "lasso-dct": dict(steps=50),
    "pinv": dict(),
}


def _image(seed=0):
    """A 32 px RGB image well inside (0, 1), not in the tiny prior's range."""
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 0.6 + 0.2


def _cs_problem(ratio=0.3, noise_std=0.0):
    x = _image()
    A = build("cs-gaussian", (3, 32, 32), seed=0, ratio=ratio)
    return Problem(A, A.A(x), noise_std), x


# ---- IAGAN ---------------------------------------------------------------------------------------
def test_iagan_leaves_shared_prior_untouched():
    g = tiny_prior()
    # a mix of flags: the solver must restore exactly these, not set them all to True
    flags = []
    for j, p in enumerate(g.parameters()):
        p.requires_grad_(j % 2 == 0)
        flags.append(p.requires_grad)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    pb, _ = _cs_problem()
    res = iagan.solve(pb, g, iagan.IAGANConfig(csgm_steps=10, steps=20, lr_theta=1e-2, restarts=2))
    after = g.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in g.parameters()] == flags
    assert not g.training
    # the adaptation changed something (else the test above proves nothing)
    assert res.extra["stage2_loss"] < 0.9 * res.extra["stage1_loss"]


def test_iagan_weights_reset_per_restart(monkeypatch):
    """Two restarts from the same z give the same result: restart 1 starts from the original
    weights, not from restart 0's adapted ones (which would fit further, to a lower loss)."""
    g = tiny_prior()
    z = g.sample_latent(1, torch.Generator().manual_seed(7))
    monkeypatch.setattr(g, "init_state", lambda c, n, init="prior", rng=None: {k: v.repeat(n, 1) for k, v in z.items()})
    pb, _ = _cs_problem()
    res = iagan.solve(pb, g, iagan.IAGANConfig(csgm_steps=10, steps=25, lr_theta=1e-2, restarts=2))
    s1 = res.extra["stage1_losses"]
    assert s1[0] == pytest.approx(s1[1], rel=1e-6)
    assert res.losses[0] == pytest.approx(res.losses[1], rel=1e-5)
    assert res.losses[0] < 0.9 * s1[0]


def test_iagan_stages_and_noise_halving():
    g = tiny_prior()
    pb, _ = _cs_problem()
    ev = []
    cfg = iagan.IAGANConfig(csgm_steps=8, steps=6, restarts=1)
    res = iagan.solve(pb, g, cfg, on_event=ev.append)
    assert [e.phase for e in ev] == ["iagan:csgm"] * 8 + ["iagan:adapt"] * 6
    assert res.extra["adapt_steps"] == 6 and res.extra["stage2_loss"] <= res.extra["stage1_loss"]
    assert set(res.state) == set(g.state_shapes(0))
    with torch.no_grad():  # the reported loss is the loss of the returned estimate
        assert float(measurement_loss(pb.A, pb.y, res.x_hat)) == pytest.approx(res.losses[0], rel=1e-4)
    noisy = Problem(pb.A, pb.y, noise_std=0.01)
    ev.clear()
    res = iagan.solve(noisy, g, cfg, on_event=ev.append)
    assert res.extra["adapt_steps"] == 3 and sum(e.phase == "iagan:adapt" for e in ev) == 3
    res = iagan.solve(noisy, g, iagan.IAGANConfig(csgm_steps=2, steps=6, restarts=1, halve_if_noisy=False))
    assert res.extra["adapt_steps"] == 6


def test_iagan_backproject_fits_measurements():
    g = tiny_prior()
    pb, _ = _cs_problem(ratio=0.1)
    from recon_core.solvers import postprocess

    res = postprocess.backproject(iagan.solve(pb, g, iagan.IAGANConfig(csgm_steps=5, steps=5, restarts=1)), pb)  # IAGAN-BP
    assert res.extra["backprojected"] is True
    assert res.extra["loss_after_bp"] < 0.5 * res.extra["loss_before_bp"]
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1


# ---- Deep Decoder ---------------------------------------------------------------------------------
def test_deep_decoder_width_rule():
    assert ddp.choose_width((3, 64, 64), 12288, 5) == 44  # the paper's 64 px setting (m = n)
    assert ddp.num_params(44, 5, 3) == 12276
    for shape, m, d in [((3, 64, 64), 1229, 5), ((3, 32, 32), 922, 3), ((1, 16, 16), 100, 2), ((3, 64, 64), 20000, 4)]:
        k = ddp.choose_width(shape, m, d)
        assert ddp.num_params(k, d, shape[0]) < m <= ddp.num_params(k + 1, d, shape[0])
    net = ddp.DeepDecoder((3, 32, 32), width=6, depth=3)
    assert net.num_params() == sum(p.numel() for p in net.parameters()) == ddp.num_params(6, 3, 3)
    out = net().detach()
    assert out.shape == (1, 3, 32, 32) and 0 < float(out.min()) and float(out.max()) < 1
    assert net.net_input.shape == (1, 6, 4, 4) and not net.net_input.requires_grad


def test_deep_decoder_matches_reference_layers():
    """decode() equals the reference architecture built from torch layers (1x1 Conv2d without
    bias, bilinear Upsample, ReLU, BatchNorm2d in training mode on a batch of one)."""
    torch.manual_seed(0)
    shape, k, d = (3, 16, 16), 5, 2
    p = ddp.init_params(shape, k, d, n=1, rng=torch.Generator().manual_seed(1))
    for i in range(d + 1):
        p[f"gamma{i}"].uniform_(0.5, 1.5)
        p[f"beta{i}"].uniform_(-0.2, 0.2)
    inp = ddp.init_input(shape, k, d, n=1, rng=torch.Generator().manual_seed(2))
    # the reference's torch layers, as benchmarks/timings.py builds them for its step timing
    ref = load_benchmark("timings").reference_decoder(p, inp, 0)
    torch.testing.assert_close(ddp.decode(p, inp), ref(inp), rtol=1e-5, atol=1e-6)
    # and the gradients (decode's fused group_norm and batched products vs the torch layers), float64
    ref = ref.double()
    p64 = {key: v.double().requires_grad_(True) for key, v in p.items()}
    up = torch.randn(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = torch.autograd.grad(ddp.decode(p64, inp.double()), [p64[f"conv{i}"] for i in range(d + 1)] + [p64["gamma0"], p64["out"]], up)
    want = torch.autograd.grad(ref(inp.double()), [ref[j].weight for j in (0, 4, 8)] + [ref[3].weight, ref[11].weight], up)
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_.reshape(w_.shape), w_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 16, 16), (1, 5, 32, 16), (3, 2, 16, 40)])
def test_deep_decoder_upsampling_equals_the_library_kernel(shape):
    """_upsample2 (two matrix products from 16 px up, the library kernel below) equals
    F.interpolate's bilinear x2 (align_corners=False), values and gradients (float64)."""
    import torch.nn.functional as F

    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    up = torch.randn(*shape[:2], 2 * shape[2], 2 * shape[3], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = ddp._upsample2(x)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(got, x, up)[0], torch.autograd.grad(want, x, up)[0], rtol=1e-12, atol=1e-12)


def test_deep_decoder_channel_norm_is_per_restart_and_channel():
    """The folded group norm normalises each (restart, channel) plane over its pixels and applies
    that restart's own scale and shift: equal to BatchNorm2d (training mode) run per restart."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64, generator=g) * 3 + 1
    gamma, beta = torch.rand(3, 4, dtype=torch.float64, generator=g) + 0.5, torch.randn(3, 4, dtype=torch.float64, generator=g)
    got = ddp._channel_norm(x, gamma, beta)
    for r in range(3):
        bn = torch.nn.BatchNorm2d(4, eps=ddp.NORM_EPS).double().train()
        with torch.no_grad():
            bn.weight.copy_(gamma[r])
            bn.bias.copy_(beta[r])
        torch.testing.assert_close(got[r : r + 1], bn(x[r : r + 1]), rtol=1e-10, atol=1e-12)


def test_deep_decoder_one_pixel_layer_normalises_to_its_shift():
    """A channel of one pixel has mean = itself: the norm gives beta (group_norm would refuse it)."""
    p = ddp.init_params((1, 1, 1), 2, 0, n=1, rng=torch.Generator().manual_seed(0))
    p["beta0"] = torch.tensor([[0.3, -0.2]])
    out = ddp.decode(p, ddp.init_input((1, 1, 1), 2, 0, n=1, rng=torch.Generator().manual_seed(1)))
    # depth 0 at 1 x 1: conv -> ReLU -> norm (= beta0) -> out conv -> sigmoid
    torch.testing.assert_close(out, torch.sigmoid(p["out"] @ p["beta0"].T).reshape(1, 1, 1, 1))


def test_deep_decoder_restarts_batched_independently():
    """Restart 1 of a batch equals the same decoder optimised alone (float64)."""
    A = build("cs-gaussian", (1, 8, 8), seed=0, ratio=0.5)
    y = A.A(_image()[:, :1, ::4, ::4].double())
    p = ddp.init_params((1, 8, 8), 3, 2, n=3, rng=torch.Generator().manual_seed(0), dtype=torch.float64)
    inp = ddp.init_input((1, 8, 8), 3, 2, n=3, rng=torch.Generator().manual_seed(1), dtype=torch.float64)
    from recon_core.solvers.common import optimise_state

    run = lambda p0, i0: optimise_state(lambda s: measurement_loss(A, y, ddp.decode(s, i0)), p0, optimizer="adam",  # noqa: E731
                                        lr=0.01, steps=20, phase="t")[1]
    batch = run(p, inp)
    alone = run({k: v[1:2] for k, v in p.items()}, inp[1:2])
    assert float(alone[0]) == pytest.approx(float(batch[1]), rel=1e-9)


# ---- Hybrid ---------------------------------------------------------------------------------------
def test_hybrid_reports_alpha_beta():
    g = tiny_prior()
    pb, _ = _cs_problem()
    ev = []
    res = hybrid.solve(pb, g, hybrid.HybridConfig(n_pre=4, steps=5, restarts=2, dd_depth=3), on_event=ev.append)
    for key in ("alpha", "beta"):
        assert isinstance(res.extra[key], float) and math.isfinite(res.extra[key])
        assert res.extra[key] != 0.5  # moved from the paper's initial value
    assert [e.phase for e in ev] == ["hybrid:pre-gan"] * 4 + ["hybrid:pre-dd"] * 4 + ["hybrid:joint"] * 5
    assert res.extra["num_params"] < pb.A.m  # the whole model is under-parameterised
    # the returned estimate is alpha G(z) + beta DD(theta) at the returned state (clamped)
    z = {k[2:]: v for k, v in res.state.items() if k.startswith("g.")}
    th = {k[3:]: v for k, v in res.state.items() if k.startswith("dd.") and k != "dd.input"}
    with torch.no_grad():
        x = (res.extra["alpha"] * g(z) + res.extra["beta"] * ddp.decode(th, res.state["dd.input"])).clamp(0, 1)
    torch.testing.assert_close(x, res.x_hat)


# ---- Lasso-DCT ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 3, 6, 10), (1, 2, 7, 5)])
def test_torch_dct_matches_scipy(shape):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(lasso_dct.dct2(x).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(lasso_dct.idct2(x).numpy(), scipy.fft.idctn(x.numpy(), axes=(-2, -1), norm="ortho"), atol=1e-12)
    torch.testing.assert_close(lasso_dct.idct2(lasso_dct.dct2(x)), x)
    x32 = x.float()  # float32 works too (the solver's usual dtype)
    np.testing.assert_allclose(lasso_dct.dct2(x32).numpy(), ref, atol=1e-5)


def test_fista_lasso_matches_sklearn():
    """FISTA's z_hat equals sklearn's coordinate-descent Lasso on the explicit matrix A Phi.

    sklearn minimises 1/(2 m) ||y - M w||^2 + a ||w||_1; ours is ||y - M z||^2 + lam ||z||_1,
    i.e. 2 m times sklearn's with a = lam / (2 m)."""
    from sklearn.linear_model import Lasso

    A = build("cs-gaussian", (1, 8, 8), seed=3, ratio=0.5)
    x = _image()[:, :1, ::4, ::4].double()  # 8x8 grey
    y = A.A(x)
    lam = 0.01
    res = lasso_dct.solve(Problem(A, y), None, lasso_dct.LassoDCTConfig(lam=lam, steps=3000, tol=1e-10))
    Phi = lasso_dct.idct2(torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)).reshape(64, 64).T  # columns
    M = (A.matrix.double() @ Phi).numpy()
    m = M.shape[0]
    sk = Lasso(alpha=lam / (2 * m), fit_intercept=False, tol=1e-14, max_iter=200000).fit(M, y[0].numpy())
    z = res.state["z"].reshape(-1).numpy()
    assert np.abs(z - sk.coef_).max() < 1e-3
    assert 0 < np.count_nonzero(sk.coef_) < 64  # a genuinely sparse solution
    assert res.extra["converged"]
    assert res.losses == [pytest.approx(float(measurement_loss(A, y, res.x_hat)))]


def test_lasso_identity_is_soft_threshold():
    """With A = I the Lasso has a closed form: z = soft(dct(y), lam / 2)."""
    A = build("identity", (1, 8, 8))
    y = _image()[:, :1, ::4, ::4]
    res = lasso_dct.solve(Problem(A, y), None, lasso_dct.LassoDCTConfig(lam=0.2, steps=500, tol=1e-6))
    torch.testing.assert_close(res.state["z"], lasso_dct.soft_threshold(lasso_dct.dct2(y), 0.1), rtol=1e-4, atol=1e-5)
    assert res.extra["converged"]


# ---- every method, pinv, back-projection, errors -----------------------------------------------------
@pytest.mark.parametrize("method", list(FAST))
def test_methods_decrease_measurement_loss(method):
    g = tiny_prior()
    pb, x = _cs_problem()
    cfg_cls, solve = get_method(method)
    res = solve(pb, None if method in ("deep-decoder", "lasso-dct", "pinv") else g, cfg_cls(**FAST[method]), seed=0)
    assert res.x_hat.shape == x.shape and 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1
    assert res.losses[res.best_restart] == min(res.losses)
    best = min(res.losses)
    zero = float(pb.y.pow(2).sum())  # the loss of x = 0 (Lasso and pinv start there)
    with torch.no_grad():
        if method == "iagan":
            start = res.history[0]["loss"]  # the loss at the initial latents
            assert best < 0.9 * res.extra["stage1_loss"] < 0.9 * start
        elif method == "deep-decoder":
            rng, k = seeded_rng(0), res.extra["width"]  # the solver's own initialisation
            p = ddp.init_params((3, 32, 32), k, 3, 2, rng=rng)
            start = float(measurement_loss(pb.A, pb.y, ddp.decode(p, ddp.init_input((3, 32, 32), k, 3, 2, rng=rng))).min())
            assert best < 0.5 * start
        elif method == "hybrid":
            joint = [h["loss"] for h in res.history if h["phase"] == "joint"]
            pre = [h["loss"] for h in res.history if h["phase"] == "pre-dd"]
            assert best < 0.9 * joint[0] and pre[-1] < 0.9 * pre[0]
        else:
            assert best < 0.1 * zero


def test_pinv_is_zero_fill_for_inpainting():
    x = _image()
    A = build("inpaint", (3, 32, 32), seed=1, frac=0.3)
    res = pinv.solve(Problem(A, A.A(x)), None)
    expected = x * A.mask.to(x.dtype)
    torch.testing.assert_close(res.x_hat, expected)
    assert res.losses == [pytest.approx(0.0, abs=1e-10)] and res.state == {}


def test_postprocess_backprojection_fits_measurements():
    x = _image()
    A = build("cs-gaussian", (3, 32, 32), seed=2, ratio=0.1)
    y = A.A(x)
    # an estimate close to x, so the back-projected image stays well inside (0, 1) and the clamp
    # does not act: then A x_bp = y
    x_hat = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    from recon_core.solvers.common import Result

    r0 = Result(x_hat=x_hat, state={}, losses=[1.0], best_restart=0, extra={"k": 1})
    r1 = postprocess.backproject(r0, Problem(A, y))
    assert 0 < float(r1.x_hat.min()) and float(r1.x_hat.max()) < 1
    torch.testing.assert_close(A.A(r1.x_hat), y, rtol=1e-4, atol=1e-4)
    assert r1.extra["backprojected"] is True and r1.extra["k"] == 1 and "backprojected" not in r0.extra
    assert r1.extra["loss_after_bp"] < 1e-6 * r1.extra["loss_before_bp"]
    assert r0.x_hat is x_hat and r1.losses == [1.0]


def test_bad_settings():
    g = tiny_prior()
    pb, _ = _cs_problem()
    with pytest.raises(BadInput, match="lr_theta must be a positive number"):
        iagan.solve(pb, g, iagan.IAGANConfig(lr_theta=0))
    with pytest.raises(BadInput, match="csgm_steps must be a positive integer"):
        iagan.solve(pb, g, iagan.IAGANConfig(csgm_steps=1.5))
    with pytest.raises(BadInput, match="halve_if_noisy must be true or false"):
        iagan.solve(pb, g, iagan.IAGANConfig(halve_if_noisy="yes"))
    with pytest.raises(BadInput, match="iagan needs a generator prior"):
        iagan.solve(pb, None, iagan.IAGANConfig())
    with pytest.raises(BadInput, match="depth 6 needs H and W divisible by 2\\^6"):
        deep_decoder.solve(pb, None, deep_decoder.DeepDecoderConfig(depth=6))
    with pytest.raises(BadInput, match="width must be a positive integer"):
        deep_decoder.solve(pb, None, deep_decoder.DeepDecoderConfig(width=0, depth=2))
    with pytest.raises(BadInput, match="restarts must be a positive integer"):
        deep_decoder.solve(pb, None, deep_decoder.DeepDecoderConfig(depth=2, restarts=0))
    with pytest.raises(BadInput, match="at least .* parameters, not fewer than m = 10"):
        ddp.choose_width((3, 32, 32), 10, 3)
    with pytest.raises(BadInput, match="n_pre must be a positive integer"):
        hybrid.solve(pb, g, hybrid.HybridConfig(n_pre=0))
    with pytest.raises(BadInput, match="hybrid needs a generator prior"):
        hybrid.solve(pb, None, hybrid.HybridConfig())
    few = Problem(build("cs-gaussian", (3, 32, 32), ratio=0.002), torch.zeros(1, 6))
    with pytest.raises(BadInput, match="leave no parameters for the deep decoder"):
        hybrid.solve(few, g, hybrid.HybridConfig())
    with pytest.raises(BadInput, match="lam must be a number >= 0"):
        lasso_dct.solve(pb, None, lasso_dct.LassoDCTConfig(lam=-0.1))
    with pytest.raises(BadInput, match="tol must be a number >= 0"):
        lasso_dct.solve(pb, None, lasso_dct.LassoDCTConfig(tol=float("nan")))
