"""How much faster is solving K images as one batch than one by one? (ILO, mGANprior on a CPU)

For each case (zoo prior, method, K) it builds K cs-gaussian problems (m/n 0.1, one Gaussian
matrix per image, real images: Fashion-MNIST test images for the grey 32 px priors, the
astronaut face for ``dcgan-faces-64``), warms up with one solve, then times
``solve_batch(problems)`` and K calls of ``solve`` with the same seeds (common.problem_seeds),
alternating the two ``--repeats`` times and keeping each one's fastest time. Steps are reduced
(ILO 30/20/10, mGANprior 30) because only the ratio matters: the per-step cost is what batching
changes. The speedup is what ``recon reconstruct FOLDER --batch-images K`` (and
``benchmarks/rtil.py --batch-images``) gain in the solve; loading, measuring and writing are
the same either way.

    python benchmarks/batch_speed.py                 # writes results/batch_speed.{json,md}
    python benchmarks/batch_speed.py --smoke         # tiny random priors, temp output (tests)

Run it on an otherwise idle machine: other processes on the cores distort both timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon_core.images import atomic_write_text, example_image  # noqa: E402
from recon_core.operators import build  # noqa: E402
from recon_core.solvers import BATCH_METHODS, METHODS, Problem  # noqa: E402
from recon_core.solvers.common import problem_seeds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: (prior, method, K, config overrides)
CASES = [
    ("stylegan2-fmnist-32", "ilo", 10, {"steps": (30, 20, 10)}),
    ("dcgan-fmnist-32", "ilo", 10, {"steps": (30, 20, 10)}),
    ("dcgan-faces-64", "ilo", 4, {"steps": (30, 20, 10)}),
    ("pggan-fmnist-32", "mgan", 10, {"steps": 30, "layer": 2}),
]


def images_for(prior, k: int) -> torch.Tensor:
    """k real test images at the prior's resolution and channels, (k, C, R, R) in [0, 1]."""
    C, R = prior.meta.channels, prior.meta.resolution
    if C == 1:
        from recon_core.training.data import load_source

        return load_source("fashion-mnist", R, 1, split="test").get(list(range(k)))[0]
    return example_image(size=R).repeat(k, 1, 1, 1)


def time_case(prior, method: str, k: int, overrides: dict, repeats: int, x: torch.Tensor) -> dict:
    """Best-of-``repeats`` seconds of one batched solve of k problems and of k single solves."""
    cfg_cls, solve = METHODS[method]
    cfg = cfg_cls(**overrides)
    solve_batch = BATCH_METHODS[method]
    C, R = prior.meta.channels, prior.meta.resolution
    ops = [build("cs-gaussian", (C, R, R), seed=j, ratio=0.1) for j in range(k)]
    problems = [Problem(A, A.A(x[j : j + 1])) for j, A in enumerate(ops)]
    seeds = problem_seeds(0, k)
    solve(problems[0], prior, cfg, seed=0)  # warm-up (allocator, kernels)
    batched, single = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        solve_batch(problems, prior, cfg, seed=seeds)
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        for p, s in zip(problems, seeds):
            solve(p, prior, cfg, seed=s)
        single.append(time.perf_counter() - t)
    b, s = min(batched), min(single)
    return {"batched_s": b, "one_by_one_s": s, "speedup": s / b, "config": {k_: list(v) if isinstance(v, tuple) else v for k_, v in overrides.items()}}


def report(doc: dict) -> str:
    lines = ["# Batched vs one-by-one solving (CPU)", "",
             f"Measured {doc['date']} on {doc['machine']}; best of {doc['repeats']} alternating repeats, "
             "reduced steps (only the ratio matters; see `benchmarks/batch_speed.py`).", "",
             "| prior | method | K images | batched (s) | one by one (s) | speedup |", "|---|---|---|---|---|---|"]
    for r in doc["cases"]:
        lines.append(f"| `{r['prior']}` | {r['method']} | {r['k']} | {r['batched_s']:.2f} | {r['one_by_one_s']:.2f} | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "batch_speed.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny random DCGAN, K 3, temp output")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cases, out = CASES, Path(a.out)
    if a.smoke:
        from recon_core.generators.checkpoints import build_adapter, save_checkpoint

        tmp = Path(tempfile.mkdtemp(prefix="batch_speed_"))
        torch.manual_seed(0)
        save_checkpoint(build_adapter("dcgan", resolution=32, nc=1, ngf=4, nz=8).eval(), tmp / "tiny.pt")
        cases = [(str(tmp / "tiny.pt"), "ilo", 3, {"steps": (3, 2, 2)}), (str(tmp / "tiny.pt"), "mgan", 3, {"steps": 3, "n_codes": 2})]
        out = tmp / "batch_speed.json"
    from recon_core.generators.zoo import resolve_prior

    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "repeats": a.repeats,
           "machine": f"{platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s), CPU",
           "cases": []}
    for name, method, k, overrides in cases:
        prior = resolve_prior(name, device="cpu")
        row = {"prior": name if not a.smoke else "tiny-dcgan", "method": method, "k": k,
               **time_case(prior, method, k, overrides, a.repeats, images_for(prior, k))}
        doc["cases"].append(row)
        print(f"{row['prior']} {method} K={k}: batched {row['batched_s']:.2f} s, one by one {row['one_by_one_s']:.2f} s, "
              f"speedup {row['speedup']:.2f}x", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), report(doc))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
