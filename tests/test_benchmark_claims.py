"""benchmarks/claims.py: the claims table rebuilds from the stored results alone, every row has a
measured figure or says why not, and the experiments run end to end at smoke size."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark

VERDICTS = ("held", "not held", "not comparable", "by construction", "not measured")


def table_rows(md: str) -> list:
    """The claim rows of claims.md as lists of cells (the header and rule skipped)."""
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| # ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows]


def test_report_only_from_stored_results(tmp_path):
    pytest.importorskip("matplotlib")
    bench = load_benchmark("claims")
    bench.main(["--report-only", "--out-dir", str(tmp_path)])
    md = (tmp_path / "claims.md").read_text()
    assert (tmp_path / "claims_surgery_lasso.png").stat().st_size > 1000
    rows = table_rows(md)
    assert len(rows) >= 30
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        assert len(r) == 8, r
        figure, verdict = r[4], r[5]
        assert figure and figure != "-", r[0]
        assert verdict.startswith(VERDICTS), (r[0], verdict)
        if verdict.startswith(("not measured", "not comparable")) and "not measured yet" not in figure:
            # a row without a number says why: offline limits, time, or a nested comparison
            assert any(w in figure for w in ("cannot", "not run", "of", "cells")), (r[0], figure)
    # the two 'findings' are marked as what they are
    by_id = {r[0]: r for r in rows}
    assert by_id["IA-3"][5] == "by construction"
    assert by_id["IA-1b"][5] == "not comparable"


def test_experiments_smoke(tmp_path, capsys):
    pytest.importorskip("skimage")
    bench = load_benchmark("claims")
    bench.main(["--run", ",".join(bench.EXPERIMENTS), "--smoke", "--threads", "1", "--out-dir", str(tmp_path)])
    for exp in bench.EXPERIMENTS:
        doc = json.loads((tmp_path / f"claims_{exp}.json").read_text())
        assert doc["settings"]["smoke"] is True and doc["runs"], exp
        assert all("when" in r for r in doc["runs"].values())
    md = (tmp_path / "claims.md").read_text()
    assert "SMOKE TEST, not a result" in md
    capsys.readouterr()
    bench.main(["--run", "repr", "--smoke", "--threads", "1", "--out-dir", str(tmp_path)])  # resumes: nothing redone
    assert "PSNR" not in capsys.readouterr().out.split("# The five papers")[0]
