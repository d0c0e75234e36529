"""A guard on reconstruction quality with the real face prior: the mean PSNR of Surgery and CSGM
(their default presets, as `recon reconstruct` runs them) over 3 real photos x their seeds (2 for
Surgery; 1 for CSGM, whose default is the paper's 500-step schedule, ~40 s a solve here) must stay
above a floor 0.4 dB under the mean measured when the floor was set, so a quality regression of
1 dB fails while float-level differences (a mean over 3-6 solves moves by about 0.1 dB) do not.

The floors were measured with ``python tests/test_quality_guard.py`` (it prints the means) on
this project's 2-core machine, 1 torch thread, 2026-12-02; if a deliberate change moves quality,
re-measure and say so in the commit."""

from __future__ import annotations

import statistics

import pytest
import torch

from recon_core.generators.zoo import load_prior
from recon_core.images import example_image
from recon_core.pipeline import score, simulate, solve_problems
from recon_core.solvers import make_config

#: method -> mean PSNR (dB) floor over images() x SEEDS[method] (cs-gaussian m/n 0.1, cs-norm noise
#: 0.1): measured 2026-12-02 at 1 thread surgery 21.84 (seeds 0, 1; 2 threads: 21.85), csgm 18.18
#: (seed 0; the mean over seeds 0 and 1 was 18.10-18.13), minus 0.4 dB
FLOORS = {"surgery": 21.44, "csgm": 17.78}
SEEDS = {"surgery": (0, 1), "csgm": (0,)}


def images():
    """The astronaut face (shipped) and two skimage photos, 64 px."""
    import skimage.data

    from recon_core.images import fit_image

    out = [example_image(size=64)]
    for name in ("chelsea", "coffee"):
        a = torch.from_numpy(getattr(skimage.data, name)().copy()).float().div(255).permute(2, 0, 1)[None]
        out.append(fit_image(a, 64, "crop-resize"))
    return out


def mean_psnr(method: str) -> float:
    """The guarded figure: mean of per-image PSNR over images() x SEEDS[method], default preset."""
    G = load_prior("dcgan-faces-64")
    cfg = make_config(method, "fast", "dcgan", G.cut_points)
    values = []
    for seed in SEEDS[method]:
        for x in images():
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, seed, 0.1, "cs-norm")
            res = solve_problems(method, [problem], G, cfg, seed)[0]
            values.append(score(x, res.x_hat, problem)["psnr"])
    return statistics.mean(values)


@pytest.mark.parametrize("method", sorted(FLOORS))
def test_quality_stays_above_its_floor(method):
    got = mean_psnr(method)  # torch's thread count: the means at 1 and 2 threads agreed within 0.02 dB
    assert got > FLOORS[method], f"{method}: mean PSNR {got:.2f} dB fell below its floor {FLOORS[method]:.2f} dB"


if __name__ == "__main__":
    import sys

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    for m in sorted(FLOORS):
        print(m, round(mean_psnr(m), 3), flush=True)
