"""benchmarks/methods.py end to end at the smoke budget (a few steps per method, one image and
m/n): every method runs on the real prior, results resume, and the report is written."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


def test_methods_smoke_resume_and_report(tmp_path, capsys):
    pytest.importorskip("skimage")
    bench = load_benchmark("methods")
    out = tmp_path / "m.json"
    args = ["--budget", "smoke", "--images", "astronaut_face", "--ratios", "0.1", "--seeds", "0", "--threads", "1", "--out", str(out)]
    bench.main(args)
    doc = json.loads(out.read_text())
    assert {r["method"] for r in doc["runs"].values()} == set(bench.ORDER)
    assert all(r["psnr"] > 0 and r["time_s"] > 0 for r in doc["runs"].values())
    md = out.with_suffix(".md").read_text()
    assert "NOT a result" in md and "| ilo |" in md and out.with_suffix(".png").is_file()
    capsys.readouterr()
    bench.main(args)  # resume: every run is already there, none is redone
    assert "PSNR" not in capsys.readouterr().out.split("# All methods")[0]
    # a results file never mixes budgets
    with pytest.raises(SystemExit, match="holds runs with budget 'smoke'"):
        bench.main([*args[:1], "reduced", *args[2:]])
