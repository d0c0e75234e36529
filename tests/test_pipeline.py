"""recon_core.pipeline: the README's three-line Python run equals the CLI's, the keyed grid
resumes and refuses other settings, the solver seeds follow the seed policy."""

from __future__ import annotations

import json

import pytest
import torch

from recon_core.errors import BadInput
from recon_core.pipeline import SOLVER_SEED_OFFSET, Grid, Pipeline, score, simulate, solve_problems


@pytest.fixture
def tiny_image(face64):
    """The face at the tiny DCGAN's 32 px."""
    from recon_core.images import fit_image

    return fit_image(face64, 32, "resize")


def test_pipeline_without_out_keeps_nothing_and_refuses_to_overwrite(tmp_path, tiny_ckpt, face64, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "a.png"
    from recon_core.images import save_image

    save_image(face64, img)
    pipe = Pipeline(prior=str(tiny_ckpt), method="csgm", config={"steps": 2, "restarts": 1}, op_params={"ratio": 0.2})
    rec = pipe.run(img)
    assert rec["method"]["name"] == "csgm" and rec["metrics"]["psnr"] is not None and rec["outputs"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", tiny_ckpt.name]
    pipe.run(img, out=tmp_path / "o")
    with pytest.raises(BadInput, match="refusing to overwrite"):
        pipe.run(img, out=tmp_path / "o")
    pipe.run(img, out=tmp_path / "o", force=True)


def test_pipeline_refuses_unknown_options_and_conventions(tiny_ckpt):
    with pytest.raises(BadInput, match="--cut does not apply to --method csgm"):
        Pipeline(prior=str(tiny_ckpt), method="csgm", config={"cut": 1})
    with pytest.raises(BadInput, match="unknown noise convention 'cs'"):
        Pipeline(prior=str(tiny_ckpt), noise_convention="cs")


def test_prepare_a_tensor_measures_as_the_seed_policy(tiny_ckpt, tiny_image):
    pipe = Pipeline(prior=str(tiny_ckpt), method="pinv", op_params={"ratio": 0.3}, noise_std=0.01, seed=3)
    task = pipe.prepare(x=tiny_image, name="t")
    ref, _ = simulate(tiny_image, "cs-gaussian", {"ratio": 0.3}, 3, 0.01)
    assert torch.equal(task.problem.y, ref.y)
    with pytest.raises(BadInput, match="x is of shape"):
        pipe.prepare(x=tiny_image[:, :1])


def test_solve_problems_uses_the_policy_seed_per_problem(tiny_dcgan, tiny_image):
    """A list of seeds gives each problem the solver seed seed + SOLVER_SEED_OFFSET, as the
    solver called directly with that seed computes."""
    from recon_core.solvers import csgm

    cfg = csgm.CSGMConfig(steps=3, restarts=2)
    pbs = [simulate(tiny_image, "cs-gaussian", {"ratio": 0.3}, s)[0] for s in (1, 2)]
    got = solve_problems("csgm", pbs, tiny_dcgan, cfg, [1, 2])
    for pb, s, r in zip(pbs, (1, 2), got):
        ref = csgm.solve(pb, tiny_dcgan, cfg, seed=s + SOLVER_SEED_OFFSET)
        assert r.losses == pytest.approx(ref.losses, rel=1e-4)
        assert score(tiny_image, r.x_hat, pb)["psnr"] == pytest.approx(score(tiny_image, ref.x_hat, pb)["psnr"], abs=1e-3)


def test_grid_resumes_and_refuses_other_settings(tmp_path):
    path = tmp_path / "g.json"
    g = Grid(path, {"a": 1})
    g.put("k1", {"v": 1.0})
    g.put("k2", {"v": float("nan")})  # strict JSON: NaN stored as null
    assert json.loads(path.read_text())["cells"] == {"k1": {"v": 1.0}, "k2": {"v": None}}
    again = Grid(path, {"a": 1})
    assert "k1" in again and "k3" not in again
    with pytest.raises(BadInput, match="made with other settings"):
        Grid(path, {"a": 2})
    assert Grid(path, {"a": 2}, force=True).cells == {}
    path.write_text("{not json")
    with pytest.raises(BadInput, match="not a readable results file"):
        Grid(path, {"a": 1})


def test_another_stage_one_optimiser_gets_the_paper_step_count():
    """IAGAN's fast preset counts stage-1 evaluations (200); --csgm-optimizer adam under it gets the
    paper's 1600 Adam steps unless --csgm-steps is given, as --optimizer does for steps."""
    from recon_core.pipeline import build_config

    assert build_config("iagan", "dcgan")[0].csgm_steps == 200
    assert build_config("iagan", "dcgan", {"csgm_optimizer": "adam"})[0].csgm_steps == 1600
    assert build_config("iagan", "dcgan", {"csgm_optimizer": "adam", "csgm_steps": 7})[0].csgm_steps == 7
    assert build_config("iagan", "dcgan", {"csgm_optimizer": "adam"}, preset="paper")[0].csgm_steps == 1600
    with pytest.raises(BadInput, match="--csgm-optimizer does not apply to --method surgery"):  # was an AttributeError
        build_config("surgery", "dcgan", {"csgm_optimizer": "adam"})


def test_every_optimiser_option_is_paired_with_its_step_count():
    """MethodConfig.SCHEDULES: every config field naming an optimiser is declared with its step
    count (so build_config can give another optimiser the paper's steps), and no pair is half there."""
    from dataclasses import fields

    from recon_core.solvers import METHODS, make_config

    for method in METHODS:
        cfg = make_config(method, "paper")
        names = {f.name for f in fields(cfg)}
        pairs = getattr(cfg, "SCHEDULES", ())
        for opt_field, steps_field in pairs:
            assert (opt_field in names) == (steps_field in names), (method, opt_field, steps_field)
        assert {n for n in names if n.endswith("optimizer")} <= {o for o, _ in pairs}, method



@pytest.mark.parametrize("method, overrides, match", [
    ("hybrid", {"bf16_share": 1.5}, r"bf16_share must be a number in \[0, 1\)"),
    ("surgery", {"prune_after": 2}, r"prune_after must be in \[0, 1\], got 2"),
    ("csgm", {"stop_tol": -1}, r"stop_tol must be a number >= 0"),
])
def test_build_config_runs_the_configs_own_checks_on_given_values(method, overrides, match):
    """Options given by name go through the config's checks when it is built (not setattr after
    them), so a bad value is refused before a prior loads or a stage runs."""
    from recon_core.pipeline import build_config

    with pytest.raises(BadInput, match=match):
        build_config(method, "dcgan", overrides)
    cfg, _ = build_config("hybrid", "dcgan", {"bf16_share": 0.5, "n_pre": 7})
    assert (cfg.bf16_share, cfg.n_pre) == (0.5, 7)
