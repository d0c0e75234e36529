"""Training objectives: every family's phases run through one interface, the loss terms follow
their formulas, BEGAN's k is kept across steps and through the trainer state."""

from __future__ import annotations

import math

import pytest
import torch

from recon_core.errors import UnknownName
from recon_core.generators import registry
from recon_core.training import losses as L
from recon_core.training.objectives import OBJECTIVES, BEGANObjective, Hinge, NonSaturatingR1, build_objective
from recon_core.training.trainer import Trainer, read_state, run
from tests.training.test_training import tiny_cfg

#: one architecture per family
FAMILY_ARCH = {"ns": "dcgan", "hinge": "biggan", "began": "began", "elbo": "vae"}


def test_every_family_has_an_architecture():
    assert set(FAMILY_ARCH) == set(OBJECTIVES) == {registry.get(a).objective for a in registry.names()}
    for family, arch in FAMILY_ARCH.items():
        assert registry.get(arch).objective == family
    with pytest.raises(UnknownName, match="unknown training objective 'wgan'"):
        build_objective("wgan", {})


@pytest.mark.parametrize("family", sorted(FAMILY_ARCH))
def test_each_family_phase_runs(tmp_path, family):
    """Every phase gives a finite scalar loss whose gradient reaches the phase's model only."""
    t = Trainer(tiny_cfg(FAMILY_ARCH[family], tmp_path / "r", hyper={"r1_gamma": 1.0, "r1_every": 1} if family == "ns" else {}))
    obj = t.objective
    assert type(obj) is OBJECTIVES[family]
    assert obj.phases() == (("G",) if family == "elbo" else ("D",) * int(t.hp["d_steps"]) + ("G",))
    for phase in dict.fromkeys(obj.phases()):
        model = t.d if phase == "D" else t.g
        real, y = t.real_batch() if obj.reads_real(phase) else (None, None)
        for m in (t.g, t.d):
            if m is not None:
                m.zero_grad(set_to_none=True)
        loss, stats = obj.loss(phase, t, real, y)
        assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
        assert all(torch.isfinite(v) for v in stats.values())
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), phase
        if family == "ns" and phase == "D":
            assert "r1" in stats  # r1_every 1: due at step 0
    stats = t.train_step()
    assert t.step == 1 and "loss_g" in stats and ("loss_d" in stats) == (family != "elbo")


def test_gan_terms_follow_their_formulas():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    ns, hinge = NonSaturatingR1({}), Hinge({})
    assert torch.equal(ns.d_real(logits), L.ns_d_real(logits)) and torch.equal(ns.g_fake(logits), torch.nn.functional.softplus(-logits).mean())
    assert torch.equal(hinge.d_fake(logits), torch.relu(1 + logits).mean()) and torch.equal(hinge.g_fake(logits), -logits.mean())
    ns.hp = {"r1_gamma": 0.5, "r1_every": 4}
    assert [ns.r1_due(s) for s in range(5)] == [True, False, False, False, True]
    assert not Hinge({"r1_gamma": 0.5, "r1_every": 1}).r1_due(0)
    assert not NonSaturatingR1({"r1_gamma": 0.0, "r1_every": 1}).r1_due(0)


def test_began_k_control_and_state():
    obj = BEGANObjective({"k0": 0.25, "began_gamma": 0.5, "lambda_k": 0.1})
    assert obj.state_dict() == {"k": 0.25}
    out = obj.end_step({"loss_real": 1.0, "loss_fake_g": 0.2})  # k + 0.1 * (0.5 - 0.2)
    assert out == {"convergence": pytest.approx(1.3), "k": pytest.approx(0.28)} and obj.k == out["k"]
    other = BEGANObjective({"k0": 0.0, "began_gamma": 0.5, "lambda_k": 0.1})
    other.load_state_dict(obj.state_dict())
    assert other.k == obj.k
    # the trainer-state slot of the other families stays 0
    assert NonSaturatingR1({}).state_dict() == {"k": 0.0}


def test_began_k_is_saved_and_restored_by_the_trainer(tmp_path):
    # k0 inside (0, 1), so the first steps move k rather than clip it at 0
    t, rec = run(tiny_cfg("began", tmp_path / "r", steps=2, hyper={"k0": 0.5}))
    s = read_state(tmp_path / "r" / "trainer_state.pt")
    assert s["k"] == t.objective.k != 0.5 and rec["last_stats"]["k"] == pytest.approx(s["k"], abs=1e-6)
    t2 = Trainer(tiny_cfg("began", tmp_path / "r2", steps=2, hyper={"k0": 0.5}))
    assert t2.objective.k == 0.5
    t2.load(s)
    assert t2.objective.k == s["k"]
