"""benchmarks/speed.py: the recipe arms, the report built from raw runs, merging partial runs."""

from __future__ import annotations

import json

import pytest
import torch

from recon_core.operators import build
from recon_core.solvers import Problem
from tests.conftest import load_benchmark, tiny_prior

speed = load_benchmark("speed")


def _problem(g):
    x = g(g.sample_latent(1, torch.Generator().manual_seed(5))).detach()
    A = build("cs-gaussian", tuple(x.shape[1:]), seed=0, ratio=0.3)
    return Problem(A, A.A(x)), x


@pytest.mark.parametrize("method", ["surgery", "csgm"])
def test_recipe_runs_restarts_one_by_one_and_keeps_the_best(method):
    g = tiny_prior("dcgan")
    pb, x = _problem(g)
    r = speed.recipe(method, pb, g, seed=3, restarts=2, lbfgs_steps=2, adam_steps=7)
    assert r["x_hat"].shape == x.shape and r["seconds"] > 0
    if method == "csgm":
        assert r["evaluations"] == 2 * 7
    else:  # torch's LBFGS: up to 20 iterations per step, about 1.25 evaluations per iteration at most
        assert 2 <= r["evaluations"] <= 2 * 2 * 25
    with torch.no_grad():
        final = float((pb.A.A(r["x_hat"]) - pb.y).pow(2).sum())
    one = speed.recipe(method, pb, g, seed=3, restarts=1, lbfgs_steps=2, adam_steps=7)
    with torch.no_grad():
        first = float((pb.A.A(one["x_hat"]) - pb.y).pow(2).sum())
    assert final <= first + 1e-6  # the kept restart is never worse than the first one alone


def test_measure_matches_the_cli_seed_policy():
    from recon_cli.measure import make_measurements

    x = torch.rand(1, 3, 16, 16)
    pb = speed.measure(x, "cs-0.1", seed=4)
    A, y, noise = make_measurements(x, "cs-gaussian", {"ratio": 0.1}, 4, 0.1, "cs-norm")
    assert torch.equal(pb.y, y) and pb.noise_std == noise.std(A)


def _doc():
    runs = {}
    for i, img in enumerate(["a", "b"]):
        for arm, sec, ps in (("recipe", 10.0, 20.0), ("paper", 6.0, 20.5), ("fast", 1.0, 21.0 + i)):
            runs[f"{img}|cs-0.1|0|surgery|{arm}"] = {"image": img, "op": "cs-0.1", "seed": 0, "method": "surgery", "arm": arm,
                                                      "psnr": ps, "ssim": 0.5, "lpips": 0.2, "seconds": sec, "evaluations": 100,
                                                      "stop": "budget"}
    runs["c|cs-0.1|0|surgery|fast"] = {**runs["a|cs-0.1|0|surgery|fast"], "image": "c"}  # incomplete cell: left out
    return {"runs": runs, "machine": [{"when": "t", "sgemm_gflops": 50.0, "copy_gbs": 10.0, "threads": 1}], "cost": [],
            "host": {"platform": "p", "cpus": 2, "torch": "t", "threads": 1}}


def test_summary_and_report(tmp_path):
    rows = speed.summary(_doc())
    fast = next(r for r in rows if r["arm"] == "fast")
    assert fast["n"] == 2 and fast["psnr"] == pytest.approx(21.5) and fast["time_ratio"] == pytest.approx(0.1)
    assert fast["psnr_vs_paper"] == pytest.approx(1.0)
    text = speed.report(_doc(), tmp_path / "s.md", tmp_path / "s.png")
    assert "| cs-0.1 | fast | 2 | 21.50 +- 0.50 |" in text and (tmp_path / "s.png").stat().st_size > 0


def test_other_methods_compare_fast_with_paper(tmp_path):
    """A method without a recipe arm (e.g. mgan) is summarised against its paper preset."""
    d = _doc()
    for i, img in enumerate(["a", "b"]):
        for arm, sec, ps in (("paper", 40.0, 25.0), ("fast", 4.0 + 4 * i, 25.5)):
            d["runs"][f"{img}|cs-0.1|0|mgan|{arm}"] = {"image": img, "op": "cs-0.1", "seed": 0, "method": "mgan", "arm": arm,
                                                       "psnr": ps, "ssim": 0.5, "lpips": 0.2, "seconds": sec, "evaluations": 9,
                                                       "stop": "budget"}
    fast = next(r for r in speed.summary(d) if r["method"] == "mgan" and r["arm"] == "fast")
    assert fast["ref"] == "paper" and fast["time_ratio"] == pytest.approx(0.15) and fast["psnr_vs_paper"] == pytest.approx(0.5)
    text = speed.report(d, tmp_path / "s.md", tmp_path / "s.png")
    assert "| mgan | cs-0.1 | 2 | 25.00 / 25.50 | +0.50 +- 0.00 | 40.0 / 6.0 | 0.150 |" in text
    assert "| surgery | cs-0.1 | 2 | 20.00 / 20.50 / 21.50 | +1.00 +- 0.50 | 10.0 / 6.0 / 1.0 | 0.100 |" in text
    assert "time / paper" in text


def test_merge(tmp_path):
    d = _doc()
    a, b = dict(d, runs=dict(list(d["runs"].items())[:3])), dict(d, runs=dict(list(d["runs"].items())[3:]))
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    m = speed.merge([tmp_path / "a.json", tmp_path / "b.json"])
    assert m["runs"] == d["runs"] and len(m["machine"]) == 2
    # --note is stored with the merged runs and printed under the report's title
    speed.main(["--merge", f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", "--out", str(tmp_path / "m.json"),
                "--note", "Here the fast arm is a candidate."])
    assert json.loads((tmp_path / "m.json").read_text())["note"] == "Here the fast arm is a candidate."
    assert "\nHere the fast arm is a candidate.\n" in (tmp_path / "m.md").read_text()


def test_throughput_end_to_end(tmp_path):
    """The throughput measurement on the real face prior, shortened: both batch settings run
    through the CLI, the recipe runs, the pinv fixed cost is measured, lines are written."""
    from recon_core.generators.zoo import load_prior

    try:
        load_prior("dcgan-faces-64")
    except Exception as e:  # noqa: BLE001 - weights package absent: nothing to measure
        pytest.skip(f"face prior unavailable: {e}")
    doc = {}
    res = speed.throughput(doc, tmp_path, n_images=2, recipe_every=2, repeats=1, cli_extra=["--steps", "2", "--restarts", "1"],
                           recipe_kw={"lbfgs_steps": 1, "restarts": 1})
    assert doc["throughput"] is res and set(res["batches"]) == {"jobs1", "nobatch", "jobs2"}
    assert all(b["ok"] == 2 and b["images_per_min"] > 0 for b in res["batches"].values())
    assert res["recipe_images"] == 1 and len(res["pinv_run_s"]) == 1 and len(res["lines"]) == 3


def test_timings_demo_records_the_default_run(tmp_path):
    from recon_core.generators.zoo import load_prior

    try:
        load_prior("dcgan-faces-64")
    except Exception as e:  # noqa: BLE001 - weights package absent
        pytest.skip(f"face prior unavailable: {e}")
    rec = load_benchmark("timings").demo(tmp_path / "demo", repeats=1)
    assert rec["preset"] == "fast" and 0 < rec["evaluations"] <= 150 and rec["stop"]
    assert rec["psnr"] > 15 and rec["wall_s"] >= rec["total_in_process_s"] >= rec["solve_s"] > 0
    assert rec["wall_s_all"] == [rec["wall_s"]] and rec["runs"] == 1
    pri = load_benchmark("timings").priors(repeats=2)
    assert len(pri["wall_s"]) == 2 and 0 < pri["median_s"] < 30


def test_timings_block1_ab_runs_both_arms_and_restores_the_rule():
    from recon_core.generators import dcgan

    try:
        from recon_core.generators.zoo import load_prior

        load_prior("dcgan-faces-64")
    except Exception as e:  # noqa: BLE001 - weights package absent
        pytest.skip(f"face prior unavailable: {e}")
    rule = dcgan._use_matmul
    # float32 throughout: bfloat16 evaluations round differently on the two kernels (several rows),
    # which a short solve amplifies
    ab = load_benchmark("timings").block1_ab(repeats=2, steps=6, bf16_share=0.0)
    assert dcgan._use_matmul is rule
    assert len(ab["library"]) == len(ab["matmul"]) == 2 and ab["speedup"] > 0
    # the two kernels agree up to rounding, which a 6-evaluation solve barely amplifies
    assert abs(ab["psnr"]["library"] - ab["psnr"]["matmul"]) < 0.05


def test_timings_bf16_ab_runs_both_arms(monkeypatch):
    """Both arms ran and were timed; the preset's arm used bfloat16 exactly where it is native
    (forced on here, so the test does not depend on the CPU), the float32 arm never did."""
    from recon_core.solvers import common

    try:
        from recon_core.generators.zoo import load_prior

        load_prior("dcgan-faces-64")
    except Exception as e:  # noqa: BLE001 - weights package absent
        pytest.skip(f"face prior unavailable: {e}")
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    ab = load_benchmark("timings").bf16_ab(repeats=1, reps=2, steps=10)
    assert len(ab["preset"]) == len(ab["float32"]) == 1 and ab["speedup"] > 0
    assert ab["bf16_evaluations"]["float32"] == 0 and 6 <= ab["bf16_evaluations"]["preset"] < 10
    assert abs(ab["psnr"]["preset"] - ab["psnr"]["float32"]) < 3
    assert [c["rows"] for c in ab["generator_ms"]] == [1, 3]
    assert all(c["float32"] > 0 and c["bfloat16"] > 0 for c in ab["generator_ms"])


def test_limits_table_arithmetic():
    doc = _doc()
    doc["flops"] = {"cs-0.1": {"flops": 2e9, "matrix_bytes": 5e8}}
    table = speed.limits_table(doc, speed.summary(doc))
    # recipe: 2e9 FLOPs x 1 row x 100 evaluations / 10 s = 20 GFLOP/s (40 % of 50); matrix 2 x 0.5 GB x 100 / 10 s = 10 GB/s
    assert "| surgery | cs-0.1 | recipe | 20.0 | 40% | 10.0 | 100% |" in table
    assert "| surgery | cs-0.1 | paper | 100.0 | 200% | 16.7 | 167% |" in table


def test_timings_dd_step_ab_compares_equal_decoders():
    """recon's batched decoder and the reference's torch layers compute the same images; both timed."""
    ab = load_benchmark("timings").dd_step_ab(widths=(4,), restarts=(2,), reps=1)
    (cell,) = ab["cells"]
    assert cell["width"] == 4 and cell["restarts"] == 2 and cell["recon_ms"] > 0 and cell["reference_ms"] > 0
    assert cell["max_abs_diff"] < 1e-5 and cell["speedup"] == pytest.approx(cell["reference_ms"] / cell["recon_ms"])
    # the library forms (before 2026-12-03) compute the same decoder; the two Adam forms are timed
    assert cell["max_abs_diff_library_forms"] < 1e-5 and cell["library_forms_ms"] > 0
    assert cell["speedup_over_library_forms"] == pytest.approx(cell["library_forms_ms"] / cell["recon_ms"])
    assert cell["adam_per_tensor_ms"] > 0 and cell["adam_flat_ms"] > 0


def test_timings_only_runs_the_named_sections(tmp_path, monkeypatch, capsys):
    """--only runs just the sections named (and refuses unknown ones with the list)."""
    t = load_benchmark("timings")
    monkeypatch.setattr(t, "dd_step_ab", lambda: {"cells": ["stub"]})
    t.main(["--only", "dd_step_ab", "--out", str(tmp_path / "t.json")])
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["dd_step_ab"] == {"cells": ["stub"]} and "demo" not in doc and "priors" not in doc
    with pytest.raises(SystemExit):
        t.main(["--only", "nope", "--out", str(tmp_path / "u.json")])
    assert "unknown section(s) nope; choose from demo, priors" in capsys.readouterr().err


def test_timings_residual_ab_times_both_forms_of_the_loss():
    """The plain and the one-pass Gaussian measurement loss give the same gradient; both timed."""
    ab = load_benchmark("timings").residual_ab(rows=(1, 3), reps=1)
    assert [c["rows"] for c in ab["cells"]] == [1, 3]
    for cell in ab["cells"]:
        assert cell["plain_ms"] > 0 and cell["recon_ms"] > 0
        assert cell["speedup"] == pytest.approx(cell["plain_ms"] / cell["recon_ms"])
    assert ab["cells"][0]["max_abs_grad_diff"] == 0.0  # one row: the same two passes
    assert 0 < ab["cells"][1]["max_abs_grad_diff"] < 1e-3  # several rows: blocked sums, rounding only


def test_recon_arm_records_the_config_it_ran():
    """Each recon arm's run carries its settings, so a rebuilt report cannot mislabel old rows."""
    from recon_core.solvers.common import FAST_SCHEDULE

    g = tiny_prior("dcgan")
    pb, _ = _problem(g)
    fast = speed.recon_arm("surgery", "fast", pb, g, seed=0)
    assert {k: fast["config"][k] for k in FAST_SCHEDULE} == FAST_SCHEDULE
    assert fast["evaluations"] <= FAST_SCHEDULE["steps"]
    json.dumps(fast["config"])  # JSON-able, as speed.json stores it


def test_timings_optimiser_ab_times_both_adams_in_fresh_processes():
    """Only torch.optim's Adam imports torch._dynamo; both arms ran and were timed."""
    ab = load_benchmark("timings").optimiser_ab(repeats=1)
    assert ab["imports_torch_dynamo"] == {"recon": False, "torch": True}
    assert all(len(v) == 1 and v[0] > 0 for v in ab["wall_s"].values())
    assert ab["saved_s"] == pytest.approx(ab["median_wall_s"]["torch"] - ab["median_wall_s"]["recon"])


def test_tune_fast_report_compares_cells_with_the_baseline_and_filters_by_time(tmp_path, capsys):
    """Each variant against the chosen baseline over the cells both ran (image, seed); --since
    keeps only rows written from then on (rows without a time are older)."""
    import json as _json

    base = {"method": "surgery", "op": "cs-0.1", "evaluations": 150, "stop": "budget"}
    rows = [
        {**base, "variant": "fast-150", "image": "lfw0", "psnr": 20.0, "seconds": 2.0},  # no seed, no time: old
        {**base, "variant": "fast-150-r1", "image": "lfw0", "psnr": 21.0, "seconds": 1.0},
        {**base, "variant": "fast-150", "image": "lfw0", "seed": 1, "psnr": 22.0, "seconds": 2.0, "when": "2026-12-03 05:00:00"},
        {**base, "variant": "fast-150-r1", "image": "lfw0", "seed": 1, "psnr": 21.5, "seconds": 1.5, "when": "2026-12-03 05:01:00"},
        {**base, "variant": "fast-150-r1", "image": "lfw1", "seed": 1, "psnr": 30.0, "seconds": 1.0, "when": "2026-12-03 05:02:00"},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    tune = load_benchmark("tune_fast")
    tune.report(path, baseline="fast-150")
    out = capsys.readouterr().out
    assert "surgery cs-0.1 vs fast-150: fast-150-r1 +0.25 +- 0.75 dB (worst -0.50) x0.62 time (n2)" in out
    tune.report(path, baseline="fast-150", since="2026-12-03 04:00")
    assert "fast-150-r1 -0.50 +- nan dB (worst -0.50) x0.75 time (n1)" in capsys.readouterr().out
    # --tag's re-runs (NAME@TAG) are reported and can be the baseline
    with path.open("a") as f:
        f.write(_json.dumps({**base, "variant": "fast-150@s11", "image": "lfw0", "seed": 1, "psnr": 21.0, "seconds": 3.0,
                             "when": "2026-12-03 09:00:00"}) + "\n")
    tune.report(path, baseline="fast-150@s11", since="2026-12-03 04:00")
    out = capsys.readouterr().out
    assert "vs fast-150@s11: fast-150 +1.00 +- nan dB (worst +1.00) x0.67 time (n1) | fast-150-r1 +0.50" in out


def test_fast_zoo_runs_any_method_with_a_fast_preset(tmp_path, monkeypatch):
    """benchmarks/fast_zoo.py --method ilo: both presets per prior x operator x image, its own
    files; an unknown method is refused before any prior loads (tiny priors and short schedules
    stand in for the zoo's)."""
    from dataclasses import replace

    import recon_core.generators.zoo as zoo
    import recon_core.solvers as solvers
    import recon_core.training.data as data
    from recon_core.errors import UnknownName

    fz = load_benchmark("fast_zoo")
    monkeypatch.setattr(fz, "PRIORS", ["tiny-dcgan"])
    from recon_core.generators import registry
    from recon_core.generators.checkpoints import build_adapter

    torch.manual_seed(0)  # a one-channel 32 px DCGAN, as the zoo's Fashion-MNIST priors
    monkeypatch.setattr(zoo, "load_prior", lambda name: build_adapter("dcgan", **dict(registry.get("dcgan").tiny, nc=1)).eval())
    real = solvers.make_config
    monkeypatch.setattr(solvers, "make_config", lambda m, preset, arch, cuts=None: replace(real(m, preset, arch, cuts), steps=(3, 2, 2), restarts=1))

    class Src:
        def get(self, idx):
            return torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(idx[0]))

    monkeypatch.setattr(data, "load_source", lambda *a, **k: Src())
    fz.main(["--method", "ilo", "--out", str(tmp_path / "z.json")])
    doc = json.loads((tmp_path / "z.json").read_text())
    assert doc["method"] == "ilo" and len(doc["runs"]) == 1 * 2 * 4 * 2
    assert {r["preset"] for r in doc["runs"]} == {"paper", "fast"} and all(r["cut"] is None for r in doc["runs"])
    md = (tmp_path / "z.md").read_text()
    assert "# ilo: fast vs paper preset" in md and "`python benchmarks/fast_zoo.py --method ilo`" in md and "| tiny-dcgan | cs-0.1 | - |" in md
    with pytest.raises(UnknownName, match="nope"):
        fz.main(["--method", "nope", "--out", str(tmp_path / "n.json")])
