"""The architecture registry (every entry complete and consistent, the papers' settings as the
solvers had them) and the roles of the state entries, swept over every architecture."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recon_core.errors import UnknownName
from recon_core.generators import registry
from recon_core.generators.base import ROLES, BlockInfo
from recon_core.generators.checkpoints import FORMATS
from recon_core.solvers import iagan, make_config, surgery
from recon_core.training.discriminators import build_discriminator
from recon_core.training.objectives import OBJECTIVES
from tests.conftest import tiny_prior

ARCHS = registry.names()

#: the solvers' tables before they moved into the registry (surgery: (lr, cut); iagan: fields)
OLD_SURGERY = {"dcgan": (0.1, 1), "began": (1.0, 2), "vae": (1.0, 1), "biggan": (1.5, 7)}
OLD_IAGAN = {
    "dcgan": {"csgm_steps": 1600, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4},
    "began": {"csgm_steps": 1600, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4},
    "vae": {"csgm_steps": 1000, "steps": 600, "lr_z": 1e-4, "lr_theta": 1e-4},
    "pggan": {"csgm_steps": 1800, "steps": 500, "lr_z": 1e-4, "lr_theta": 1e-3},
}


def _typed(cfg) -> dict:
    """A config as {field: (type, value)}: 1 and 1.0 differ in metrics.json."""
    return {f.name: (type(getattr(cfg, f.name)), getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


# ---- registry ---------------------------------------------------------------------------------------
def test_names_and_unknown_name():
    assert ARCHS == ("dcgan", "began", "vae", "stylegan2", "pggan", "biggan")
    with pytest.raises(UnknownName, match=r"unknown architecture 'dcgn' \(did you mean 'dcgan'\?\); choose from: began, biggan"):
        registry.get("dcgn")
    assert registry.paper_settings("toyw", "surgery") == {}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_entry_is_complete_and_consistent(arch):
    e = registry.get(arch)
    assert e.name == arch
    for f in dataclasses.fields(e):
        if f.name not in ("discriminator", "train_init"):
            assert getattr(e, f.name) is not None, f.name
    # checkpoint formats exist; the objective exists and needs a discriminator iff there is one
    assert set(e.formats) <= set(FORMATS) - {"recon"}
    assert e.objective in OBJECTIVES
    assert OBJECTIVES[e.objective].uses_discriminator == (e.discriminator is not None)
    # paper settings name fields of the methods' configs
    for method, settings in e.paper.items():
        cfg = make_config(method, "paper", arch)
        assert set(settings) <= {f.name for f in dataclasses.fields(cfg)}
    # the tiny configs build: an adapter of this architecture and its discriminator
    g = tiny_prior(arch)
    assert isinstance(g, e.adapter) and g.meta.architecture == arch
    r, c = g.meta.resolution, g.meta.channels
    d = build_discriminator(arch, r, c, 5, **e.tiny_discriminator)
    assert (d is None) == (e.discriminator is None)
    if d is not None:
        with torch.no_grad():
            out = d(torch.zeros(2, c, r, r), torch.zeros(2, dtype=torch.long) if e.class_conditional else None)
        assert out.shape[0] == 2
    assert 0 <= e.train_start < len(g.blocks) - 1


def test_every_public_format_belongs_to_one_architecture():
    owners = [f for a in ARCHS for f in registry.get(a).formats]
    assert sorted(owners) == sorted(set(FORMATS) - {"recon"})


def test_paper_settings_equal_the_old_tables():
    for arch in ARCHS:
        lr_cut = OLD_SURGERY.get(arch)
        expected = {"lr": lr_cut[0], "cut": lr_cut[1]} if lr_cut else {}
        assert registry.paper_settings(arch, "surgery") == expected
        assert [type(v) for v in registry.paper_settings(arch, "surgery").values()] == [type(v) for v in expected.values()]
        assert registry.paper_settings(arch, "iagan") == OLD_IAGAN.get(arch, {})
        assert set(registry.get(arch).paper) <= {"surgery", "iagan"}


@pytest.mark.parametrize("arch", ARCHS + ("", "toyw"))
def test_make_config_as_before(arch):
    """make_config / for_prior give the configs the solvers' old tables gave, for every arch."""
    old_s = surgery.SurgeryConfig()
    if arch in OLD_SURGERY:
        old_s.lr, old_s.cut = OLD_SURGERY[arch]
    assert _typed(make_config("surgery", "paper", arch)) == _typed(old_s)
    old_i = dataclasses.replace(iagan.IAGANConfig(), **OLD_IAGAN.get(arch, {}))
    assert _typed(make_config("iagan", "paper", arch)) == _typed(old_i)
    meta = type("Meta", (), {"architecture": arch})()
    assert make_config("surgery", "paper", arch) == surgery.SurgeryConfig.for_prior(meta)
    assert make_config("iagan", "paper", arch) == iagan.IAGANConfig.for_prior(meta)
    # the fast preset goes on top of the paper's lr and cut
    fast = make_config("surgery", "fast", arch)
    assert (fast.lr, fast.cut) == (old_s.lr, old_s.cut) and fast.optimizer == "lbfgs-ls"


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_cut_of_a_smaller_model(arch):
    """A tiny model lacking the paper's cut gets cut 1 (only where the paper sets a cut)."""
    cuts = tiny_prior(arch).cut_points
    old_cut = OLD_SURGERY.get(arch, (0.1, 1))[1]
    expected = old_cut if (arch not in OLD_SURGERY or old_cut in cuts) else min(1, cuts[-1])
    assert make_config("surgery", "paper", arch, cuts).cut == expected
    assert arch != "biggan" or expected == 1  # the tiny BigGAN has fewer than 8 blocks


# ---- roles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_every_entry_at_every_cut_has_a_role(arch):
    g = tiny_prior(arch)
    for c in g.cut_points:
        info = g.blocks[c]
        assert set(info.roles) == set(info.in_shapes) | set(info.out_shapes)
        assert set(info.roles.values()) <= set(ROLES)
        assert g.entries(c, *ROLES) == list(g.state_shapes(c))
        shapes = g.state_shapes(c)
        # what each role means, checked on the shapes
        assert (g.entries(c, "latent") != []) == (c == 0)
        for name in g.entries(c, "features", "skip", "noise", "image"):
            assert len(shapes[name]) == 3, (c, name)
        for name in g.entries(c, "w+"):
            assert len(shapes[name]) == 2, (c, name)
        for name in g.entries(c, "conditioning"):
            assert len(shapes[name]) == 1, (c, name)
    last = g.blocks[-1]
    assert [k for k in last.out_shapes] == ["img"] and last.roles["img"] == "image"


def test_roles_of_the_structured_states():
    sg, bg, be = tiny_prior("stylegan2"), tiny_prior("biggan"), tiny_prior("began")
    assert sg.entries(1, "w+") == ["w"] and sg.entries(2, "image") == ["rgb"]
    assert sg.entries(2, "noise") == [k for k in sg.state_shapes(2) if k.startswith("noise_")] != []
    assert bg.entries(0, "conditioning") == ["embed"] and bg.entries(1, "conditioning") == ["cond"]
    assert be.entries(1, "skip") == ["skip"] and be.entries(1, "features") == ["h"]


def test_roles_are_checked():
    with pytest.raises(ValueError, match="state entry 'h' has role None"):
        BlockInfo("b", {"z": (3,)}, {"h": (1, 2, 2)}, {"z": "latent"})
    with pytest.raises(ValueError, match="state entry 'z' has role 'code'"):
        BlockInfo("b", {"z": (3,)}, {"img": (1, 2, 2)}, {"z": "code", "img": "image"})
    # a shared table may name more entries; the block keeps its own
    assert BlockInfo("b", {"z": (3,)}, {"img": (1, 2, 2)}, {"z": "latent", "img": "image", "h": "features"}).roles == {"z": "latent", "img": "image"}
    with pytest.raises(UnknownName, match="unknown state role 'w'"):
        tiny_prior("dcgan").entries(0, "w")
