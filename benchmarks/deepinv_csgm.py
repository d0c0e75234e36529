"""recon's CSGM against deepinv's ``CSGMGenerator``: same weights, images, operator and y.

Protocol (issue #17): the dcgan-faces-64 prior (recon_core.generators.zoo, wrapped for deepinv by
``recon_core.interop.deepinv.as_deepinv_generator``), the first ``--images`` real photos of
benchmarks/make_photos.py at 64 px, noiseless cs-gaussian at m/n = 0.1 drawn by recon's seed
policy (``pipeline.simulate``) and handed to deepinv through ``to_deepinv``, so both see the very
same A and y (checked). Three solvers per (image, seed):

- ``recon csgm``: recon's CSGM paper settings (Adam lr 0.1, 500 steps, 3 restarts from N(0, I),
  the restart with the lowest measurement loss kept);
- ``recon csgm r=1``: the same with one restart, the budget deepinv's CSGMGenerator has;
- ``deepinv CSGMGenerator``: deepinv 0.5.0's own loop (Adam on one latent drawn from U[-1, 1],
  loss = mean squared measurement error), given the same lr and step count, with its relative
  tolerance stop switched off (``inf_tol=0``) so it runs the same number of steps.

What differs, and cannot be matched without rewriting deepinv's loop: deepinv has no restarts,
draws its start from U[-1, 1] with torch's global generator (seeded here with the run's seed),
and returns the last iterate; recon starts from the prior N(0, I) and returns each restart's best
iterate. As shipped, deepinv's loop also computes gradients of the generator's weights every
step (recon freezes them); a separate interleaved per-step timing on the first problem shows that
cost (recon r=1, deepinv, deepinv with the weights frozen). Nothing is selected against the ground truth. Metrics: recon_core.metrics
(PSNR, SSIM, LPIPS, residual ||A x_hat - y|| / ||y||); times are wall seconds per run.

    python benchmarks/deepinv_csgm.py --threads 1              # -> benchmarks/results/deepinv_csgm.{json,md}
    python benchmarks/deepinv_csgm.py --smoke --out /tmp/s.json   # a few steps: tests the script, NOT a result
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_photos import photos  # noqa: E402

from recon_core.generators.zoo import load_prior  # noqa: E402
from recon_core.images import atomic_write_text  # noqa: E402
from recon_core.interop.deepinv import as_deepinv_generator, require_deepinv, to_deepinv  # noqa: E402
from recon_core.metrics import compute_metrics  # noqa: E402
from recon_core.pipeline import simulate, solve_problems  # noqa: E402
from recon_core.solvers.common import frozen  # noqa: E402
from recon_core.solvers.csgm import CSGMConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PRIOR = "dcgan-faces-64"
RATIO = 0.1
SOLVERS = ("recon csgm", "recon csgm r=1", "deepinv CSGMGenerator")


def settings(smoke: bool) -> dict:
    """Solver name -> its settings (recon: a CSGMConfig; deepinv: CSGMGenerator's arguments)."""
    paper = CSGMConfig()  # Adam, lr 0.1, 500 steps, 3 restarts
    if smoke:
        paper = replace(paper, steps=3)
    return {
        "recon csgm": paper,
        "recon csgm r=1": replace(paper, restarts=1),
        "deepinv CSGMGenerator": {"inf_max_iter": paper.steps, "inf_lr": paper.lr, "inf_tol": 0.0},
    }


def run_recon(problem, G, cfg: CSGMConfig, seed: int):
    """recon's CSGM with the solver seed of the seed policy -> (x_hat, seconds)."""
    t0 = time.perf_counter()
    res = solve_problems("csgm", [problem], G, cfg, seed)[0]
    if isinstance(res, Exception):
        raise res
    return res.x_hat, time.perf_counter() - t0


def run_deepinv(problem, G, kwargs: dict, seed: int, freeze: bool = False):
    """deepinv's CSGMGenerator on recon's operator (through to_deepinv) -> (x_hat, seconds).

    As shipped, its loop also computes gradients of every generator weight (they require grad;
    only z is optimised); ``freeze`` turns them off for the run, as recon's solvers do."""
    if freeze:
        with frozen(G):
            return run_deepinv(problem, G, kwargs, seed)
    dinv = require_deepinv()
    physics = to_deepinv(problem.A)
    model = dinv.models.CSGMGenerator(as_deepinv_generator(G), **kwargs).eval()  # eval: optimise z
    torch.manual_seed(seed)  # CSGMGenerator draws its start from torch's global generator
    t0 = time.perf_counter()
    with torch.no_grad():  # CSGMGenerator enables grad for its own loop
        x_hat = model(problem.y, physics)
    return x_hat.clamp(0, 1), time.perf_counter() - t0


def step_timing(problem, G, steps: int, repeats: int) -> dict:
    """Median wall seconds of ``steps`` optimiser steps on one latent, interleaved ``repeats``
    times (so load from other jobs hits all three alike): recon (1 restart), deepinv as shipped,
    deepinv with the generator's weights frozen."""
    cfg = replace(CSGMConfig(), steps=steps, restarts=1)
    kw = {"inf_max_iter": steps, "inf_lr": cfg.lr, "inf_tol": 0.0}
    times = {"recon csgm r=1": [], "deepinv CSGMGenerator": [], "deepinv CSGMGenerator, G frozen": []}
    for _ in range(repeats):
        times["recon csgm r=1"].append(run_recon(problem, G, cfg, 0)[1])
        times["deepinv CSGMGenerator"].append(run_deepinv(problem, G, kw, 0)[1])
        times["deepinv CSGMGenerator, G frozen"].append(run_deepinv(problem, G, kw, 0, freeze=True)[1])
    return {"steps": steps, "repeats": repeats, "median_s": {k: statistics.median(v) for k, v in times.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3, help="how many photos (in make_photos.py's order)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--smoke", action="store_true", help="3 steps, one image, one seed: tests the script, not a result")
    ap.add_argument("--out", default=str(RESULTS / "deepinv_csgm.json"))
    ap.add_argument("--report-only", action="store_true", help="only rewrite the .md from the results in --out")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.report_only:
        doc = json.loads(out.read_text())
        atomic_write_text(out.with_suffix(".md"), report(doc))
        return doc
    if a.threads:
        torch.set_num_threads(a.threads)
    dinv = require_deepinv()
    seeds = [0] if a.smoke else [int(s) for s in a.seeds.split(",")]
    n_images = 1 if a.smoke else a.images
    cfgs = settings(a.smoke)
    G = load_prior(PRIOR)
    load_start = os.getloadavg()[0]
    runs = []
    for name, x in photos(64)[:n_images]:
        for seed in seeds:
            problem, _ = simulate(x, "cs-gaussian", {"ratio": RATIO}, seed)  # `recon reconstruct`'s seed policy
            # deepinv sees the same A and y: its physics is recon's operator
            assert torch.equal(to_deepinv(problem.A)(x), problem.y)
            for solver in SOLVERS:
                if solver.startswith("recon"):
                    x_hat, wall = run_recon(problem, G, cfgs[solver], seed)
                else:
                    x_hat, wall = run_deepinv(problem, G, cfgs[solver], seed)
                m = compute_metrics(x, x_hat, problem.y, problem.A)
                runs.append({"image": name, "seed": seed, "solver": solver, "psnr": m["psnr"], "ssim": m["ssim"],
                             "lpips": m["lpips"], "residual": m["residual"], "time_s": wall})
                print(f"{name} seed {seed} {solver}: PSNR {m['psnr']:.2f}, LPIPS {m['lpips']:.3f}, {wall:.1f} s", flush=True)
    # per-step cost on the first problem, apart from the runs (1 restart each, interleaved)
    timing = step_timing(simulate(photos(64)[0][1], "cs-gaussian", {"ratio": RATIO}, seeds[0])[0], G,
                         steps=3 if a.smoke else 100, repeats=1 if a.smoke else 3)
    command = "python benchmarks/deepinv_csgm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, CPU only",
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "versions": {"torch": torch.__version__, "deepinv": dinv.__version__, "python": platform.python_version()},
        "smoke": a.smoke,
        "protocol": {"prior": PRIOR, "op": "cs-gaussian", "ratio": RATIO, "noise": 0.0, "size": 64,
                     "images": sorted({r["image"] for r in runs}), "seeds": seeds},
        "settings": {k: (asdict(v) if isinstance(v, CSGMConfig) else v) for k, v in cfgs.items()},
        "runs": runs,
        "summary": summary(runs),
        "step_timing": timing,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), report(doc))
    return doc


def summary(runs: list) -> dict:
    """Per solver: mean PSNR, SSIM, LPIPS, residual and seconds over all (image, seed) runs."""
    out = {}
    for s in SOLVERS:
        rs = [r for r in runs if r["solver"] == s]
        out[s] = {k: statistics.mean(r[k] for r in rs) for k in ("psnr", "ssim", "lpips", "residual", "time_s")}
    return out


def paired(runs: list, a: str, b: str, key: str = "psnr") -> tuple:
    """Mean and standard error of ``key`` of solver a minus solver b over the shared problems."""
    by = {}
    for r in runs:
        by.setdefault((r["image"], r["seed"]), {})[r["solver"]] = r[key]
    d = [v[a] - v[b] for v in by.values() if a in v and b in v]
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    return statistics.mean(d), se, len(d)


def report(doc: dict) -> str:
    """The markdown report: the side-by-side table, then per-image PSNR."""
    s, p = doc["summary"], doc["protocol"]
    lines = [
        "# recon CSGM vs deepinv CSGMGenerator (same DCGAN weights, images, A and y)",
        "",
        *(["**Smoke run (3 steps): tests the script, NOT a result.**", ""] if doc["smoke"] else []),
        f"Date {doc['date']}. Machine: {doc['machine']} (1-minute load average {doc['load_average']['start']:.1f} at the start, "
        f"{doc['load_average']['end']:.1f} at the end: other jobs shared the cores); torch {doc['versions']['torch']}, deepinv {doc['versions']['deepinv']}. "
        f"Command: `{doc['command']}`.",
        f"Protocol: prior `{p['prior']}`, noiseless `{p['op']}` m/n = {p['ratio']:g} at {p['size']} px, "
        f"images {', '.join(p['images'])}, seeds {p['seeds']} ({len(p['images']) * len(p['seeds'])} problems); "
        "deepinv gets recon's operator through `to_deepinv`, so A and y are identical.",
        "",
        "| solver | PSNR (dB) | SSIM | LPIPS | residual | s / run |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in s.items():
        lines.append(f"| {name} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['lpips']:.3f} | {v['residual']:.3f} | {v['time_s']:.1f} |")
    st = doc["settings"]
    lines.append("")
    for a in SOLVERS[:2]:
        mean, se, n = paired(doc["runs"], a, SOLVERS[2])
        lines.append(f"- PSNR {a} - {SOLVERS[2]}: {mean:+.2f} dB (standard error {se:.2f} over {n} problems, paired).")
    lines += [
        "",
        f"Settings: recon csgm = CSGMConfig paper (Adam lr {st['recon csgm']['lr']}, {st['recon csgm']['steps']} steps, "
        f"{st['recon csgm']['restarts']} restarts from N(0, I), best restart by measurement loss); recon csgm r=1 = the same with "
        f"1 restart; deepinv = `CSGMGenerator(inf_max_iter={st['deepinv CSGMGenerator']['inf_max_iter']}, "
        f"inf_lr={st['deepinv CSGMGenerator']['inf_lr']}, inf_tol=0)`: Adam on one latent from U[-1, 1], mean-squared "
        "measurement loss, last iterate returned (deepinv has no restarts and no best-iterate tracking). Means over all "
        "problems; residual = ||A x_hat - y|| / ||y||; times are wall seconds per run, other jobs sharing the cores.",
        "",
        f"Per-step cost, apart from the runs: median wall seconds of {doc['step_timing']['steps']} steps on one latent "
        f"(first problem, {doc['step_timing']['repeats']} interleaved repeats): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in doc["step_timing"]["median_s"].items())
        + ". deepinv's loop, as shipped, also computes the gradients of every generator weight (they require grad; only z "
        "is optimised); recon's solvers freeze them. The frozen run is deepinv's loop with the weights' requires_grad "
        "turned off (what a deepinv user can do); it returns the same estimate, since the weights never change.",
        "",
        "PSNR per problem:",
        "",
        "| image | seed | " + " | ".join(SOLVERS) + " |",
        "|---|---|" + "---|" * len(SOLVERS),
    ]
    cells = {}
    for r in doc["runs"]:
        cells.setdefault((r["image"], r["seed"]), {})[r["solver"]] = r["psnr"]
    for (img, seed), v in cells.items():
        lines.append(f"| {img} | {seed} | " + " | ".join(f"{v[k]:.2f}" for k in SOLVERS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
