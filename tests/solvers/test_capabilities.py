"""The solver registry's declared capabilities hold: a method that says it needs no prior
solves without one (and one that needs it fails without it), a batched one solves a batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recon_core.errors import BadInput
from recon_core.pipeline import simulate
from recon_core.solvers import BATCH_METHODS, CUT_FIELDS, METHODS, capabilities, make_config
from tests.conftest import tiny_prior

SMALL = {"steps": 2, "restarts": 1, "csgm_steps": 2, "n_pre": 1, "layers": (0, 1), "radii": (10.0,)}


def small_config(method: str):
    cfg = make_config(method, "paper")
    names = {f.name for f in dataclasses.fields(cfg)}
    kw = {k: v for k, v in SMALL.items() if k in names}
    if method == "ilo":
        kw["steps"] = (2, 2)
    return dataclasses.replace(cfg, **kw)


@pytest.mark.parametrize("method", list(METHODS))
def test_declared_capabilities_hold(method):
    caps = capabilities(method)
    g = tiny_prior("dcgan")
    x = torch.rand(1, 3, 32, 32)  # the tiny DCGAN's images
    pb, _ = simulate(x, "cs-gaussian", {"ratio": 0.3}, 0)
    cfg = small_config(method)
    solve = METHODS[method][1]
    if caps["needs_prior"]:
        with pytest.raises(BadInput, match=f"{method.split('-')[0]} needs a generator prior"):
            solve(pb, None, cfg)
        res = solve(pb, g, cfg)
    else:
        res = solve(pb, None, cfg)
    assert res.x_hat.shape == x.shape
    assert caps["batched"] == (method in BATCH_METHODS)
    if caps["batched"]:
        pb2, _ = simulate(x.flip(-1), "cs-gaussian", {"ratio": 0.3}, 1)
        out = BATCH_METHODS[method]([pb, pb2], g if caps["needs_prior"] else None, cfg)
        assert len(out) == 2 and out[1].x_hat.shape == x.shape
    assert caps["uses_cut"] == any(hasattr(cfg, f) for f in CUT_FIELDS)
    assert "paper" in caps["presets"]
