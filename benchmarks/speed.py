"""Speed at equal quality: the papers' recipes written plainly vs recon's paper preset vs recon's
fast defaults, side by side in one process (issue 14).

Arms, each on the same measurements and restart seeds:
- ``recipe``: the paper's recipe as its reference code runs it, written here with plain torch:
  restarts one after another at batch 1 (Surgery: ``torch.optim.LBFGS(lr=0.1)`` without line
  search, 25 steps of up to 20 iterations; CSGM: ``torch.optim.Adam(lr=0.1)``, 500 steps), the
  restart with the lowest measurement loss kept;
- ``paper``: recon with ``preset="paper"`` (restarts batched, same schedule);
- ``fast``: recon's default fast preset (line-search L-BFGS, restart pruning, stopping rules).

Protocol: the 6 real photos of benchmarks/data/photos (64 px) x seeds x operators {cs-gaussian
m/n 0.05, 0.1, 0.2 with the papers' noise ||eta|| = 0.1 (cs-norm), inpaint 10 % of pixels, superres
x4 (both noiseless)}, prior dcgan-faces-64. Arms run interleaved cell by cell (so machine load
hits all arms alike). The same run measures this machine's sgemm GFLOP/s and memory bandwidth.
The fast settings were tuned on other images (benchmarks/tune_fast.py). Results are appended to
``--out`` after every run (rerun to resume) and summarised in speed.md / speed.png.

The other generator methods (``--methods ilo,mgan,iagan``; no plain recipe arm) compare their
fast schedule (the fast preset, or the candidate a method did not adopt: ``fast_candidate``)
with their paper preset; their protocol (stated in speed.md) is seed 0 x the 6 photos x
{cs-gaussian m/n 0.1, inpaint 10 %, superres x4}: the paper schedules take minutes per image.

    python benchmarks/speed.py                          # the full protocol
    python benchmarks/speed.py --report-only            # rebuild speed.md / speed.png from speed.json
    python benchmarks/speed.py --merge a.json,b.json --out X.json --note "..."   # join partial runs, with a caveat
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from recon_core.pipeline import NOISE_SEED_OFFSET as NOISE_OFFSET, SOLVER_SEED_OFFSET as SOLVER_OFFSET, simulate  # noqa: E402
from recon_core.solvers import Problem  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: operator label -> (kind, params, noise convention, noise value)
OPERATORS = {
    "cs-0.05": ("cs-gaussian", {"ratio": 0.05}, "cs-norm", 0.1),
    "cs-0.1": ("cs-gaussian", {"ratio": 0.1}, "cs-norm", 0.1),
    "cs-0.2": ("cs-gaussian", {"ratio": 0.2}, "cs-norm", 0.1),
    "inpaint-0.1": ("inpaint", {"frac": 0.1}, "per-entry", 0.0),
    "superres-4": ("superres", {"factor": 4}, "per-entry", 0.0),
}


def measure(x: torch.Tensor, op: str, seed: int) -> Problem:
    """The problem of image x (1, 3, 64, 64) under operator label ``op`` with ``seed``, as
    `recon reconstruct --seed` would build it (recon_core.pipeline.simulate)."""
    kind, params, conv, value = OPERATORS[op]
    return simulate(x, kind, params, seed, value, conv)[0]


# ---------------------------------------------------------------------------------------------
# the recipes, written plainly (sequential restarts at batch 1, torch's own optimisers)


def _init_rows(G, cut: int, restarts: int, init: str, seed: int) -> list:
    """The restarts' initial states, drawn exactly as recon draws them (same seed), one per row."""
    from recon_core.solvers.common import seeded_rng

    s = G.init_state(cut, restarts, init=init, rng=seeded_rng(seed))
    return [{k: v[r : r + 1].clone() for k, v in s.items()} for r in range(restarts)]


def recipe(method: str, problem: Problem, G, seed: int, restarts: int = 3, lbfgs_steps: int = 25, adam_steps: int = 500) -> dict:
    """The paper's recipe for ``method`` (surgery: LBFGS lr 0.1, 25 x up to 20 iterations, cut 1,
    CN init; csgm: Adam lr 0.1 x 500, z ~ N(0, I)), restarts one after another; the restart with
    the lowest final measurement loss is kept. Returns {"x_hat", "evaluations", "seconds"}."""
    A, y = problem.A, problem.y
    cut, init = (1, "cn") if method == "surgery" else (0, "prior")
    evals = 0
    best = (math.inf, None)
    t0 = time.perf_counter()
    for p in G.parameters():
        p.requires_grad_(False)
    for s in _init_rows(G, cut, restarts, init, seed):
        params = [v.requires_grad_(True) for v in s.values()]

        def loss():
            nonlocal evals
            evals += 1
            return (A.A(G.tail(s, cut)) - y).pow(2).sum()

        if method == "surgery":
            opt = torch.optim.LBFGS(params, lr=0.1)

            def closure():
                opt.zero_grad()
                value = loss()
                value.backward()
                return value

            for _ in range(lbfgs_steps):
                opt.step(closure)
        else:
            opt = torch.optim.Adam(params, lr=0.1)
            for _ in range(adam_steps):
                opt.zero_grad()
                loss().backward()
                opt.step()
        with torch.no_grad():
            x = G.tail(s, cut)
            f = float((A.A(x) - y).pow(2).sum())
        if f < best[0]:
            best = (f, x)
    return {"x_hat": best[1], "evaluations": evals, "seconds": time.perf_counter() - t0}


def recon_arm(method: str, preset: str, problem: Problem, G, seed: int) -> dict:
    """recon's solver for ``method`` with ``preset`` (paper | fast)."""
    from recon_core.solvers import fast_candidate, get_method, make_config
    from recon_core.solvers.common import config_dict

    # the fast arm: the method's fast preset, or a candidate it did not adopt (solvers.fast_candidate)
    cfg = make_config(method, preset, G.meta.architecture) if preset == "paper" else fast_candidate(method, G.meta.architecture)
    t0 = time.perf_counter()
    r = get_method(method)[1](problem, G, cfg, seed=seed)
    # the arm's settings go into its run record, so a report rebuilt after a default changes
    # still says what each row ran
    return {"x_hat": r.x_hat, "evaluations": r.extra["evaluations"], "seconds": time.perf_counter() - t0,
            "stop": r.extra.get("stop"), "config": config_dict(cfg)}


# ---------------------------------------------------------------------------------------------
# the machine's physical limits, measured in the same run


def machine_limits() -> dict:
    """sgemm GFLOP/s (2048 x 2048 float32 matmul) and memory bandwidth GB/s (copying 400 MB),
    best of 5 with torch's current thread count."""
    def best(f, k=5):
        f()
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    a = torch.randn(2048, 2048)
    gflops = 2 * 2048 ** 3 / best(lambda: a @ a) / 1e9
    big = torch.randn(50_000_000)
    out = torch.empty_like(big)
    gbs = 2 * big.numel() * 4 / best(lambda: out.copy_(big)) / 1e9
    return {"sgemm_gflops": gflops, "copy_gbs": gbs, "threads": torch.get_num_threads()}


def cost_model(G, problem: Problem, rows: int) -> dict:
    """Seconds of one batched evaluation (generator forward + backward at cut 1 and the operator
    with its adjoint) for ``rows`` restarts, and the floor set by the machine: the dense operator
    must read its matrix twice per evaluation, the generator does ``flops`` multiply-adds."""
    from recon_core.solvers.common import seeded_rng

    s = G.init_state(1, rows, init="cn", rng=seeded_rng(0))
    s = {k: v.requires_grad_(True) for k, v in s.items()}

    def ev():
        (problem.A.A(G.tail(s, 1)) - problem.y).pow(2).sum().backward()

    ev()
    t0 = time.perf_counter()
    for _ in range(10):
        ev()
    return {"rows": rows, "eval_s": (time.perf_counter() - t0) / 10}


# ---------------------------------------------------------------------------------------------
# the protocol


ARMS = ("recipe", "paper", "fast")
METHODS = ("surgery", "csgm")
#: the other generator methods: no plain recipe arm (their paper preset is the papers' schedule),
#: so their fast preset is compared with their paper preset
OTHER_METHODS = ("ilo", "mgan", "iagan", "hybrid", "deep-decoder")


def arms_of(method: str) -> tuple:
    """The arms measured for ``method``: recipe / paper / fast, or paper / fast."""
    return ARMS if method in METHODS else ("paper", "fast")


def photos_64() -> list:
    """[(name, (1, 3, 64, 64))] the six report photos (benchmarks/data/photos)."""
    from recon_core.images import load_image

    d = ROOT / "benchmarks" / "data" / "photos"
    return [(p.stem, load_image(p, channels=3)) for p in sorted(d.glob("*.png"))]


def _load(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"runs": {}, "machine": [], "cost": []}


def _save(path: Path, doc: dict) -> None:
    from recon_core.images import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def run(out: Path, seeds, images, ops, methods, arms) -> dict:
    """Run every missing (seed, image, op, method, arm) run; seeds outermost so a partial run
    covers whole seeds of every image first."""
    from recon_core.generators.zoo import load_prior
    from recon_core.metrics import compute_metrics

    doc = _load(out)
    doc["host"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                   "threads": torch.get_num_threads()}
    doc["machine"].append({"when": time.strftime("%Y-%m-%d %H:%M:%S"), **machine_limits()})
    G = load_prior("dcgan-faces-64")
    pics = [(n, x) for n, x in photos_64() if n in images]
    for seed in seeds:
        for name, x in pics:
            for op in ops:
                problem = measure(x, op, seed)
                if op == "cs-0.1" and seed == seeds[0] and name == pics[0][0]:
                    doc["cost"].append({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "op": op,
                                        "evals": [cost_model(G, problem, r) for r in (1, 3)]})
                for method in methods:
                    for arm in [a for a in arms if a in arms_of(method)]:
                        key = f"{name}|{op}|{seed}|{method}|{arm}"
                        if key in doc["runs"]:
                            continue
                        solver_seed = seed + SOLVER_OFFSET
                        res = recipe(method, problem, G, solver_seed) if arm == "recipe" else \
                            recon_arm(method, arm, problem, G, solver_seed)
                        m = compute_metrics(x, res["x_hat"].clamp(0, 1), problem.y, problem.A)
                        doc["runs"][key] = {"image": name, "op": op, "seed": seed, "method": method, "arm": arm,
                                            "psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"],
                                            "seconds": res["seconds"], "evaluations": res["evaluations"],
                                            "stop": res.get("stop"), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                                            **({"config": res["config"]} if "config" in res else {})}
                        _save(out, doc)
                        print(key, f"{m['psnr']:.2f} dB {res['seconds']:.1f} s {res['evaluations']} evals", flush=True)
    return doc


def _mean_se(v: list) -> tuple:
    m = statistics.mean(v)
    se = statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return m, se


def complete_cells(doc: dict, method: str, arms=None) -> dict:
    """(image, op, seed) -> {arm: run} for the cells where every arm of ``method`` finished."""
    arms = arms_of(method) if arms is None else arms
    cells = {}
    for r in doc["runs"].values():
        if r["method"] == method:
            cells.setdefault((r["image"], r["op"], r["seed"]), {})[r["arm"]] = r
    return {k: v for k, v in cells.items() if all(a in v for a in arms)}


def summary(doc: dict) -> list:
    """One row per (method, op, arm) over the complete cells: n, mean +- SE of PSNR, SSIM, LPIPS,
    mean seconds, mean evaluations, and the mean of per-cell time ratios arm / reference (the
    recipe for surgery and csgm, the paper preset for the other methods: row["ref"])."""
    rows = []
    for method in METHODS + OTHER_METHODS:
        cells = complete_cells(doc, method)
        ref = arms_of(method)[0]
        for op in OPERATORS:
            cs = [v for (i, o, s), v in cells.items() if o == op]
            if not cs:
                continue
            for arm in arms_of(method):
                runs = [c[arm] for c in cs]
                row = {"method": method, "op": op, "arm": arm, "n": len(runs), "ref": ref}
                for k in ("psnr", "ssim", "lpips"):
                    row[k], row[k + "_se"] = _mean_se([r[k] for r in runs])
                row["seconds"] = statistics.mean(r["seconds"] for r in runs)
                row["evaluations"] = statistics.mean(r["evaluations"] for r in runs)
                row["time_ratio"] = statistics.mean(c[arm]["seconds"] / c[ref]["seconds"] for c in cs)
                row["psnr_vs_paper"], row["psnr_vs_paper_se"] = _mean_se([c[arm]["psnr"] - c["paper"]["psnr"] for c in cs])
                rows.append(row)
    return rows


def compact_table(doc: dict, methods=METHODS) -> str:
    """The README's table for ``methods`` (all with the same arms): per method and operator,
    mean PSNR and seconds of each arm, fast vs paper PSNR difference (+- SE) and fast /
    reference time (the recipe, or the paper preset where there is no recipe arm)."""
    rows = summary(doc)
    arms_ = arms_of(methods[0])
    names = " / ".join(arms_)
    out = [f"| method | operator | n | PSNR {names} (dB) | fast - paper (dB) | seconds {names} | fast / {arms_[0]} time |",
           "|---|---|---|---|---|---|---|"]
    for method in methods:
        for op in OPERATORS:
            arms = {r["arm"]: r for r in rows if r["method"] == method and r["op"] == op}
            if len(arms) < len(arms_):
                continue
            f = arms["fast"]
            psnrs = " / ".join(f"{arms[a]['psnr']:.2f}" for a in arms_)
            secs = " / ".join(f"{arms[a]['seconds']:.1f}" for a in arms_)
            out.append(f"| {method} | {op} | {f['n']} | {psnrs} | {f['psnr_vs_paper']:+.2f} +- {f['psnr_vs_paper_se']:.2f} | "
                       f"{secs} | {f['time_ratio']:.3f} |")
    return "\n".join(out)


def flops_per_row(op: str) -> dict:
    """FLOPs of one evaluation for one row (generator forward + backward to the cut-1 state, the
    operator and its adjoint; torch's FlopCounterMode) and the bytes of a dense operator's matrix
    (read twice per batched evaluation; 0 for the structured operators)."""
    from torch.utils.flop_counter import FlopCounterMode

    from recon_core.generators.zoo import load_prior
    from recon_core.solvers.common import seeded_rng

    G = load_prior("dcgan-faces-64")
    problem = measure(torch.rand(1, 3, 64, 64, generator=seeded_rng(0)), op, 0)
    s = {k: v.requires_grad_(True) for k, v in G.init_state(1, 1, init="cn", rng=seeded_rng(0)).items()}
    for p in G.parameters():
        p.requires_grad_(False)
    with FlopCounterMode(display=False) as fc:
        (problem.A.A(G.tail(s, 1)) - problem.y).pow(2).sum().backward()
    matrix = getattr(problem.A, "matrix", None)
    return {"flops": fc.get_total_flops(), "matrix_bytes": 0 if matrix is None else matrix.numel() * matrix.element_size()}


#: rows per batched evaluation: the recipe runs one restart at a time, the paper preset three;
#: the fast preset 3 and then 1 after pruning, so 1 is a lower bound for it
ROWS = {"recipe": 1, "paper": 3, "fast": 1}


def limits_table(doc: dict, rows: list) -> list:
    """Each arm's share of the machine: achieved GFLOP/s (FLOPs of its row evaluations / its
    seconds; a lower bound for fast) against the measured sgemm rate, and for the dense operator
    the bandwidth of reading its matrix twice per evaluation against the measured copy rate."""
    peak = statistics.median(m["sgemm_gflops"] for m in doc["machine"])
    bw = statistics.median(m["copy_gbs"] for m in doc["machine"])
    cost = doc.setdefault("flops", {})
    out = [f"Share of the machine's limits (median of the runs' measurements: sgemm {peak:.0f} GFLOP/s, copy {bw:.1f} GB/s, "
           "1 thread): GFLOP/s achieved = FLOPs per row evaluation (torch FlopCounterMode) x rows x evaluations / seconds "
           "(fast: counted at 1 row, a lower bound); matrix GB/s = the dense matrix read twice per evaluation / seconds.", "",
           "| method | operator | arm | GFLOP/s | share of sgemm | matrix GB/s | share of copy bandwidth |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["op"] not in cost:
            cost[r["op"]] = flops_per_row(r["op"])
        c = cost[r["op"]]
        gf = c["flops"] * ROWS[r["arm"]] * r["evaluations"] / r["seconds"] / 1e9
        gb = 2 * c["matrix_bytes"] * r["evaluations"] / r["seconds"] / 1e9
        out.append(f"| {r['method']} | {r['op']} | {r['arm']} | {gf:.1f} | {gf / peak:.0%} | "
                   + (f"{gb:.1f} | {gb / bw:.0%} |" if gb else "- | - |"))
    return out + [""]


def report(doc: dict, out_md: Path, out_png: Path) -> str:
    """speed.md (tables from the raw runs) and speed.png (PSNR vs seconds per arm)."""
    rows = summary(doc)
    lim = doc["machine"]
    cost = doc.get("cost", [])
    n_runs = len(doc["runs"])
    from recon_core.solvers import FAST_METHODS

    # methods whose fast arm ran a candidate they do not use by default
    candidates = sorted({r["method"] for r in doc["runs"].values() if r["arm"] == "fast"} - set(FAST_METHODS))
    named = " and ".join(filter(None, [", ".join(candidates[:-1]), *candidates[-1:]]))  # "a, b and c"
    lines = [
        "# Speed: paper recipe vs recon paper preset vs recon fast preset",
        "",
        f"Produced by `python benchmarks/speed.py` ({n_runs} runs; host: {doc['host']['platform']}, "
        f"{doc['host']['cpus']} CPUs, torch {doc['host']['torch']}, {doc['host']['threads']} threads). Prior dcgan-faces-64; "
        "the 6 photos of benchmarks/data/photos at 64 px; operators as in the script's docstring. Only cells where all "
        "arms of a method finished are counted (n = images x seeds). PSNR/SSIM/LPIPS: mean +- standard error; seconds: mean "
        "wall time of the solve alone (no start-up, loading or writing); ratio: mean over cells of arm time / recipe time "
        "(surgery, csgm) or / paper-preset time (the other methods, which have no recipe arm), measured side by side in "
        "one process. The fast settings were tuned on other images (benchmarks/tune_fast.py)." + (
            f" For {named} the fast arm is a candidate schedule that is not the default (it lost quality); "
            "their default is the paper schedule under both presets." if candidates else ""),
        "",
        *([doc["note"], ""] if doc.get("note") else []),
        "Machine limits measured in the same run(s): " + "; ".join(
            f"{m['when']}: sgemm {m['sgemm_gflops']:.0f} GFLOP/s, copy {m['copy_gbs']:.1f} GB/s ({m['threads']} threads)" for m in lim),
        "",
    ]
    if cost:
        c = cost[-1]
        lines += ["One batched evaluation (generator forward + backward at cut 1, the dense operator and its adjoint, "
                  "cs-gaussian m/n 0.1): " + ", ".join(f"{e['rows']} row(s) {1000 * e['eval_s']:.1f} ms" for e in c["evals"]) + ".", ""]
    for method in METHODS + OTHER_METHODS:
        mr = [r for r in rows if r["method"] == method]
        if not mr:
            continue
        lines += [f"## {method}", "",
                  f"| operator | arm | n | PSNR (dB) | SSIM | LPIPS | PSNR - paper | seconds | evaluations | time / {mr[0]['ref']} |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in mr:
            lines.append(f"| {r['op']} | {r['arm']} | {r['n']} | {r['psnr']:.2f} +- {r['psnr_se']:.2f} | {r['ssim']:.3f} | "
                         f"{r['lpips']:.3f} | {r['psnr_vs_paper']:+.2f} +- {r['psnr_vs_paper_se']:.2f} | {r['seconds']:.2f} | "
                         f"{r['evaluations']:.0f} | {r['time_ratio']:.3f} |")
        lines.append("")
    lines += ["## Summary (the README's table)", "", compact_table(doc), ""]
    if any(r["method"] in OTHER_METHODS for r in rows):
        lines += ["## The other generator methods: fast vs paper preset", "", compact_table(doc, OTHER_METHODS), ""]
    lines += ["## Physical limits", ""] + limits_table(doc, [r for r in rows if r["method"] in METHODS])
    extra = doc.get("throughput")
    if extra:
        lines += ["## Throughput and fixed cost", ""] + [f"- {line}" for line in extra.get("lines", [])] + [""]
    text = "\n".join(lines)
    from recon_core.images import atomic_write_text

    atomic_write_text(out_md, text + "\n")
    _plot(rows, out_png)
    return text


def _plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon_core.solvers import FAST_METHODS

    methods = [m for m in METHODS + OTHER_METHODS if any(r["method"] == m for r in rows)]
    if not methods:
        return
    cols = min(3, len(methods))
    nrows = -(-len(methods) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    colours = {"recipe": "tab:grey", "paper": "tab:blue", "fast": "tab:red"}
    for ax, method in zip(axes.flat, methods):
        for arm in arms_of(method):
            pts = [r for r in rows if r["method"] == method and r["arm"] == arm]
            label = f"fast candidate (not {method}'s default)" if (arm == "fast" and method not in FAST_METHODS) else arm
            ax.scatter([r["seconds"] for r in pts], [r["psnr"] for r in pts], c=colours[arm], label=label)
            for r in pts:
                ax.annotate(r["op"], (r["seconds"], r["psnr"]), fontsize=6, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("seconds per image (solve, log scale)")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(method)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median(v: list) -> float:
    return statistics.median(v)


def throughput(doc: dict, workdir: Path, n_images: int = 24, recipe_every: int = 4, repeats: int = 5,
               cli_extra=(), recipe_kw=None) -> dict:
    """Images per minute of `recon reconstruct FOLDER` (the CLI's defaults: surgery, fast preset;
    cs-gaussian m/n 0.1, cs-norm noise 0.1) on ``n_images`` real photos (the six report photos
    in four rotations each), wall time of the whole command (start-up, loading, writing
    included), against the recipe's solve time alone on every ``recipe_every``-th of them;
    and the fixed cost of a `pinv` run: its wall time minus Python's start-up with `import
    torch`, both timed ``repeats`` times interleaved. ``cli_extra`` / ``recipe_kw`` shorten
    both sides for the script's own test. Stores and returns doc["throughput"]."""
    import shutil
    import subprocess

    from recon_core.generators.zoo import load_prior
    from recon_core.images import save_image

    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / "images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    pics = photos_64()
    images = []
    for k in range(4):
        for name, x in pics:
            images.append((f"{name}_rot{k}", torch.rot90(x, k, dims=(2, 3)).contiguous()))
    images = images[:n_images]
    for name, x in images:
        save_image(x, folder / f"{name}.png")
    recon = str(Path(sys.executable).parent / "recon")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    batches = {}
    # one process with every thread (the default), and one worker process per core
    n_threads = str(torch.get_num_threads())
    for label, extra in (("jobs1", ["--threads", n_threads]), ("nobatch", ["--batch-images", "1", "--threads", n_threads]),
                         ("jobs2", ["--jobs", "2", "--threads", "1"])):
        out = workdir / f"batch_{label}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([recon, "reconstruct", str(folder), "--op", "cs-gaussian", "--ratio", "0.1", "--noise-convention", "cs-norm",
                        "--noise-std", "0.1", "--out", str(out), "--quiet", *extra, *cli_extra], check=True, env=env)
        seconds = time.perf_counter() - t0
        ok = [r for r in json.loads((out / "summary.json").read_text())["images"] if r["status"] == "ok"]
        batches[label] = {"seconds": seconds, "ok": len(ok), "images_per_min": 60 * len(ok) / seconds,
                          "mean_psnr": statistics.mean(r["metrics"]["psnr"] for r in ok), "args": extra}
    G = load_prior("dcgan-faces-64")
    rec_s, rec_psnr = [], []
    from recon_core.metrics import psnr as psnr_fn

    for i, (name, x) in enumerate(images):
        if i % recipe_every:
            continue
        problem = measure(x, "cs-0.1", 0)
        res = recipe("surgery", problem, G, SOLVER_OFFSET, **(recipe_kw or {}))
        rec_s.append(res["seconds"])
        rec_psnr.append(float(psnr_fn(x, res["x_hat"].clamp(0, 1))))
    # fixed cost of a run that solves (almost) nothing
    img = folder / f"{images[0][0]}.png"
    t_torch, t_pinv, solve_pinv = [], [], []
    for k in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        t_torch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([recon, "reconstruct", str(img), "--method", "pinv", "--out", str(workdir / "pinv"), "--force", "--quiet",
                        "--threads", str(torch.get_num_threads())], check=True, env=env)
        t_pinv.append(time.perf_counter() - t0)
        solve_pinv.append(json.loads((workdir / "pinv" / "metrics.json").read_text())["wall_time"]["solve"])
    recipe_per_min = 60 / statistics.mean(rec_s)
    for b in batches.values():
        b["speedup"] = b["images_per_min"] / recipe_per_min
    res = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": torch.get_num_threads(), "images": len(images), "batches": batches,
        "recipe_images": len(rec_s), "recipe_mean_seconds": statistics.mean(rec_s), "recipe_images_per_min": recipe_per_min,
        "recipe_mean_psnr": statistics.mean(rec_psnr),
        "import_torch_s": t_torch, "pinv_run_s": t_pinv, "pinv_solve_s": solve_pinv,
        "pinv_fixed_cost_s": _median(t_pinv) - _median(t_torch),
    }
    res["lines"] = [
        f"{res['when']}, {res['threads']} thread(s) available: `recon reconstruct FOLDER` (defaults: surgery, fast preset; "
        f"cs-gaussian m/n 0.1, cs-norm noise 0.1) on {len(images)} real photos (6 report photos x 4 rotations), wall time of "
        "the whole command: " + "; ".join(
            f"`{' '.join(b['args'])}` {b['seconds']:.1f} s, {b['images_per_min']:.1f} images/min, mean PSNR "
            f"{b['mean_psnr']:.2f} dB ({b['ok']} ok), {b['speedup']:.1f}x the recipe" for b in batches.values()) + ".",
        f"The recipe (Generator Surgery's reference schedule, sequential restarts, {res['threads']} thread(s)) on {len(rec_s)} of "
        f"them (every {recipe_every}th), solve alone: {statistics.mean(rec_s):.1f} s per image = {recipe_per_min:.2f} "
        f"images/min, mean PSNR {statistics.mean(rec_psnr):.2f} dB.",
        f"Fixed cost: `recon reconstruct IMAGE --method pinv` median {_median(t_pinv):.2f} s vs `python -c 'import torch'` "
        f"median {_median(t_torch):.2f} s ({repeats} runs each, interleaved): {res['pinv_fixed_cost_s']:.2f} s beyond Python start-up "
        f"and importing torch, of which the pinv solve itself (exact pseudo-inverse of the dense operator) median "
        f"{_median(solve_pinv):.2f} s.",
    ]
    doc["throughput"] = res
    return res


def merge(paths: list) -> dict:
    """One document from several partial runs (runs united, machine and cost lists joined)."""
    doc = {"runs": {}, "machine": [], "cost": []}
    for p in paths:
        d = _load(Path(p))
        doc["runs"].update(d["runs"])
        doc["machine"] += d.get("machine", [])
        doc["cost"] += d.get("cost", [])
        doc["host"] = d.get("host", doc.get("host"))
        if "throughput" in d:
            doc["throughput"] = d["throughput"]
        if "note" in d:
            doc["note"] = d["note"]
    return doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--images", default="astronaut_face,camera,chelsea,coffee,immunohistochemistry,rocket")
    ap.add_argument("--ops", default=",".join(OPERATORS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--merge", default="", help="comma-separated result files to merge into --out first")
    ap.add_argument("--throughput", action="store_true", help="measure the 24-image batch and pinv's fixed cost into --out")
    ap.add_argument("--note", default="", help="with --merge: a note stored in --out and printed under speed.md's title "
                    "(e.g. that its fast arm is a candidate that is not the default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    for op in a.ops.split(","):
        if op not in OPERATORS:
            ap.error(f"unknown operator label {op!r}; choose from {', '.join(OPERATORS)}")
    if a.merge:
        doc = merge([a.out] * a.out.exists() + [Path(p) for p in a.merge.split(",")])
        if a.note:
            doc["note"] = a.note
        _save(a.out, doc)
    elif a.throughput:
        doc = _load(a.out)
        throughput(doc, Path(os.environ.get("TMPDIR", "/tmp")) / "recon_speed_throughput")
        _save(a.out, doc)
    elif not a.report_only:
        run(a.out, [int(s) for s in a.seeds.split(",")], a.images.split(","), a.ops.split(","), a.methods.split(","), ARMS)
    print(report(_load(a.out), a.out.with_suffix(".md"), a.out.with_suffix(".png")))


if __name__ == "__main__":
    main()
