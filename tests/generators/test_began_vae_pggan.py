"""BEGAN, VAE and PGGAN adapters: public checkpoint formats (synthetic files with the public key
names and shapes), the project's own format, and architecture-specific behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recon_core.errors import BadInput, CheckpointError
from recon_core.generators.began import BEGAN
from recon_core.generators.checkpoints import detect_format, load_checkpoint, read_checkpoint, save_checkpoint
from recon_core.generators.pggan import PGGAN, PGConvBlock, WScale, pixel_norm
from recon_core.generators.vae import VAE
from recon_core.generators import registry
from tests.conftest import tiny_prior


# ---- independent references of the public code ----------------------------------------------


class _MganBlock(nn.Module):
    """mganprior's ConvBlock (models/pggan_generator_network.py), re-typed from its semantics."""

    def __init__(self, c_in, c_out, k=3, padding=1, upsample=False, fused=False, gain=math.sqrt(2), linear=False):
        super().__init__()
        self.upsample, self.fused, self.linear, self.padding = upsample, fused, linear, padding
        if upsample and fused:
            self.weight = nn.Parameter(torch.randn(k, k, c_in, c_out))
        else:
            self.conv = nn.Conv2d(c_in, c_out, k, 1, padding, bias=False)
            nn.init.normal_(self.conv.weight)
        self.scale = gain / math.sqrt(c_in * k * k)
        self.wscale = nn.Module()
        self.wscale.bias = nn.Parameter(torch.randn(c_out) * 0.1)

    def forward(self, x):
        x = x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)
        if self.upsample and self.fused:
            kernel = self.weight * self.scale
            kernel = F.pad(kernel, (0, 0, 0, 0, 1, 1, 1, 1))
            kernel = kernel[1:, 1:] + kernel[:-1, 1:] + kernel[1:, :-1] + kernel[:-1, :-1]
            x = F.conv_transpose2d(x, kernel.permute(2, 3, 0, 1), stride=2, padding=1) / self.scale
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.conv(x)
        x = x * self.scale + self.wscale.bias.view(1, -1, 1, 1)
        return x if self.linear else F.leaky_relu(x, 0.2)


class _MganPGGAN(nn.Module):
    """mganprior's PGGANGeneratorNet at lod 0: layer{i}, output{j} (one toRGB per resolution), lod."""

    def __init__(self, resolution=16, z_dim=16, channels=3, fmaps_base=64, fmaps_max=8, fused=False):
        super().__init__()
        nf = lambda r: min(fmaps_base // r, fmaps_max)  # noqa: E731
        self.z_dim, self.n = z_dim, int(math.log2(resolution)) - 1
        self.lod = nn.Parameter(torch.zeros(()))
        for b in range(self.n):
            r = 4 * 2**b
            if b == 0:
                self.add_module("layer0", _MganBlock(z_dim, nf(4), k=4, padding=3))
            else:
                self.add_module(f"layer{2 * b}", _MganBlock(nf(r // 2), nf(r), upsample=True, fused=fused))
            self.add_module(f"layer{2 * b + 1}", _MganBlock(nf(r), nf(r)))
            self.add_module(f"output{b}", _MganBlock(nf(r), channels, k=1, padding=0, gain=1.0, linear=True))

    def forward(self, z):
        x = z.view(z.shape[0], self.z_dim, 1, 1)
        for b in range(self.n):
            x = getattr(self, f"layer{2 * b + 1}")(getattr(self, f"layer{2 * b}")(x))
            image = getattr(self, f"output{b}")(x)
        return image


def _antixk_vae(latent_dim=8, hidden_dims=(4, 8, 8), channels=3, r0=4):
    """AntixK's VanillaVAE body (models/vanilla_vae.py) with its attribute names, random weights and
    non-trivial BatchNorm statistics."""
    m = nn.Module()
    enc, c = [], channels
    for d in hidden_dims:
        enc.append(nn.Sequential(nn.Conv2d(c, d, 3, 2, 1), nn.BatchNorm2d(d), nn.LeakyReLU()))
        c = d
    m.encoder = nn.Sequential(*enc)
    m.fc_mu = nn.Linear(hidden_dims[-1] * r0 * r0, latent_dim)
    m.fc_var = nn.Linear(hidden_dims[-1] * r0 * r0, latent_dim)
    m.decoder_input = nn.Linear(latent_dim, hidden_dims[-1] * r0 * r0)
    rev = list(hidden_dims)[::-1]
    m.decoder = nn.Sequential(*[
        nn.Sequential(nn.ConvTranspose2d(rev[i], rev[i + 1], 3, 2, 1, output_padding=1), nn.BatchNorm2d(rev[i + 1]), nn.LeakyReLU())
        for i in range(len(rev) - 1)
    ])
    m.final_layer = nn.Sequential(
        nn.ConvTranspose2d(rev[-1], rev[-1], 3, 2, 1, output_padding=1), nn.BatchNorm2d(rev[-1]), nn.LeakyReLU(),
        nn.Conv2d(rev[-1], channels, 3, padding=1), nn.Tanh(),
    )
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)

    def decode(z):
        h = m.decoder_input(z).view(-1, hidden_dims[-1], r0, r0)
        return m.final_layer(m.decoder(h))

    m.decode = decode
    return m.eval()


def _mgan_sd(fused=False, seed=0):
    torch.manual_seed(seed)
    ref = _MganPGGAN(fused=fused).eval()
    return ref, {k: v.detach().clone() for k, v in ref.state_dict().items()}


def _to_genforce(sd):
    """mganprior names -> genforce's (layer{i}.weight/.bias; fused kernels as (in, out, kh, kw))."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".conv.weight"):
            out[k.replace(".conv.weight", ".weight")] = v
        elif k.endswith(".wscale.bias"):
            out[k.replace(".wscale.bias", ".bias")] = v
        elif k.endswith(".weight"):
            out[k] = v.permute(2, 3, 0, 1)
        else:
            out[k] = v
    return out


# ---- PGGAN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["mganprior", "mganprior-fused", "module", "genforce", "genforce-fused"])
def test_pggan_public_formats_load_and_match(tmp_path, variant):
    fused = variant.endswith("fused")
    ref, sd = _mgan_sd(fused=fused)
    config = {}
    if variant == "module":
        obj = {"module." + k: v for k, v in sd.items()}
    elif variant.startswith("genforce"):
        g_sd = _to_genforce(sd)
        obj = {"generator": g_sd, "discriminator": {"layer0.weight": torch.zeros(1)}, "generator_smooth": g_sd}
        config = {"fused_scale": True} if fused else {}
    else:
        obj = sd
    path = tmp_path / "pggan.pth"
    torch.save(obj, path)
    assert detect_format(read_checkpoint(path)) == "pggan"
    g = load_checkpoint(path, **config)
    assert g.meta.config == {"resolution": 16, "z_dim": 16, "channels": 3, "fmaps_base": 64, "fmaps_max": 8, "fused_scale": fused}
    assert "output0.conv.weight" not in g.state_dict()  # intermediate toRGB dropped
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(g({"z": z}), ((ref(z) + 1) / 2).clamp(0, 1), rtol=0, atol=1e-5)


def test_pggan_refuses_growing_checkpoint_and_names_bad_keys(tmp_path):
    _, sd = _mgan_sd()
    path = tmp_path / "p.pth"
    torch.save({**sd, "lod": torch.tensor(0.5)}, path)
    with pytest.raises(CheckpointError, match=r"lod=\[0.5\].*only lod 0"):
        load_checkpoint(path)
    bad = dict(sd)
    bad["layer3.conv.weight"] = torch.randn(8, 4, 3, 3)
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="shape mismatch at 'layer3.conv.weight'"):
        load_checkpoint(path)
    torch.save({k: v for k, v in sd.items() if k != "output2.conv.weight"}, path)
    with pytest.raises(CheckpointError, match="missing key 'output2.conv.weight'"):
        load_checkpoint(path)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="holds a PGGAN generator, not 'vae'"):
        load_checkpoint(path, arch="vae")


def test_pggan_full_size_shapes_match_mganprior(monkeypatch):
    """Block boundaries of the 256 px LSUN models (mganprior's PGGAN_LATENT_256), built on the meta
    device (no memory, no weights; random init skipped: the meta device's RNG takes seconds to
    warm up)."""
    monkeypatch.setattr(torch.nn.init, "normal_", lambda t, *a, **k: t)
    with torch.device("meta"):
        g = PGGAN(resolution=256)
    assert [g.state_shapes(c) for c in g.cut_points] == [{"z": (512,)}] + [
        {"h": s} for s in [(512, 4, 4), (512, 8, 8), (512, 16, 16), (512, 32, 32), (256, 64, 64), (128, 128, 128)]
    ]
    assert g.blocks[-1].out_shapes == {"img": (3, 256, 256)}
    assert tuple(g.layer0.conv.weight.shape) == (512, 512, 4, 4) and tuple(g.output6.conv.weight.shape) == (3, 64, 1, 1)


def test_pggan_numerics_at_init():
    x = torch.randn(4, 6, 5, 5) * 7
    torch.testing.assert_close(pixel_norm(x).square().mean(dim=1), torch.ones(4, 5, 5), rtol=1e-5, atol=1e-5)
    ws = WScale(fan_in=72, out_channels=6)
    assert ws.scale == pytest.approx(math.sqrt(2) / math.sqrt(72))
    torch.manual_seed(0)
    g = PGGAN(resolution=32, z_dim=64, fmaps_base=512, fmaps_max=32).eval()
    with torch.no_grad():
        raw = g.run_block(g.n_blocks - 1, g.head(g.sample_latent(8, torch.Generator().manual_seed(0)), g.n_blocks - 1))["img"]
        # pixel norm + equalised lr keep every layer at unit scale: no explosion, no collapse
        assert 0.2 < raw.std() < 5
        z = g.sample_latent(2, torch.Generator().manual_seed(1))
        # pixel norm makes the generator invariant to the scale of z
        torch.testing.assert_close(g({"z": z["z"] * 3}), g(z), rtol=0, atol=1e-5)


def test_pggan_fused_scale_equals_upsample_then_conv():
    torch.manual_seed(0)
    fused = PGConvBlock(5, 6, "fused_up")
    plain = PGConvBlock(5, 6, "up")
    with torch.no_grad():
        fused.wscale.bias.normal_()
        plain.wscale.bias.copy_(fused.wscale.bias)
        # (kh, kw, in, out) -> (out, in, kh, kw), spatially flipped: a transposed conv correlates
        # with the flipped kernel
        plain.conv.weight.copy_(fused.weight.permute(3, 2, 0, 1).flip(2, 3))
        x = torch.randn(2, 5, 4, 4)
        torch.testing.assert_close(fused(x), plain(x), rtol=0, atol=1e-5)


def test_pggan_config_errors():
    with pytest.raises(BadInput, match="resolution must be one of"):
        PGGAN(resolution=48)
    with pytest.raises(BadInput, match="fmaps_base >= resolution"):
        PGGAN(resolution=64, fmaps_base=32)


# ---- VAE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["bare", "lightning"])
def test_vae_antixk_formats_load_and_match(tmp_path, wrap):
    torch.manual_seed(0)
    ref = _antixk_vae()
    sd = ref.state_dict()
    obj = sd if wrap == "bare" else {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.5.10",
        "state_dict": {"model." + k: v for k, v in sd.items()},
    }
    path = tmp_path / "vae.ckpt"
    torch.save(obj, path)
    assert detect_format(read_checkpoint(path)) == "vae-antixk"
    g = load_checkpoint(path)
    assert g.meta.config == {"resolution": 32, "latent_dim": 8, "hidden_dims": [4, 8, 8], "channels": 3, "native_range": [-1.0, 1.0]}
    z = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(g({"z": z}), (ref.decode(z) + 1) / 2, rtol=0, atol=1e-5)
        # AntixK's current data pipeline trains the tanh output on [0, 1] images
        g01 = load_checkpoint(path, native_range=(0, 1))
        torch.testing.assert_close(g01({"z": z}), ref.decode(z).clamp(0, 1), rtol=0, atol=1e-5)
        mu, logvar = g.encode(torch.rand(2, 3, 32, 32))
        assert mu.shape == logvar.shape == (2, 8)


def test_vae_bad_checkpoint_names_first_mismatching_key(tmp_path):
    torch.manual_seed(0)
    sd = dict(_antixk_vae().state_dict())
    sd["decoder.0.0.weight"] = torch.randn(8, 5, 3, 3)
    path = tmp_path / "vae.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="shape mismatch at 'decoder.0.0.weight'"):
        load_checkpoint(path)
    sd = dict(_antixk_vae().state_dict())
    sd["fc_mu.weight"] = torch.randn(8, 100)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="shape mismatch at 'fc_mu.weight'"):
        load_checkpoint(path)


def test_vae_encoder_init():
    g = tiny_prior("vae")
    x = torch.rand(2, 3, 32, 32)
    for c in g.cut_points:
        st = g.init_from_encoder(x, c)
        assert {k: tuple(v.shape[1:]) for k, v in st.items()} == g.state_shapes(c)
        assert all(not v.requires_grad for v in st.values())
        with torch.no_grad():
            mu, _ = g.encode(x * 2 - 1)
            torch.testing.assert_close(g.tail(st, c), g({"z": mu}), rtol=0, atol=1e-6)
    with pytest.raises(BadInput, match="expects images of shape"):
        g.init_from_encoder(torch.rand(2, 3, 64, 64))


def test_vae_config_errors():
    with pytest.raises(BadInput, match="not divisible"):
        VAE(resolution=32, hidden_dims=[4, 4, 4, 4, 4, 4])
    with pytest.raises(BadInput, match="native_range"):
        VAE(native_range=(1, 0))


# ---- BEGAN ----------------------------------------------------------------------------------


def test_began_cut_exposes_features_and_skip():
    g = tiny_prior("began")
    n = registry.get("began").tiny["n"]
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    assert z["z"].abs().max() <= 1 and g.meta.latent_kind == "uniform"
    with torch.no_grad():
        st1 = g.head(z, 1)
        assert torch.equal(st1["h"], st1["skip"])  # both are h0 in the plain forward pass
        for c in g.cut_points[1:]:
            st = g.head(z, c)
            assert set(st) == {"h", "skip"} and tuple(st["skip"].shape[1:]) == (n, 8, 8)
            # the skip input is used by the tail at every cut: perturbing it alone changes G
            moved = dict(st, skip=st["skip"] + 0.5)
            assert (g.tail(moved, c) - g.tail(st, c)).abs().max() > 1e-4


def test_began_matches_direct_forward():
    """The block decomposition equals a plain sequential BEGAN decoder with skip connections."""
    g = tiny_prior("began")
    z = g.sample_latent(2, torch.Generator().manual_seed(3))["z"]
    with torch.no_grad():
        h0 = g.fc(z).view(2, g.n, 8, 8)
        x = g.stages[0](h0)
        for stage in g.stages[1:]:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = stage(torch.cat([x, F.interpolate(h0, size=x.shape[-2:], mode="nearest")], 1))
        torch.testing.assert_close(g({"z": z}), ((g.to_rgb(x) + 1) / 2).clamp(0, 1), rtol=0, atol=1e-6)
    for r, k in ((32, 3), (64, 4), (128, 5)):
        assert len(BEGAN(resolution=r, z_dim=4, n=2).cut_points) == k + 1
    with pytest.raises(BadInput, match="resolution must be one of"):
        BEGAN(resolution=16)


# ---- the project's own format -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["began", "vae", "pggan"])
def test_own_format_round_trip(tmp_path, arch):
    g = tiny_prior(arch)
    path = save_checkpoint(g, tmp_path / f"{arch}.pt")
    h = load_checkpoint(path)
    assert type(h) is type(g) and h.meta.config == g.meta.config
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(h(z), g(z), rtol=0, atol=0)
    obj = read_checkpoint(path)
    name, t = next((k, v) for k, v in obj["state_dict"].items() if v.dim() >= 2)
    obj["state_dict"][name] = torch.zeros(t.shape[0] + 1, *t.shape[1:])
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=f"shape mismatch at '{name}'"):
        load_checkpoint(path)
