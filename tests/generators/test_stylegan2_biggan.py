"""StyleGAN2 (rosinality) and BigGAN-deep (HF pytorch-pretrained-BigGAN): public checkpoint formats,
exact key names/shapes, independent reference forwards, state semantics.

The expected key -> shape tables below are written from the public code (rosinality
stylegan2-pytorch ``model.py``/``convert_weight.py``; HF ``pytorch_pretrained_biggan/model.py``,
``config.py``, ``convert_tf_to_pytorch.py``), not from our modules, so a naming or shape slip in
our modules fails these tests. Synthetic checkpoints are built from these tables.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from recon_core.errors import BadInput, CheckpointError
from recon_core.generators.biggan import BigGAN, interpolate_stats
from recon_core.generators.checkpoints import detect_format, from_object, load_checkpoint, save_checkpoint
from recon_core.generators.stylegan2 import StyleGAN2, upfirdn2d

# ---- public layouts ---------------------------------------------------------------------------


def rosinality_channels(size, channel_multiplier=2):
    """rosinality Generator.channels, restricted to 4..size."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {r: c for r, c in table.items() if r <= size}


def rosinality_key_shapes(size, style_dim, n_mlp, channels):
    """key -> shape of rosinality's ``Generator(size, style_dim, n_mlp).state_dict()``."""
    S = style_dim
    out = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm
        out[f"style.{i}.weight"] = (S, S)
        out[f"style.{i}.bias"] = (S,)
    out["input.input"] = (1, channels[4], 4, 4)

    def styled(p, cin, cout, up):
        out[f"{p}.conv.weight"] = (1, cout, cin, 3, 3)
        out[f"{p}.conv.modulation.weight"] = (cin, S)
        out[f"{p}.conv.modulation.bias"] = (cin,)
        if up:
            out[f"{p}.conv.blur.kernel"] = (4, 4)
        out[f"{p}.noise.weight"] = (1,)
        out[f"{p}.activate.bias"] = (cout,)

    def to_rgb(p, cin, up):
        if up:
            out[f"{p}.upsample.kernel"] = (4, 4)
        out[f"{p}.conv.weight"] = (1, 3, cin, 1, 1)
        out[f"{p}.conv.modulation.weight"] = (cin, S)
        out[f"{p}.conv.modulation.bias"] = (cin,)
        out[f"{p}.bias"] = (1, 3, 1, 1)

    styled("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    log_size = int(math.log2(size))
    cin = channels[4]
    for i in range(3, log_size + 1):
        cout = channels[2**i]
        styled(f"convs.{2 * (i - 3)}", cin, cout, True)
        styled(f"convs.{2 * (i - 3) + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{i - 3}", cout, True)
        cin = cout
    for i in range((log_size - 2) * 2 + 1):
        r = 2 ** ((i + 5) // 2)
        out[f"noises.noise_{i}"] = (1, 1, r, r)
    return out


def fir_kernel_x4():
    """rosinality make_kernel([1, 3, 3, 1]) * 2**2 (the upsampling blur)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum() * 4


def rosinality_state_dict(shapes, seed=0):
    """Random tensors with the public shapes (FIR kernels set to their fixed values)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("kernel"):
            sd[k] = fir_kernel_x4()
        elif k.endswith("modulation.bias"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif k.endswith("noise.weight"):
            sd[k] = 0.2 + 0.1 * torch.rand(shape, generator=g)
        elif k.startswith("style.") and k.endswith("weight"):
            sd[k] = torch.randn(shape, generator=g) * 100  # lr_mul 0.01 layers store weights x 100
        elif k.endswith("bias"):
            sd[k] = 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = torch.randn(shape, generator=g)
    return sd


HF_BIGGAN_DEEP_128 = {  # convert_tf_to_pytorch.BigGAN128, as saved to config.json
    "output_dim": 128, "z_dim": 128, "class_embed_dim": 128, "channel_width": 128, "num_classes": 1000,
    "layers": [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
               [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]],
    "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51,
}

#: a tiny config HF's own model accepts: it needs the first in_mult 16 (gen_z is 4*4*16*ch wide),
#: the last out_mult 1 (generator.bn has ch features) and halvings only (the skip keeps in/2)
HF_TINY = {
    "output_dim": 16, "z_dim": 4, "class_embed_dim": 4, "channel_width": 4, "num_classes": 5,
    "layers": [[False, 16, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]], "attention_layer_position": 2, "eps": 1e-4,
    "n_stats": 5,
}


def hf_biggan_key_shapes(cfg):
    """key -> shape of HF ``BigGAN(config).state_dict()`` (spectral norm: weight_orig, weight_u,
    weight_v; BigGAN-deep: cond = [z, embed] of size 2 * z_dim)."""
    ch, z, ns = cfg["channel_width"], cfg["z_dim"], cfg["n_stats"]
    cond = 2 * z
    out = {"embeddings.weight": (z, cfg["num_classes"])}

    def sn(p, shape, bias):
        out[f"{p}.weight_orig"] = shape
        if bias:
            out[f"{p}.bias"] = (shape[0],)
        out[f"{p}.weight_u"] = (shape[0],)
        out[f"{p}.weight_v"] = (math.prod(shape[1:]),)

    def bn(p, c):
        out[f"{p}.running_means"] = (ns, c)
        out[f"{p}.running_vars"] = (ns, c)
        sn(f"{p}.scale", (c, cond), False)
        sn(f"{p}.offset", (c, cond), False)

    sn("generator.gen_z", (4 * 4 * 16 * ch, cond), True)
    idx = 0
    for i, (_, a, b) in enumerate(cfg["layers"]):
        if i == cfg["attention_layer_position"]:
            p, c = f"generator.layers.{idx}", a * ch
            sn(f"{p}.snconv1x1_theta", (c // 8, c, 1, 1), False)
            sn(f"{p}.snconv1x1_phi", (c // 8, c, 1, 1), False)
            sn(f"{p}.snconv1x1_g", (c // 2, c, 1, 1), False)
            sn(f"{p}.snconv1x1_o_conv", (c, c // 2, 1, 1), False)
            out[f"{p}.gamma"] = (1,)
            idx += 1
        p, cin, cout = f"generator.layers.{idx}", a * ch, b * ch
        mid = cin // 4
        bn(f"{p}.bn_0", cin)
        sn(f"{p}.conv_0", (mid, cin, 1, 1), True)
        bn(f"{p}.bn_1", mid)
        sn(f"{p}.conv_1", (mid, mid, 3, 3), True)
        bn(f"{p}.bn_2", mid)
        sn(f"{p}.conv_2", (mid, mid, 3, 3), True)
        bn(f"{p}.bn_3", mid)
        sn(f"{p}.conv_3", (cout, mid, 1, 1), True)
        idx += 1
    out["generator.bn.weight"] = (ch,)
    out["generator.bn.bias"] = (ch,)
    out["generator.bn.running_means"] = (ns, ch)
    out["generator.bn.running_vars"] = (ns, ch)
    sn("generator.conv_to_rgb", (ch, ch, 3, 3), True)
    return out


def hf_biggan_state_dict(shapes, seed=0, power_iters=3):
    """Random tensors with the public shapes; u, v from a few power iterations (as after
    conversion), positive variances, non-zero attention gamma."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith(("weight_u", "weight_v")):
            continue
        if k.endswith("running_vars"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("running_means"):
            sd[k] = 0.1 * torch.randn(shape, generator=g)
        elif k.endswith("gamma"):
            sd[k] = torch.full(shape, 0.7)
        elif k.endswith("bias"):
            sd[k] = 0.05 * torch.randn(shape, generator=g)
        elif k == "generator.bn.weight":
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    for k, shape in shapes.items():
        if k.endswith("weight_u"):
            w = sd[k[: -len("u")] + "orig"].flatten(1)
            u = F.normalize(torch.randn(w.shape[0], generator=g), dim=0)
            v = F.normalize(torch.randn(w.shape[1], generator=g), dim=0)
            for _ in range(power_iters):
                v = F.normalize(w.t() @ u, dim=0)
                u = F.normalize(w @ v, dim=0)
            sd[k], sd[k[:-1] + "v"] = u, v
    return sd


def write_hf_dir(path, cfg, sd):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    torch.save(sd, path / "pytorch_model.bin")
    return path


def shapes_of(module_or_sd):
    sd = module_or_sd if isinstance(module_or_sd, dict) else module_or_sd.state_dict()
    return {k: tuple(v.shape) for k, v in sd.items()}


# ---- independent reference forwards, written from the public code ----------------------------


def _flrelu(x, b):
    return F.leaky_relu(x + b.view(1, -1, *([1] * (x.dim() - 2))), 0.2) * math.sqrt(2)


def _fir(x, k, pad0, pad1, up=1):
    """upfirdn2d(x, k, up, down=1, pad) by zero insertion, padding and a depthwise true conv."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    kk = torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kk, groups=c)


def _modconv_fused(x, w, sd, p, demod=True, up=False):
    """rosinality's fused path: per-sample modulated weights applied as a grouped conv."""
    n, cin, h, wd = x.shape
    weight = sd[f"{p}.weight"]
    cout, k = weight.shape[1], weight.shape[-1]
    mw, mb = sd[f"{p}.modulation.weight"], sd[f"{p}.modulation.bias"]
    style = F.linear(w, mw / math.sqrt(mw.shape[1]), mb).view(n, 1, cin, 1, 1)
    wt = weight / math.sqrt(cin * k * k) * style
    if demod:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(n, cout, 1, 1, 1)
    if up:
        wt = wt.transpose(1, 2).reshape(n * cin, cout, k, k)
        out = F.conv_transpose2d(x.reshape(1, n * cin, h, wd), wt, stride=2, groups=n)
        out = out.view(n, cout, out.shape[-2], out.shape[-1])
        return _fir(out, sd[f"{p}.blur.kernel"], 1, 1)
    out = F.conv2d(x.reshape(1, n * cin, h, wd), wt.reshape(n * cout, cin, k, k), padding=k // 2, groups=n)
    return out.view(n, cout, h, wd)


def rosinality_reference(sd, z, n_mlp, latent_avg=None, truncation=1.0):
    """rosinality Generator.forward([z], randomize_noise=False, truncation, truncation_latent)."""
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        wgt, b = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = _flrelu(F.linear(x, wgt * 0.01 / math.sqrt(wgt.shape[1])), b * 0.01)
    if truncation < 1:
        x = latent_avg + truncation * (x - latent_avg)
    n = z.shape[0]
    noise = lambda i: sd[f"noises.noise_{i}"]  # noqa: E731

    def styled(h, w, p, i, up=False):
        h = _modconv_fused(h, w, sd, f"{p}.conv", up=up)
        return _flrelu(h + sd[f"{p}.noise.weight"] * noise(i), sd[f"{p}.activate.bias"])

    def to_rgb(h, w, p, skip):
        out = _modconv_fused(h, w, sd, f"{p}.conv", demod=False) + sd[f"{p}.bias"]
        return out if skip is None else out + _fir(skip, sd[f"{p}.upsample.kernel"], 2, 1, up=2)

    h = sd["input.input"].repeat(n, 1, 1, 1)
    h = styled(h, x, "conv1", 0)
    skip = to_rgb(h, x, "to_rgb1", None)
    j = 0
    while f"to_rgbs.{j}.bias" in sd:
        h = styled(h, x, f"convs.{2 * j}", 2 * j + 1, up=True)
        h = styled(h, x, f"convs.{2 * j + 1}", 2 * j + 2)
        skip = to_rgb(h, x, f"to_rgbs.{j}", skip)
        j += 1
    return skip


def _sn(sd, p):
    w = sd[f"{p}.weight_orig"]
    return w / torch.dot(sd[f"{p}.weight_u"], w.flatten(1) @ sd[f"{p}.weight_v"])


def _hf_stats(t, truncation):
    coef, start = math.modf(truncation / (1.0 / (t.shape[0] - 1)))
    start = int(start)
    return t[start] * coef + t[start + 1] * (1 - coef) if coef != 0.0 else t[start]


def hf_biggan_reference(sd, cfg, z, class_vec, truncation):
    """HF BigGAN.forward(z, class_label, truncation) in eval mode, from the public model.py."""
    eps = cfg["eps"]

    def bn(x, p, cond=None):
        m = _hf_stats(sd[f"{p}.running_means"], truncation)[None, :, None, None]
        v = _hf_stats(sd[f"{p}.running_vars"], truncation)[None, :, None, None]
        if cond is None:
            return F.batch_norm(x, m.flatten(), v.flatten(), sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, eps)
        gain = 1 + F.linear(cond, _sn(sd, f"{p}.scale"))[:, :, None, None]
        return (x - m) / torch.sqrt(v + eps) * gain + F.linear(cond, _sn(sd, f"{p}.offset"))[:, :, None, None]

    def conv(x, p, pad=0):
        return F.conv2d(x, _sn(sd, p), sd.get(f"{p}.bias"), padding=pad)

    cond = torch.cat([z, class_vec @ sd["embeddings.weight"].t()], 1)
    ch = cfg["channel_width"]
    x = F.linear(cond, _sn(sd, "generator.gen_z"), sd["generator.gen_z.bias"])
    x = x.view(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)
    idx = 0
    for i, (up, a, b) in enumerate(cfg["layers"]):
        if i == cfg["attention_layer_position"]:
            p = f"generator.layers.{idx}"
            n, c, h, w = x.shape
            theta = conv(x, f"{p}.snconv1x1_theta").view(n, c // 8, h * w)
            phi = F.max_pool2d(conv(x, f"{p}.snconv1x1_phi"), 2).view(n, c // 8, h * w // 4)
            attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), -1)
            gg = F.max_pool2d(conv(x, f"{p}.snconv1x1_g"), 2).view(n, c // 2, h * w // 4)
            o = conv(torch.bmm(gg, attn.permute(0, 2, 1)).view(n, c // 2, h, w), f"{p}.snconv1x1_o_conv")
            x = x + sd[f"{p}.gamma"] * o
            idx += 1
        p = f"generator.layers.{idx}"
        x0 = x
        x = conv(F.relu(bn(x, f"{p}.bn_0", cond)), f"{p}.conv_0")
        x = F.relu(bn(x, f"{p}.bn_1", cond))
        if up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = conv(x, f"{p}.conv_1", 1)
        x = conv(F.relu(bn(x, f"{p}.bn_2", cond)), f"{p}.conv_2", 1)
        x = conv(F.relu(bn(x, f"{p}.bn_3", cond)), f"{p}.conv_3")
        if a != b:
            x0 = x0[:, : x0.shape[1] // 2]
        if up:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        x = x + x0
        idx += 1
    x = conv(F.relu(bn(x, "generator.bn")), "generator.conv_to_rgb", 1)
    return torch.tanh(x[:, :3])


# ---- StyleGAN2 / rosinality ---------------------------------------------------------------------

TINY_SG = {"size": 16, "style_dim": 8, "n_mlp": 2}  # rosinality Generator(size, style_dim, n_mlp)
TINY_SG_CH = {4: 8, 8: 8, 16: 4}


def test_upfirdn2d_matches_definition():
    torch.manual_seed(0)
    x, k = torch.randn(2, 3, 5, 4), torch.rand(4, 4)
    for up, pad in ((1, (1, 1)), (2, (2, 1)), (2, (1, 1)), (1, (-1, 2))):
        got = upfirdn2d(x, k, up=up, pad=pad)
        # definition: y[i, j] = sum_{a, b} k[a, b] * xp[i + kh - 1 - a, j + kw - 1 - b]
        xu = torch.zeros(2, 3, 5 * up, 4 * up)
        xu[:, :, ::up, ::up] = x
        xp = F.pad(xu, [pad[0], pad[1], pad[0], pad[1]])
        oh, ow = xp.shape[2] - 3, xp.shape[3] - 3
        ref = torch.zeros(2, 3, oh, ow)
        for a in range(4):
            for b in range(4):
                ref += k[a, b] * xp[:, :, 3 - a: 3 - a + oh, 3 - b: 3 - b + ow]
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("wrap", ["g_ema", "bare", "module"])
def test_rosinality_tiny_loads_and_matches_reference(tmp_path, wrap):
    shapes = rosinality_key_shapes(channels=TINY_SG_CH, **TINY_SG)
    sd = rosinality_state_dict(shapes)
    avg = torch.randn(8) * 0.1
    obj = {"g_ema": sd, "latent_avg": avg} if wrap == "g_ema" else sd
    if wrap == "module":
        obj = {"module." + k: v for k, v in sd.items()}
    torch.save(obj, tmp_path / "sg.pt")
    assert detect_format(torch.load(tmp_path / "sg.pt", weights_only=True)) == "rosinality"
    g = load_checkpoint(tmp_path / "sg.pt")
    assert not g.training
    assert g.meta.architecture == "stylegan2" and g.meta.resolution == 16
    assert {k: g.meta.config[k] for k in ("resolution", "style_dim", "n_mlp", "channel_max")} == {
        "resolution": 16, "style_dim": 8, "n_mlp": 2, "channel_max": 8}
    assert shapes_of(g) == {**shapes, "latent_avg": (8,)}
    # the adapter built directly and loaded with the same tensors gives the same images
    direct = StyleGAN2(**g.meta.config).eval()
    direct.load_state_dict({**sd, "latent_avg": g.latent_avg})
    z = g.sample_latent(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g(z)
        torch.testing.assert_close(direct(z), x, rtol=0, atol=0)
        # and equal the independent transcription of rosinality's forward (fused modconv path)
        ref = rosinality_reference(sd, z["z"], n_mlp=2)
        torch.testing.assert_close(x, ((ref + 1) / 2).clamp(0, 1), rtol=0, atol=2e-5)
    if wrap == "g_ema":
        torch.testing.assert_close(g.latent_avg, avg)
    else:  # no latent_avg stored: estimated reproducibly from the mapping network
        torch.testing.assert_close(g.latent_avg, g.mean_w(4096, torch.Generator().manual_seed(0)))


def test_rosinality_truncation_uses_latent_avg(tmp_path):
    sd = rosinality_state_dict(rosinality_key_shapes(channels=TINY_SG_CH, **TINY_SG), seed=1)
    avg = torch.randn(8)
    torch.save({"g_ema": sd, "latent_avg": avg}, tmp_path / "sg.pt")
    g = load_checkpoint(tmp_path / "sg.pt", truncation=0.5)
    assert g.meta.config["truncation"] == 0.5
    z = g.sample_latent(2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = g.head(z, 1)["w"]
        w_full = g.mapping(z["z"])
        torch.testing.assert_close(w, (avg + 0.5 * (w_full - avg)).unsqueeze(1).expand_as(w))
        ref = rosinality_reference(sd, z["z"], n_mlp=2, latent_avg=avg, truncation=0.5)
        torch.testing.assert_close(g(z), ((ref + 1) / 2).clamp(0, 1), rtol=0, atol=2e-5)
    m1, m2 = g.mean_w(256, torch.Generator().manual_seed(0)), g.mean_w(256, torch.Generator().manual_seed(0))
    assert m1.shape == (8,) and torch.equal(m1, m2)


def test_rosinality_full_size_256_keys_and_shapes():
    """FFHQ-sized 256 px generator (512 style, 8 mapping layers, channel_multiplier 2), built on
    the fly from the public key table and loaded through the rosinality loader."""
    shapes = rosinality_key_shapes(256, 512, 8, rosinality_channels(256, 2))
    # mapping, input, conv1 (5), to_rgb1 (4), 6 blocks x (6 + 5 + 5), 13 noises
    assert len(shapes) == 8 * 2 + 1 + 5 + 4 + 6 * 16 + 13
    assert shapes["conv1.noise.weight"] == (1,) and shapes["noises.noise_0"] == (1, 1, 4, 4)
    assert shapes["convs.0.conv.blur.kernel"] == (4, 4) and shapes["convs.10.conv.weight"] == (1, 128, 256, 3, 3)
    sd = {k: (fir_kernel_x4() if k.endswith("kernel") else torch.randn(s)) for k, s in shapes.items()}
    g = from_object({"g_ema": sd, "latent_avg": torch.randn(512)})
    assert g.meta.config == {"resolution": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 512,
                             "channel_base": 16384, "lr_mlp": 0.01, "truncation": 1.0, "noise_init": 0.0}
    own = shapes_of(g)
    assert own.pop("latent_avg") == (512,)
    for k, s in shapes.items():  # key by key, so a failure names the key
        assert own.get(k) == s, k
    assert set(own) == set(shapes)
    assert g.n_latent == 14 and g.state_shapes(1)["w"] == (14, 512) and len(g.cut_points) == 8
    # the cheap front of the network runs with these weights (the full 256 px pass takes seconds)
    with torch.no_grad():
        st = g.head(g.sample_latent(1, torch.Generator().manual_seed(0)), 3)
    assert {k: tuple(v.shape[1:]) for k, v in st.items()} == g.state_shapes(3)
    assert st["h"].shape[1:] == (512, 8, 8) and st["rgb"].shape[1:] == (3, 8, 8)


def test_rosinality_errors(tmp_path):
    shapes = rosinality_key_shapes(channels=TINY_SG_CH, **TINY_SG)
    sd = rosinality_state_dict(shapes)
    bad = dict(sd)
    bad["to_rgbs.1.bias"] = torch.zeros(1, 3, 1, 2)
    bad["conv1.activate.bias"] = torch.zeros(5)  # earlier in the module order: named first
    torch.save({"g_ema": bad}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'conv1.activate.bias'"):
        load_checkpoint(tmp_path / "bad.pt")
    # files without any noise buffer (rosinality's early pretrained models) get seeded noise...
    no_noise = {k: v for k, v in sd.items() if not k.startswith("noises.")}
    torch.save({"g_ema": no_noise}, tmp_path / "no_noise.pt")
    a, b = load_checkpoint(tmp_path / "no_noise.pt"), load_checkpoint(tmp_path / "no_noise.pt")
    assert torch.equal(a.noises.noise_4, b.noises.noise_4) and a.noises.noise_4.shape == (1, 1, 16, 16)
    # ... but a partly missing set is an error naming the first missing key
    missing = {k: v for k, v in sd.items() if k != "noises.noise_2"}
    torch.save({"g_ema": missing}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'noises.noise_2'"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"g_ema": {**sd, "extra.weight": torch.zeros(1)}}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key 'extra.weight'"):
        load_checkpoint(tmp_path / "extra.pt")
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(7)}, tmp_path / "avg.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'latent_avg'"):
        load_checkpoint(tmp_path / "avg.pt")
    torch.save({"g_ema": sd}, tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match=r"StyleGAN2 generator \(rosinality\), not 'biggan'"):
        load_checkpoint(tmp_path / "ok.pt", arch="biggan")
    with pytest.raises(BadInput, match="truncation must be in"):
        StyleGAN2(resolution=16, truncation=0)


def test_rosinality_own_format_round_trip(tmp_path):
    sd = rosinality_state_dict(rosinality_key_shapes(channels=TINY_SG_CH, **TINY_SG), seed=2)
    torch.save({"g_ema": sd, "latent_avg": torch.randn(8)}, tmp_path / "sg.pt")
    a = load_checkpoint(tmp_path / "sg.pt", truncation=0.7)
    b = load_checkpoint(save_checkpoint(a, tmp_path / "own.pt"))
    assert detect_format(torch.load(tmp_path / "own.pt", weights_only=True)) == "recon"
    assert b.meta.config == a.meta.config and torch.equal(a.latent_avg, b.latent_avg)
    z = a.sample_latent(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(z), b(z))


def _raw_tail(g, st, c):
    """tail without the [0, 1] mapping/clamp: the native image."""
    for i in range(c, len(g.blocks)):
        st = g.run_block(i, st)
    return st["img"]


@pytest.mark.parametrize("c", [2, 3])
def test_stylegan2_rgb_skip_is_carried_in_the_state(c):
    """Cutting after block c-1 keeps the rgb skip: tail(head) == forward, and a change of the
    state's rgb reaches the image exactly through the x2 FIR upsampling of each later block."""
    sd = rosinality_state_dict(rosinality_key_shapes(channels=TINY_SG_CH, **TINY_SG), seed=4)
    g = from_object({"g_ema": sd})
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        st = g.head(z, c)
        assert set(st) >= {"h", "rgb", "w"} and st["rgb"].abs().sum() > 0
        torch.testing.assert_close(_raw_tail(g, dict(st), c), rosinality_reference(sd, z["z"], n_mlp=2), rtol=0, atol=2e-5)
        delta = torch.randn_like(st["rgb"])
        moved = _raw_tail(g, {**st, "rgb": st["rgb"] + delta}, c) - _raw_tail(g, dict(st), c)
        expect = delta
        for _ in range(len(g.blocks) - c):
            expect = upfirdn2d(expect, fir_kernel_x4(), up=2, pad=(2, 1))
        torch.testing.assert_close(moved, expect, rtol=0, atol=1e-4)
        # dropping the skip (the reference ILO bug) changes the image
        assert (_raw_tail(g, {**st, "rgb": torch.zeros_like(st["rgb"])}, c) - _raw_tail(g, dict(st), c)).abs().max() > 1e-2


# ---- BigGAN / HF --------------------------------------------------------------------------------


def test_hf_stats_interpolation_follows_hf():
    t = torch.arange(5.0)[:, None] * torch.ones(1, 2)  # step 0.25
    torch.testing.assert_close(interpolate_stats(t, 1.0), t[4])
    torch.testing.assert_close(interpolate_stats(t, 0.5), t[2])
    # HF weighs the lower entry by the fractional part: 0.3 / 0.25 = 1.2 -> 0.2 * t[1] + 0.8 * t[2]
    torch.testing.assert_close(interpolate_stats(t, 0.3), 0.2 * t[1] + 0.8 * t[2])


@pytest.mark.parametrize("truncation", [1.0, 0.4, 0.55])
def test_hf_biggan_tiny_dir_loads_and_matches_reference(tmp_path, truncation):
    shapes = hf_biggan_key_shapes(HF_TINY)
    sd = hf_biggan_state_dict(shapes)
    path = write_hf_dir(tmp_path / "biggan-tiny", HF_TINY, sd)
    g = load_checkpoint(path, truncation=truncation)
    assert not g.training and g.meta.architecture == "biggan" and g.meta.resolution == 16
    assert shapes_of(g) == shapes
    direct = BigGAN(**{k: v for k, v in HF_TINY.items() if k != "output_dim"}, truncation=truncation).eval()
    direct.load_state_dict(sd)
    z = g.sample_latent(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g(z)
        torch.testing.assert_close(direct(z), x, rtol=0, atol=0)
        # independent transcription of HF's forward, with a one-hot class vector
        classes = torch.tensor([0, 3, 4])
        zz = g.truncated_z(3, torch.Generator().manual_seed(1))
        ref = hf_biggan_reference(sd, HF_TINY, zz, F.one_hot(classes, 5).float(), truncation)
        st = {"z": zz, "embed": g.class_embedding(classes)}
        torch.testing.assert_close(g(st), (ref + 1) / 2, rtol=0, atol=2e-5)
    assert zz.abs().max() <= 2 * truncation


def test_hf_biggan_full_size_deep128_keys_and_shapes():
    """biggan-deep-128 (HF config values) built on the fly from the public key table."""
    shapes = hf_biggan_key_shapes(HF_BIGGAN_DEEP_128)
    assert shapes["embeddings.weight"] == (128, 1000)
    assert shapes["generator.gen_z.weight_orig"] == (32768, 256)
    assert shapes["generator.layers.8.snconv1x1_theta.weight_orig"] == (32, 256, 1, 1)
    assert shapes["generator.layers.0.bn_0.running_means"] == (51, 2048)
    assert shapes["generator.conv_to_rgb.weight_orig"] == (128, 128, 3, 3)
    sd = hf_biggan_state_dict(shapes, power_iters=1)
    g = from_object({"hf_biggan_config": HF_BIGGAN_DEEP_128, "hf_biggan_state_dict": sd}, truncation=0.4, class_idx=207)
    own = shapes_of(g)
    for k, s in shapes.items():
        assert own.get(k) == s, k
    assert set(own) == set(shapes)
    assert g.meta.resolution == 128 and len(g.cut_points) == 12
    assert g.state_shapes(7) == {"h": (512, 32, 32), "cond": (256,)}
    z = g.sample_latent(1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z["embed"], sd["embeddings.weight"][:, 207][None])
    with torch.no_grad():
        x = g(z)
    assert x.shape == (1, 3, 128, 128) and torch.isfinite(x).all()


def test_hf_biggan_errors(tmp_path):
    shapes = hf_biggan_key_shapes(HF_TINY)
    sd = hf_biggan_state_dict(shapes)
    bad = dict(sd)
    bad["generator.conv_to_rgb.bias"] = torch.zeros(3)
    bad["generator.layers.0.bn_1.running_vars"] = torch.ones(5, 7)  # earlier: named first
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'generator.layers.0.bn_1.running_vars'"):
        load_checkpoint(write_hf_dir(tmp_path / "bad", HF_TINY, bad))
    with pytest.raises(CheckpointError, match=r"missing key 'generator.layers.2.gamma'"):
        load_checkpoint(write_hf_dir(tmp_path / "noattn", HF_TINY, {k: v for k, v in sd.items() if k != "generator.layers.2.gamma"}))
    # a config that disagrees with the weights (attention elsewhere) names the first wrong key
    with pytest.raises(CheckpointError, match=r"missing key 'generator.layers.2.bn_0.running_means'"):
        load_checkpoint(write_hf_dir(tmp_path / "moved", {**HF_TINY, "attention_layer_position": 3}, sd))
    # the bare .bin is recognised, and refused with a pointer to the directory
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="need their config.json: pass the directory"):
        load_checkpoint(tmp_path / "pytorch_model.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a .recon train-rtil. run .checkpoint.pt. nor an HF BigGAN model"):
        load_checkpoint(tmp_path / "empty")
    d = write_hf_dir(tmp_path / "badjson", HF_TINY, sd)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="output_dim 32"):
        load_checkpoint(write_hf_dir(tmp_path / "dim", {**HF_TINY, "output_dim": 32}, sd))
    with pytest.raises(CheckpointError, match=r"BigGAN generator \(HF\), not 'stylegan2'"):
        load_checkpoint(write_hf_dir(tmp_path / "ok", HF_TINY, sd), arch="stylegan2")
    with pytest.raises(BadInput, match="truncation must be in"):
        BigGAN(**{k: v for k, v in HF_TINY.items() if k != "output_dim"}, truncation=1.5)


def test_hf_biggan_without_weight_v_derives_it(tmp_path):
    sd = hf_biggan_state_dict(hf_biggan_key_shapes(HF_TINY), power_iters=0)
    no_v = {k: v for k, v in sd.items() if not k.endswith("weight_v")}
    g = load_checkpoint(write_hf_dir(tmp_path / "m", HF_TINY, no_v))
    torch.testing.assert_close(g.generator.gen_z.weight_v, F.normalize(sd["generator.gen_z.weight_orig"].t() @ sd["generator.gen_z.weight_u"], dim=0))


def test_hf_biggan_own_format_round_trip(tmp_path):
    sd = hf_biggan_state_dict(hf_biggan_key_shapes(HF_TINY), seed=3)
    a = load_checkpoint(write_hf_dir(tmp_path / "m", HF_TINY, sd), truncation=0.3, class_idx=2)
    b = load_checkpoint(save_checkpoint(a, tmp_path / "own.pt"))
    assert b.meta.config == a.meta.config and b.class_idx == 2 and b.truncation == 0.3
    z = a.sample_latent(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(z), b(z))


def test_biggan_eval_is_deterministic_and_spectral_norm_does_not_iterate(tmp_path):
    sd = hf_biggan_state_dict(hf_biggan_key_shapes(HF_TINY), power_iters=1)
    g = load_checkpoint(write_hf_dir(tmp_path / "m", HF_TINY, sd))
    buffers = {k: v.clone() for k, v in g.state_dict().items()}
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x1, x2 = g(z), g(z)
    assert torch.equal(x1, x2)
    assert all(torch.equal(v, buffers[k]) for k, v in g.state_dict().items())
    # eval weight == torch's spectral_norm in eval mode with the same stored u, v
    ref = torch.nn.utils.spectral_norm(torch.nn.Linear(8, 4 * 4 * 16 * 4))
    ref.load_state_dict({k.removeprefix("generator.gen_z."): v for k, v in sd.items() if k.startswith("generator.gen_z.")})
    ref.eval()
    with torch.no_grad():
        ref(torch.zeros(1, 8))
        torch.testing.assert_close(g.generator.gen_z.weight(), ref.weight, rtol=1e-6, atol=1e-7)
    # training mode iterates (as torch does), which is why adapters are used in eval mode
    g.train()
    with torch.no_grad():
        g(z)
    assert not torch.equal(g.generator.gen_z.weight_u, buffers["generator.gen_z.weight_u"])


def test_biggan_class_selection_and_init():
    g = BigGAN(**{k: v for k, v in HF_TINY.items() if k != "output_dim"}).eval()
    with pytest.raises(BadInput, match=r"class must be an integer in 0..4"):
        g.set_class(5)
    g.set_class(3)
    assert g.meta.config["class_idx"] == 3
    e = g.embeddings.weight[:, 3]
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z["embed"], e.expand(2, -1))
    st0 = g.init_state(0, 2, "cn", torch.Generator().manual_seed(0))
    torch.testing.assert_close(st0["embed"], e.expand(2, -1))
    assert st0["z"].abs().max() <= 1
    st = g.init_state(3, 2, "zero")
    assert st["cond"][:, :4].abs().max() == 0
    torch.testing.assert_close(st["cond"][:, 4:], e.expand(2, -1))
    g.set_class(None)
    z = g.sample_latent(64, torch.Generator().manual_seed(0))
    assert len({tuple(v.tolist()) for v in z["embed"]}) > 1  # random classes per sample
