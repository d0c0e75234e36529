"""A method's fast preset vs its paper preset on every architecture of the zoo (the 32 px
Fashion-MNIST priors): 4 Fashion-MNIST test images (indices 1-4, not used to train or tune),
cs-gaussian m/n 0.1 and inpainting 30 %, noiseless, the paper's per-architecture settings
(make_config). One process, arms interleaved per image. Generator Surgery (the default) writes
benchmarks/results/fast_zoo.{json,md}, another method fast_zoo_<method>.{json,md}.

    python benchmarks/fast_zoo.py [--method surgery|ilo|...] [--threads 1]
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
    ap.add_argument("--method", default="surgery", help="a generator method with a fast preset (surgery, ilo, mgan, ...)")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/fast_zoo[_<method>].json")
    a = ap.parse_args(argv)
    method = a.method
    get_method(method)  # an unknown name fails here, before any prior loads
    out = a.out or ROOT / "benchmarks" / "results" / ("fast_zoo.json" if method == "surgery" else f"fast_zoo_{method}.json")
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
                    cfg = make_config(method, preset, G.meta.architecture, G.cut_points)
                    t0 = time.perf_counter()
                    r = get_method(method)[1](Problem(A, A.A(x)), G, cfg, seed=k)
                    runs.append({"prior": name, "op": op, "image": k + 1, "preset": preset, "cut": getattr(cfg, "cut", None),
                                 "psnr": float(psnr(x, r.x_hat.clamp(0, 1))), "seconds": time.perf_counter() - t0,
                                 "evaluations": r.extra["evaluations"]})
    doc = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": a.threads, "method": method, "runs": runs}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    flag = "" if method == "surgery" else f" --method {method}"
    lines = [f"# {method}: fast vs paper preset on every zoo architecture ({doc['when']}, {a.threads} thread(s))", "",
             f"Produced by `python benchmarks/fast_zoo.py{flag}`. Mean over 4 Fashion-MNIST test images; noiseless.", "",
             "| prior | operator | cut | PSNR paper | PSNR fast | fast - paper (+- SE) | seconds paper | seconds fast |",
             "|---|---|---|---|---|---|---|---|"]
    for name in PRIORS:
        for op in OPS:
            p = [r for r in runs if r["prior"] == name and r["op"] == op and r["preset"] == "paper"]
            f = [r for r in runs if r["prior"] == name and r["op"] == op and r["preset"] == "fast"]
            d = [b["psnr"] - a_["psnr"] for a_, b in zip(p, f)]
            se = statistics.stdev(d) / len(d) ** 0.5
            lines.append(f"| {name} | {op} | {'-' if p[0]['cut'] is None else p[0]['cut']} | {statistics.mean(r['psnr'] for r in p):.2f} | "
                         f"{statistics.mean(r['psnr'] for r in f):.2f} | {statistics.mean(d):+.2f} +- {se:.2f} | "
                         f"{statistics.mean(r['seconds'] for r in p):.2f} | {statistics.mean(r['seconds'] for r in f):.2f} |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
