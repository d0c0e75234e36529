"""Every method on one protocol: real photos at 64 px, dcgan-faces-64, noiseless cs-gaussian.

Protocol (issue 4): the astronaut face crop and 5 more scikit-image photos
(benchmarks/make_photos.py), m/n in {0.05, 0.1, 0.2, 0.4}, seeds {0, 1, 2}. Each (image, ratio,
seed) cell runs every method on the same measurements; `csgm-bp` is CSGM followed by
back-projection. Results are appended to benchmarks/results/methods.json after every run (rerun
to resume), then summarised in methods.md and methods.png. PSNR is averaged as the mean of
per-image PSNR. Nothing is selected against the ground truth: each method returns the restart
with the lowest measurement loss.

    python benchmarks/methods.py                       # the full protocol (many CPU hours)
    python benchmarks/methods.py --seeds 0 --budget reduced   # what fits in a session

--budget paper uses every method's paper settings; --budget reduced shortens the slow methods
(listed in the output) and says so in the report; --budget smoke runs a few steps of each method
(the script's own test, tests/test_benchmark_methods.py).
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
from recon_core.images import atomic_write_bytes, atomic_write_text  # noqa: E402
from recon_core.pipeline import Grid, score, simulate, solve_problems  # noqa: E402
from recon_core.solvers import METHODS  # noqa: E402
from recon_core.solvers.postprocess import backproject  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ORDER = ["pinv", "lasso-dct", "csgm", "csgm-bp", "surgery", "ilo", "mgan", "iagan", "deep-decoder", "hybrid"]
#: shortened settings of the slow methods for --budget reduced (everything else: paper settings)
REDUCED = {
    "mgan": {"steps": 500},
    "iagan": {"csgm_steps": 500, "steps": 300},
    "deep-decoder": {"steps": 1500},
    "hybrid": {"n_pre": 200, "steps": 1500},
}

#: --budget smoke: a few steps of everything, to test the script end to end (not a result)
SMOKE = {
    "lasso-dct": {"steps": 3}, "csgm": {"steps": 3}, "surgery": {"steps": 1, "lbfgs_max_iter": 2},
    "ilo": {"steps": (2, 2, 2)}, "mgan": {"steps": 3}, "iagan": {"csgm_steps": 3, "steps": 2},
    "deep-decoder": {"steps": 3}, "hybrid": {"n_pre": 2, "steps": 3},
}
BUDGETS = {"paper": {}, "reduced": REDUCED, "smoke": SMOKE}


def configs(budget: str) -> dict:
    """Method name -> solver config: the paper settings, with the budget's shortened step counts."""
    out = {}
    for name in ORDER:
        base = "csgm" if name == "csgm-bp" else name
        cfg = METHODS[base][0]()
        out[name] = replace(cfg, **BUDGETS[budget].get(base, {}))
    return out


def solved(method: str, problem, G, cfg, seed: int):
    """One solve with the solver seed of the seed policy (recon_core.pipeline.solve_problems)."""
    res = solve_problems(method, [problem], G, cfg, seed)[0]
    if isinstance(res, Exception):
        raise res
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ratios", default="0.05,0.1,0.2,0.4")
    ap.add_argument("--budget", choices=list(BUDGETS), default="paper")
    ap.add_argument("--methods", default=",".join(ORDER))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "methods.json"))
    ap.add_argument("--images", default="", help="comma-separated subset of the photo names (default: all)")
    ap.add_argument("--report-only", action="store_true", help="only write methods.md/png from the results so far")
    ap.add_argument("--merge", default="", help="comma-separated result JSONs of parallel runs (other --out) to fold into --out")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    ratios = [float(r) for r in a.ratios.split(",")]
    methods = [m for m in ORDER if m in a.methods.split(",")]
    cfgs = configs(a.budget)
    path = Path(a.out)
    grid = Grid(path, cells="runs")  # one resumable document (recon_core.pipeline), keyed image|ratio|seed|method
    doc = grid.doc
    if doc.get("budget") not in (None, a.budget) and doc["runs"]:
        sys.exit(f"{path} holds runs with budget '{doc['budget']}'; use another --out for budget '{a.budget}'")
    if not a.report_only or "machine" not in doc:  # the machine line describes the runs, not the report
        doc["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, CPU only"
    doc["budget"] = a.budget
    doc["configs"] = {m: asdict(cfgs[m]) for m in methods}
    for other in filter(None, a.merge.split(",")):
        doc["runs"].update(json.loads(Path(other).read_text())["runs"])
    G = load_prior("dcgan-faces-64")
    imgs = [] if a.report_only else [(n, x) for n, x in photos(64) if not a.images or n in a.images.split(",")]
    # image-major order: a partial run still covers every ratio for the images it reached
    for seed in seeds:
        for name, x in imgs:
            for ratio in ratios:
                problem, _ = simulate(x, "cs-gaussian", {"ratio": ratio}, seed)  # the seed policy of `recon reconstruct`
                csgm_result = None  # csgm-bp back-projects this very CSGM estimate
                for method in methods:
                    key = f"{name}|{ratio:g}|{seed}|{method}"
                    if key in doc["runs"]:
                        continue
                    t0 = time.perf_counter()
                    if method == "csgm-bp":
                        if csgm_result is None:
                            csgm_result = solved("csgm", problem, G, cfgs["csgm"], seed)
                            t0 = time.perf_counter()
                        res = backproject(csgm_result, problem)
                        wall = csgm_result.wall_time + (time.perf_counter() - t0)
                    else:
                        res = solved(method, problem, G, cfgs[method], seed)
                        if method == "csgm":
                            csgm_result = res
                        wall = time.perf_counter() - t0
                    m = score(x, res.x_hat, problem)
                    grid.put(key, {"image": name, "ratio": ratio, "seed": seed, "method": method, "psnr": m["psnr"],
                                        "ssim": m["ssim"], "lpips": m["lpips"], "residual": m["residual"], "time_s": wall,
                                        **({"alpha": res.extra.get("alpha"), "beta": res.extra.get("beta")} if method == "hybrid" else {})})
                    print(f"{key}: PSNR {m['psnr']:.2f} ({wall:.1f} s)", flush=True)
    grid.save()
    report(doc, path.with_suffix(".md"), path.with_suffix(".png"), a)


def report(doc: dict, md: Path, png: Path, a) -> None:
    allruns = list(doc["runs"].values())
    names = {r["method"] for r in allruns}
    # compare methods on identical problems only: keep (image, ratio, seed) cells every method finished
    cells = {}
    for r in allruns:
        cells.setdefault((r["image"], r["ratio"], r["seed"]), []).append(r)
    complete = {k for k, v in cells.items() if {r["method"] for r in v} == names}
    runs = [r for r in allruns if (r["image"], r["ratio"], r["seed"]) in complete]
    dropped = sorted(set(cells) - complete)
    ratios = sorted({r["ratio"] for r in runs})
    methods = [m for m in ORDER if any(r["method"] == m for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    images = sorted({r["image"] for r in runs})

    def cell(m, ratio, key="psnr"):
        v = [r[key] for r in runs if r["method"] == m and r["ratio"] == ratio and r[key] is not None]
        return statistics.mean(v) if v else float("nan")

    lines = [
        "# All methods: noiseless cs-gaussian, dcgan-faces-64, 64 px real photos",
        "",
        f"Machine: {doc['machine']}; {time.strftime('%Y-%m-%d')}. Budget: `{doc['budget']}`"
        + {"paper": " (paper settings)", "reduced": f" (shortened: {json.dumps(REDUCED)})",
           "smoke": " (smoke test: a few steps per method, NOT a result)"}[doc["budget"]] + ".",
        f"Images ({len(images)}): {', '.join(images)}. Seeds: {seeds}. Runs: {len(runs)} in {len(complete)} complete "
        f"(image, m/n, seed) cells" + (f"; left out, unfinished: {', '.join(f'{i} m/n={r:g} seed {s}' for i, r, s in dropped)}" if dropped else "") + ".",
        "Cells per m/n: " + ", ".join(f"{r:g}: {sum(1 for k in complete if k[1] == r)}" for r in sorted({k[1] for k in complete})) + ".",
        f"Produced by `python benchmarks/methods.py --seeds {','.join(map(str, seeds))} --budget {doc['budget']} --threads 1` "
        "(possibly several processes on --images subsets, folded together with --merge). Times are wall seconds per run "
        "at 1 torch thread, with other jobs sharing the 2 cores.",
        "",
        "Mean PSNR (dB, mean of per-image PSNR) by m/n:",
        "",
        "| method | " + " | ".join(f"m/n={r:g}" for r in ratios) + " | mean SSIM | mean LPIPS | s / run |",
        "|---|" + "---|" * (len(ratios) + 3),
    ]
    for m in methods:
        t = statistics.mean(r["time_s"] for r in runs if r["method"] == m)
        ss = statistics.mean(r["ssim"] for r in runs if r["method"] == m)
        lp = [r["lpips"] for r in runs if r["method"] == m and r["lpips"] is not None]
        lines.append(f"| {m} | " + " | ".join(f"{cell(m, r):.2f}" for r in ratios)
                     + f" | {ss:.3f} | {statistics.mean(lp) if lp else float('nan'):.3f} | {t:.1f} |")
    gen = [m for m in ("csgm", "csgm-bp", "surgery", "ilo", "mgan", "iagan", "hybrid") if m in methods]
    checks = []
    for r in ratios:
        c = cell("csgm", r)
        checks.append(f"- m/n={r:g}: ILO >= CSGM: {cell('ilo', r) >= c}; IAGAN > CSGM: {cell('iagan', r) > c}; "
                      f"CSGM-BP > CSGM: {cell('csgm-bp', r) > c}; every generator method > pinv: "
                      f"{all(cell(m, r) > cell('pinv', r) for m in gen)}")
    # the same claims cell by cell (one image, m/n and seed): how often each holds, not just on average
    by_cell = {}
    for r in runs:
        by_cell.setdefault((r["image"], r["ratio"], r["seed"]), {})[r["method"]] = r["psnr"]
    tests = {"ILO >= CSGM": lambda c: c["ilo"] >= c["csgm"], "IAGAN > CSGM": lambda c: c["iagan"] > c["csgm"],
             "CSGM-BP > CSGM": lambda c: c["csgm-bp"] > c["csgm"],
             "every generator method > pinv": lambda c: all(c[m] > c["pinv"] for m in gen)}
    if {"ilo", "iagan", "csgm", "csgm-bp", "pinv"} <= set(methods):
        checks.append("- per (image, m/n, seed) cell: " + "; ".join(
            f"{name} in {sum(map(t, by_cell.values()))} of {len(by_cell)}" for name, t in tests.items()))
    lines += ["", "Claims checked on these numbers (mean PSNR):", ""] + checks + [""]
    if len(seeds) > 1:
        # seeds may have run in different sessions under different load: show their times apart
        lines += ["Mean wall seconds per run, by seed (each seed's runs were made together, at 1 torch thread):", "",
                  "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(
                f"{statistics.mean(r['time_s'] for r in runs if r['method'] == m and r['seed'] == s):.1f}" for s in seeds) + " |")
        lines.append("")
    atomic_write_text(md, "\n".join(lines))
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for m in methods:
        ax.plot(ratios, [cell(m, r) for r in ratios], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xticks(ratios)
    ax.set_xticklabels([f"{r:g}" for r in ratios])
    ax.set_xlabel("m/n")
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_title(f"cs-gaussian, noiseless, dcgan-faces-64, {len(images)} photos, seeds {seeds}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    atomic_write_bytes(png, buf.getvalue())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
