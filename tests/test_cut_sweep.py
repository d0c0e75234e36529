"""`recon cut-sweep` on a tiny prior: outputs, recommendation, resumability."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recon_cli.app import app
from recon_core.images import save_image
from recon_core.sweep import parse_cuts, parse_ratios
from recon_core.errors import BadInput

runner = CliRunner()


@pytest.fixture
def val_dir(tmp_path, face64):
    d = tmp_path / "val"
    d.mkdir()
    save_image(face64, d / "a.png")
    save_image(face64.flip(-1), d / "b.png")
    return d


def test_sweep_outputs_and_resume(tmp_path, val_dir, tiny_ckpt, monkeypatch):
    out = tmp_path / "sweep"
    args = ["cut-sweep", "--images", str(val_dir), "--prior", str(tiny_ckpt), "--out", str(out), "--ratios", "0.1,0.3",
            "--cuts", "0-2", "--steps", "2", "--restarts", "1", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["cells"]) == 2 * 2 * 3
    cell = doc["cells"]["a|0.1|1"]
    assert {"psnr", "ssim", "lpips", "residual", "time_s"} <= set(cell)
    rec = json.loads(r.stdout)["recommended_cut"]
    table = doc["summary"]["table"]
    for ratio, cut in rec.items():
        assert table[ratio][str(cut)]["psnr_mean"] == max(v["psnr_mean"] for v in table[ratio].values())
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "sweep.csv").read_text().splitlines()) == 13

    # resumability: drop two cells, rerun; only those two are computed, the rest untouched
    from recon_core import sweep

    calls = {"n": 0}
    real = sweep.solve_problems

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(sweep, "solve_problems", counting)
    del doc["cells"]["a|0.1|1"], doc["cells"]["b|0.3|2"]
    kept = dict(doc["cells"])
    (out / "sweep.json").write_text(json.dumps(doc))
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert calls["n"] == 2
    doc2 = json.loads((out / "sweep.json").read_text())
    assert all(doc2["cells"][k] == v for k, v in kept.items()) and len(doc2["cells"]) == 12
    # other settings refuse to mix into the same sweep
    r = runner.invoke(app, [*args[:-1], "--seed", "4", "--quiet"])
    assert r.exit_code == 2 and "other settings" in r.stderr
    # the images may be given positionally, as for `recon reconstruct`: the same sweep, all skipped
    calls["n"] = 0
    r = runner.invoke(app, ["cut-sweep", str(val_dir), *args[3:]])
    assert r.exit_code == 0 and calls["n"] == 0, r.output
    r = runner.invoke(app, ["cut-sweep", "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "give the validation images" in r.stderr


def test_parsers_and_errors(tmp_path, val_dir, tiny_ckpt):
    assert parse_cuts("0-2,4", range(6)) == [0, 1, 2, 4]
    with pytest.raises(BadInput, match="outside the prior's cut points"):
        parse_cuts("0-9", range(4))
    with pytest.raises(BadInput, match="must look like"):
        parse_cuts("a-b", range(4))
    assert parse_ratios("0.05, 0.1") == [0.05, 0.1]
    with pytest.raises(BadInput, match=r"in \(0, 1\]"):
        parse_ratios("0,2")
    r = runner.invoke(app, ["cut-sweep", "--images", str(val_dir), "--prior", str(tiny_ckpt), "--out", str(tmp_path / "o"),
                            "--op", "superres", "--quiet"])
    assert r.exit_code == 2 and "--ratios applies to" in r.stderr


def test_a_sweep_cell_is_the_reconstruct_run_with_its_seed(tmp_path, val_dir, tiny_ckpt):
    """One seed policy: the cell (a, m/n 0.3, cut 1) of a sweep with --seed 5 is exactly
    `recon reconstruct a.png --method surgery --preset paper --cut 1 --seed 5` (same measurements,
    same solver seed, same config), not merely close."""
    common = ["--prior", str(tiny_ckpt), "--steps", "3", "--restarts", "2", "--seed", "5", "--noise-std", "0.05",
              "--noise-convention", "per-entry", "--quiet"]
    r = runner.invoke(app, ["cut-sweep", str(val_dir / "a.png"), "--out", str(tmp_path / "sw"), "--ratios", "0.3",
                            "--cuts", "1", *common])
    assert r.exit_code == 0, r.output
    cell = json.loads((tmp_path / "sw" / "sweep.json").read_text())["cells"]["a|0.3|1"]
    r = runner.invoke(app, ["reconstruct", str(val_dir / "a.png"), "--method", "surgery", "--preset", "paper", "--cut", "1",
                            "--ratio", "0.3", "--out", str(tmp_path / "rc"), *common])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "rc" / "metrics.json").read_text())
    assert rec["restarts"]["losses"] == pytest.approx(cell["losses"], rel=1e-6)
    assert rec["metrics"]["psnr"] == pytest.approx(cell["psnr"], abs=1e-6)
