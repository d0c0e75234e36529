"""benchmarks/deepinv_csgm.py end to end at the smoke budget (3 steps, one image and seed): both
libraries run on the real prior with the same A and y, and the report is written."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


def test_deepinv_csgm_smoke(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("deepinv")
    bench = load_benchmark("deepinv_csgm")
    out = tmp_path / "d.json"
    bench.main(["--smoke", "--threads", "1", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["smoke"] and doc["versions"]["deepinv"] == "0.5.0"
    assert [r["solver"] for r in doc["runs"]] == list(bench.SOLVERS)
    assert all(r["psnr"] > 0 and r["time_s"] > 0 and 0 <= r["lpips"] <= 1 for r in doc["runs"])
    assert doc["settings"]["deepinv CSGMGenerator"] == {"inf_max_iter": 3, "inf_lr": 0.1, "inf_tol": 0.0}
    md = out.with_suffix(".md").read_text()
    assert "NOT a result" in md and "| deepinv CSGMGenerator |" in md and "--smoke" in md


def test_frozen_generator_gives_the_same_deepinv_estimate():
    """The report says freezing the generator's weights only saves their gradients: same x_hat."""
    import torch

    from recon_core.operators import build
    from recon_core.solvers.common import Problem
    from tests.conftest import tiny_prior

    pytest.importorskip("deepinv")
    bench = load_benchmark("deepinv_csgm")
    G = tiny_prior("dcgan")
    A = build("cs-gaussian", (3, 32, 32), seed=1, ratio=0.1)
    problem = Problem(A, A.A(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))))
    kw = {"inf_max_iter": 10, "inf_lr": 0.1, "inf_tol": 0.0}
    shipped, _ = bench.run_deepinv(problem, G, kw, 0)
    frozen, _ = bench.run_deepinv(problem, G, kw, 0, freeze=True)
    assert torch.equal(shipped, frozen)
    assert all(p.requires_grad for p in G.parameters())  # restored afterwards
