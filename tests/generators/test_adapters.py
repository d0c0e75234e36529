"""The adapter contract, swept over every architecture (tiny random configs) and the real
pretrained DCGAN."""

from __future__ import annotations

import pytest
import torch

from recon_core.errors import BadInput
from recon_core.generators import registry
from tests.conftest import tiny_prior

ARCHS = sorted(registry.names())


@pytest.mark.parametrize("arch", ARCHS)
def test_head_tail_identity_every_cut(arch):
    g = tiny_prior(arch)
    z = g.sample_latent(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = g(z)
        for c in g.cut_points:
            st = g.head(z, c)
            assert {k: tuple(v.shape[1:]) for k, v in st.items()} == g.state_shapes(c)
            torch.testing.assert_close(g.tail(st, c), x, rtol=0, atol=1e-6)
    assert x.shape == (3, g.meta.channels, g.meta.resolution, g.meta.resolution)
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("arch", ARCHS)
def test_every_state_entry_gets_gradients(arch):
    g = tiny_prior(arch)
    for c in g.cut_points:
        st = {k: v.clone().requires_grad_(True) for k, v in g.init_state(c, 2, "cn", torch.Generator().manual_seed(0)).items()}
        g.tail(st, c).square().sum().backward()
        for k, v in st.items():
            assert v.grad is not None and v.grad.abs().sum() > 0, (c, k)


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_cut_and_init(arch):
    g = tiny_prior(arch)
    with pytest.raises(BadInput, match="outside the cut points"):
        g.head(g.sample_latent(1), len(g.blocks))
    with pytest.raises(BadInput, match="outside the cut points"):
        g.tail(g.sample_latent(1), -1)
    with pytest.raises(BadInput, match="unknown init 'gauss'"):
        g.init_state(1, 1, "gauss")


@pytest.mark.parametrize("arch", ARCHS)
def test_prior_init_is_the_head_of_sampled_latents(arch):
    g = tiny_prior(arch)
    for c in g.cut_points:
        st = g.init_state(c, 2, "prior", torch.Generator().manual_seed(3))
        ref = g.head(g.sample_latent(2, torch.Generator().manual_seed(3)), c)
        assert st.keys() == ref.keys() and all(torch.equal(st[k], ref[k]) for k in st)


@pytest.mark.parametrize("init", ["cn", "zero", "normal", "uniform"])
def test_init_distributions(init):
    g = tiny_prior("dcgan")
    st = g.init_state(1, 4, init, torch.Generator().manual_seed(0))
    v = next(iter(st.values()))
    if init == "cn":
        assert v.abs().max() <= 1 and v.std() > 0.3
    elif init == "zero":
        assert v.abs().max() == 0
    elif init == "uniform":
        assert v.abs().max() <= 1 and v.min() < -0.5
    else:
        assert v.abs().max() > 1


def test_dcgan_resolutions_and_config_errors():
    from recon_core.generators.dcgan import DCGAN

    for r in (32, 64, 128):
        g = DCGAN(resolution=r, nz=4, ngf=2).eval()
        assert g(g.sample_latent(1)).shape == (1, 3, r, r)
        assert len(g.cut_points) == {32: 4, 64: 5, 128: 6}[r]
    with pytest.raises(BadInput, match="resolution must be one of"):
        DCGAN(resolution=48)
    with pytest.raises(BadInput, match="nc in"):
        DCGAN(nc=2)


@pytest.mark.parametrize("n,c_in,c_out,hw", [(1, 8, 5, 4), (2, 8, 5, 4), (1, 6, 3, 8), (3, 4, 2, 1)])
def test_deconv_as_matmul_equals_conv_transpose(n, c_in, c_out, hw):
    """The matmul + fold form of DCGAN's 4 x 4, stride 2 transposed convolution gives the
    library's values and gradients (input and weights) in float64."""
    import torch.nn.functional as F

    from recon_core.generators.dcgan import deconv4x4_s2_as_matmul

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, hw, hw, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_in, c_out, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.conv_transpose2d(x, w, stride=2, padding=1)
    out = deconv4x4_s2_as_matmul(x, w)
    assert out.shape == ref.shape == (n, c_out, 2 * hw, 2 * hw)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w), up), torch.autograd.grad(ref, (x, w), up), rtol=1e-12, atol=1e-12)


def test_dcgan_block1_fast_path_matches_its_layer():
    """Block 1 takes the matmul path for a few rows of its 4 x 4 input on the CPU (MATMUL_ROWS:
    one row, more in bfloat16) and the library layer otherwise: the same image as running the
    nn.Sequential layers."""
    from recon_core.generators import dcgan

    G = dcgan.DCGAN(resolution=64, nz=4, ngf=4).double().eval()
    h = torch.randn(3, G.widths[0], 4, 4, dtype=torch.float64)
    assert dcgan._use_matmul(h[:1]) and not dcgan._use_matmul(h[:2]) and not dcgan._use_matmul(torch.zeros(1, 8, 8, 8))
    assert not dcgan._use_matmul(h[:2].float()) and dcgan._use_matmul(h.bfloat16()) and not dcgan._use_matmul(h[:2].half())
    for rows in (h[:1], h):
        ref = G.main[3:6](rows)
        torch.testing.assert_close(G.run_block(1, {"h": rows})["h"], ref, rtol=1e-12, atol=1e-12)


def test_deconv_as_matmul_in_bfloat16_is_as_accurate_as_the_library():
    """In bfloat16 (the fast preset's first evaluations take the matmul path for up to
    MATMUL_ROWS[bfloat16] rows) the matmul form's value and input gradient are as close to the
    float64 result as the library kernel's in bfloat16 (within 2x its error, and under 1 %)."""
    import torch.nn.functional as F

    from recon_core.generators import dcgan

    g = torch.Generator().manual_seed(0)
    rows = dcgan.MATMUL_ROWS[torch.bfloat16]
    x = torch.randn(rows, 64, 4, 4, generator=g, dtype=torch.float64)
    w = torch.randn(64, 32, 4, 4, generator=g, dtype=torch.float64) * 0.1
    up = torch.randn(rows, 32, 8, 8, generator=g, dtype=torch.float64)

    def value_and_grad(fn, dtype):
        xi = x.to(dtype).requires_grad_(True)
        out = fn(xi, w.to(dtype))
        return out.detach().double(), torch.autograd.grad(out, xi, up.to(dtype))[0].double()

    def library(a, b):
        return F.conv_transpose2d(a, b, stride=2, padding=1)

    exact = value_and_grad(library, torch.float64)
    lib = value_and_grad(library, torch.bfloat16)
    mm = value_and_grad(dcgan.deconv4x4_s2_as_matmul, torch.bfloat16)
    for e, a, b in zip(exact, lib, mm):
        err_lib, err_mm = float((a - e).norm() / e.norm()), float((b - e).norm() / e.norm())
        assert err_mm < 0.01 and err_mm <= 2 * err_lib + 1e-6, (err_mm, err_lib)


def test_real_dcgan_faces(face64):
    """The pretrained face DCGAN: contract holds; samples have face-like statistics."""
    from recon_core.generators.zoo import load_prior

    g = load_prior("dcgan-faces-64")
    z = g.sample_latent(16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g(z)
        for c in g.cut_points:
            torch.testing.assert_close(g.tail(g.head(z, c), c), x, rtol=0, atol=1e-5)
    assert g.state_shapes(1) == {"h": (512, 4, 4)}
    # trained weights: samples are not noise: neighbouring pixels are strongly correlated
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9
