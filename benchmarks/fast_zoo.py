"""Generator Surgery's fast preset vs its paper preset on every architecture of the zoo (the 32 px
Fashion-MNIST priors): 4 Fashion-MNIST test images (indices 1-4, not used to train or tune),
cs-gaussian m/n 0.1 and inpainting 30 %, noiseless, the paper's per-architecture lr and cut
(make_config). One process, arms interleaved per image. Writes benchmarks/results/fast_zoo.{json,md}.

    python benchmarks/fast_zoo.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRIORS = ["dcgan-fmnist-32", "began-fmnist-32", "vae-fmnist-32", "biggan-fmnist-32", "pggan-fmnist-32", "stylegan2-fmnist-32"]
OPS = {"cs-0.1": ("cs-gaussian", {"ratio": 0.1}), "inpaint-0.3": ("inpaint", {"frac": 0.3})}


def main(argv=None) -> None:
    from recon_core.generators.zoo import load_prior
    from recon_core.metrics import psnr
    from recon_core.operators import build
    from recon_core.solvers import Problem, get_method, make_config
    from recon_core.training.data import load_source

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast_zoo.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    src = load_source("fashion-mnist", 32, 1, split="test")
    xs = [src.get([i])[0].reshape(1, 1, 32, 32) for i in (1, 2, 3, 4)]
    runs = []
    for name in PRIORS:
        G = load_prior(name)
        for op, (kind, kw) in OPS.items():
            for k, x in enumerate(xs):
                A = build(kind, tuple(x.shape[1:]), seed=k, **kw)
                for preset in ("paper", "fast"):
                    cfg = make_config("surgery", preset, G.meta.architecture, G.cut_points)
                    t0 = time.perf_counter()
                    r = get_method("surgery")[1](Problem(A, A.A(x)), G, cfg, seed=k)
                    runs.append({"prior": name, "op": op, "image": k + 1, "preset": preset, "cut": cfg.cut,
                                 "psnr": float(psnr(x, r.x_hat.clamp(0, 1))), "seconds": time.perf_counter() - t0,
                                 "evaluations": r.extra["evaluations"]})
    doc = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": a.threads, "runs": runs}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# Surgery fast vs paper preset on every zoo architecture ({doc['when']}, {a.threads} thread(s))", "",
             "Produced by `python benchmarks/fast_zoo.py`. Mean over 4 Fashion-MNIST test images; noiseless.", "",
             "| prior | operator | cut | PSNR paper | PSNR fast | fast - paper (+- SE) | seconds paper | seconds fast |",
             "|---|---|---|---|---|---|---|---|"]
    for name in PRIORS:
        for op in OPS:
            p = [r for r in runs if r["prior"] == name and r["op"] == op and r["preset"] == "paper"]
            f = [r for r in runs if r["prior"] == name and r["op"] == op and r["preset"] == "fast"]
            d = [b["psnr"] - a_["psnr"] for a_, b in zip(p, f)]
            se = statistics.stdev(d) / len(d) ** 0.5
            lines.append(f"| {name} | {op} | {p[0]['cut']} | {statistics.mean(r['psnr'] for r in p):.2f} | "
                         f"{statistics.mean(r['psnr'] for r in f):.2f} | {statistics.mean(d):+.2f} +- {se:.2f} | "
                         f"{statistics.mean(r['seconds'] for r in p):.2f} | {statistics.mean(r['seconds'] for r in f):.2f} |")
    text = "\n".join(lines) + "\n"
    a.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
