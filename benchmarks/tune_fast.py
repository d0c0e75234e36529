"""Tune the fast schedules of the generator methods on images that are NOT in the
speed report set: two real LFW faces (scikit-image's lfw_subset, 25 px, enlarged) and two other
scikit-image photos (motorcycle_left, hubble_deep_field). Same operators and noise as
benchmarks/speed.py. Each line of the output (JSON lines, appended; rerun to resume) is one run:
method, variant (paper, or a candidate of VARIANTS / OTHER_VARIANTS), image, operator, PSNR,
evaluations, time. ``--methods`` picks the methods (default surgery,csgm).

    python benchmarks/tune_fast.py --out benchmarks/results/tune_fast.jsonl [--images 0:2] [--seeds 0,1]
    python benchmarks/tune_fast.py --out benchmarks/results/tune_fast.jsonl --report [--baseline fast-150]

Rows without a "seed" are seed 0 (written before --seeds existed); a later row of the same cell
(method, variant, image, operator, seed) supersedes an earlier one in the report. Rows carry
"when" and "host" since 2026-12-03 04:00 (``--report --since`` compares one period's runs only:
the file mixes sessions with different code and hosts, whose time ratios do not compare).
``--tag T`` records the variants as NAME@T, so cells already in the file run again (a baseline
re-run beside new candidates) and ``--report --baseline paper@T`` compares with those runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import OPERATORS, measure  # noqa: E402

from recon_core.generators.zoo import load_prior  # noqa: E402
from recon_core.images import fit_image  # noqa: E402
from recon_core.metrics import psnr  # noqa: E402
from recon_core.pipeline import SOLVER_SEED_OFFSET  # noqa: E402
from recon_core.solvers import get_method, make_config  # noqa: E402

#: variant -> config overrides on the paper config (fast-B: lbfgs-ls with a budget of B evaluations)
LS = {"optimizer": "lbfgs-ls", "prune_after": 0.3}
VARIANTS = {
    "fast-60": {**LS, "steps": 60}, "fast-100": {**LS, "steps": 100}, "fast-150": {**LS, "steps": 150},
    "fast-100-noprune": {**LS, "steps": 100, "prune_after": 0.0},
    "fast-100-r10": {**LS, "steps": 100, "restarts": 10}, "fast-150-r10": {**LS, "steps": 150, "restarts": 10},
    "fast-120-r10-p15": {**LS, "steps": 120, "restarts": 10, "prune_after": 0.15},
    "adam-150": {"optimizer": "adam", "steps": 150}, "adam-200-r6": {"optimizer": "adam", "steps": 200, "restarts": 6},
    # earlier pruning (15 % of the budget): fewer 3-row evaluations
    "fast-150-p15": {**LS, "steps": 150, "prune_after": 0.15}, "fast-130-p15": {**LS, "steps": 130, "prune_after": 0.15},
    # smaller budgets and 2 restarts: toward 0.1 x the recipe's time (session 4)
    "fast-120": {**LS, "steps": 120}, "fast-120-p20": {**LS, "steps": 120, "prune_after": 0.2},
    "fast-150-p20": {**LS, "steps": 150, "prune_after": 0.2}, "fast-150-r2": {**LS, "steps": 150, "restarts": 2},
    "fast-150-r1": {**LS, "steps": 150, "restarts": 1}, "fast-150-r2-p20": {**LS, "steps": 150, "restarts": 2, "prune_after": 0.2},
    # looser convergence stops (relative loss change over 5 iterations): stop where the loss plateaus
    "fast-150-r2-t3": {**LS, "steps": 150, "restarts": 2, "stop_tol": 3e-3},
    "fast-150-r2-t10": {**LS, "steps": 150, "restarts": 2, "stop_tol": 1e-2},
    # one / three restarts started from the lowest-loss of 64 random draws (screen): session 9
    "fast-150-r1-s64": {**LS, "steps": 150, "restarts": 1, "screen": 64},
    "fast-150-s64": {**LS, "steps": 150, "screen": 64}, "fast-100-s64": {**LS, "steps": 100, "screen": 64},
    # the first 60 / 80 / 90 % of the budget evaluated with a bfloat16 copy of the generator: session 10
    "fast-150-b60": {**LS, "steps": 150, "bf16_share": 0.6}, "fast-150-b80": {**LS, "steps": 150, "bf16_share": 0.8},
    "fast-150-b90": {**LS, "steps": 150, "bf16_share": 0.9},
    # fast-150 itself under another name: re-run beside the b-variants for same-session time ratios
    "fast-150-b0": {**LS, "steps": 150, "bf16_share": 0.0},
    # fast-150-b60 again after the coarse evaluations also take the dense Gaussian operator in
    # bfloat16 for several rows (session 11): same settings, other code (compare on cs only)
    "fast-150-b60-a16": {**LS, "steps": 150, "bf16_share": 0.6},
    # two restarts instead of three under the current fast preset (session 12): a third fewer
    # several-row evaluations before pruning
    "fast-150-b60-r2": {**LS, "steps": 150, "bf16_share": 0.6, "restarts": 2},
    # the paper's Adam schedule, pruned to the best restart after 15 / 30 % of its steps (the kept
    # restart's iterates are the paper schedule's): csgm (session 8)
    "adam-500": {"optimizer": "adam", "steps": 500},  # = csgm's paper schedule, re-run beside them
    "adam-500-p15": {"optimizer": "adam", "steps": 500, "prune_after": 0.15},
    "adam-500-p30": {"optimizer": "adam", "steps": 500, "prune_after": 0.3},
    # session 13: the paper's Adam schedule with its first 90 % (60 %) in bfloat16 (csgm)
    "adam-500-b90": {"optimizer": "adam", "steps": 500, "bf16_share": 0.9},
    "adam-500-b60": {"optimizer": "adam", "steps": 500, "bf16_share": 0.6},
}
#: the other generator methods' candidates (Adam variants: pN = prune to the best restart after
#: N % of the steps; ls-B: the line-search schedule with a budget of B evaluations)
OTHER_VARIANTS = {
    "deep-decoder": {
        "adam-2500-p10": {"steps": 2500, "prune_after": 0.1},
        "adam-3000-p05": {"steps": 3000, "prune_after": 0.05},
        "ls-600": {"optimizer": "lbfgs-ls", "steps": 600, "prune_after": 0.3},
        # session 15 (after the 1.5x faster decoder step): where inpainting and super-resolution plateau
        "adam-1500-p10": {"steps": 1500, "prune_after": 0.1},
    },
    "mgan": {
        "adam-1000-p10": {"steps": 1000, "prune_after": 0.1},
        "adam-600-p10": {"steps": 600, "prune_after": 0.1},
        "ls-300": {"optimizer": "lbfgs-ls", "steps": 300, "prune_after": 0.3},
    },
    "ilo": {
        "steps-75-50-25": {"steps": (75, 50, 25)},
        "ls-40-60-40-p30": {"optimizer": "lbfgs-ls", "steps": (40, 60, 40), "prune_after": 0.3},
        "ls-60-100-60": {"optimizer": "lbfgs-ls", "steps": (60, 100, 60)},
        # round 0 (the latent) with the paper's Adam, shortened; rounds 1-2 on the line search
        "a75-ls40-40": {"optimizer": ("adam", "lbfgs-ls", "lbfgs-ls"), "steps": (75, 40, 40)},
        "a75-ls40-40-p30": {"optimizer": ("adam", "lbfgs-ls", "lbfgs-ls"), "steps": (75, 40, 40), "prune_after": 0.3},
        "a60-ls30-30-p30": {"optimizer": ("adam", "lbfgs-ls", "lbfgs-ls"), "steps": (60, 30, 30), "prune_after": 0.3},
        # session 13: the paper's Adam rounds, shorter (round 0 least needed, round 2 most), the
        # first 90 % of each round in bfloat16 (= the fast preset since 2026-12-03)
        "b90-25-100-100": {"steps": (25, 100, 100), "bf16_share": 0.9},
        "b90-25-125-100": {"steps": (25, 125, 100), "bf16_share": 0.9},
        "b90-25-100-75": {"steps": (25, 100, 75), "bf16_share": 0.9},
    },
    "iagan": {
        "ls150-a1": {"csgm_optimizer": "lbfgs-ls", "csgm_steps": 150, "prune_after": 0.3, "adapt_restarts": 1},
        "adam400-a1": {"csgm_steps": 400, "adapt_restarts": 1},
        # session 6: shorter stage 1 (Adam pruned to the best restart after 30 %, or a larger
        # line-search budget), only the best restart adapted: toward 0.2 x the paper's time
        "adam200-p30-a1": {"csgm_steps": 200, "prune_after": 0.3, "adapt_restarts": 1},
        "ls200-a1": {"csgm_optimizer": "lbfgs-ls", "csgm_steps": 200, "prune_after": 0.3, "adapt_restarts": 1},
    },
    "hybrid": {
        "adam-250-2500-p10": {"n_pre": 250, "steps": 2500, "prune_after": 0.1},
        "ls-100-400": {"optimizer": "lbfgs-ls", "n_pre": 100, "steps": 400, "prune_after": 0.3},
        "adam-150-1500-p05": {"n_pre": 150, "steps": 1500, "prune_after": 0.05},
        "adam-200-2000-p05": {"n_pre": 200, "steps": 2000, "prune_after": 0.05},
        # session 14 (the Deep Decoder's step 1.5x faster in both presets): halved stages, pruned early
        "adam-250-2000-p10": {"n_pre": 250, "steps": 2000, "prune_after": 0.1},
        # = hybrid.FAST_CANDIDATE (not adopted: it lost on cs on the report set, speed_hybrid.md)
        "adam-250-2500-p10-b90": {"n_pre": 250, "steps": 2500, "prune_after": 0.1, "bf16_share": 0.9},
    },
}


def variants_of(method: str) -> dict:
    """The candidate settings tried for ``method`` (name -> overrides of its paper config)."""
    return VARIANTS if method in ("surgery", "csgm") else OTHER_VARIANTS[method]


def tuning_images(size: int = 64):
    """[(name, (1, 3, size, size))]: lfw_subset faces 0 and 1, motorcycle_left, hubble_deep_field,
    then lfw_subset faces 2-9 (indices 4-11: more cells for the variants whose failures are rare)."""
    import numpy as np
    import skimage.data

    from skimage import io

    faces = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")

    def face(i: int):
        x = torch.from_numpy(faces[i].astype("float32"))[None, None].repeat(1, 3, 1, 1)
        return f"lfw{i}", fit_image(x, size)

    out = [face(0), face(1)]
    for name in ("motorcycle_left", "hubble_deep_field"):
        a = io.imread(Path(skimage.data.__file__).parent / (name + (".png" if name.startswith("motor") else ".jpg")))
        x = torch.from_numpy(a[..., :3].copy()).float().div(255).permute(2, 0, 1)[None]
        out.append((name, fit_image(x, size)))
    return out + [face(i) for i in range(2, 10)]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", default="0:4")
    ap.add_argument("--ops", default=",".join(OPERATORS))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--baseline", default="paper", help="--report: the variant the others are compared with")
    ap.add_argument("--since", default="", help="--report: only rows written at or after this time (YYYY-MM-DD HH:MM:SS prefix)")
    ap.add_argument("--methods", default="surgery,csgm")
    ap.add_argument("--variants", default="", help="comma list (default: paper and every candidate of the method)")
    ap.add_argument("--seeds", default="0", help="comma list of seeds (measurement seed s, solver seed s + SOLVER_SEED_OFFSET)")
    ap.add_argument("--tag", default="", help="record the variants as NAME@TAG: re-runs cells already in --out (e.g. a baseline "
                    "beside new candidates, for same-session time ratios); --report --baseline NAME@TAG compares with them")
    a = ap.parse_args(argv)
    if a.report:
        return report(a.out, a.baseline, a.since)
    if a.threads:
        torch.set_num_threads(a.threads)
    lo, hi = (int(v) for v in a.images.split(":"))
    done = set()
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["variant"], r["image"], r["op"], r.get("seed", 0)))
    G = load_prior("dcgan-faces-64")
    for name, x in tuning_images()[lo:hi]:
        for op, seed in ((o, int(s)) for o in a.ops.split(",") for s in a.seeds.split(",")):
            problem = measure(x, op, seed=seed)
            for method in a.methods.split(","):
                cfg = make_config(method, "paper", "dcgan", G.cut_points)
                _, solve = get_method(method)
                for settings in (a.variants.split(",") if a.variants else ["paper", *variants_of(method)]):
                    variant = f"{settings}@{a.tag}" if a.tag else settings
                    if (method, variant, name, op, seed) in done:
                        continue
                    c = cfg
                    if settings != "paper":
                        c = replace(cfg, **variants_of(method)[settings])
                    t0 = time.perf_counter()
                    r = solve(problem, G, c, seed=seed + SOLVER_SEED_OFFSET)  # as recon reconstruct --seed
                    dt = time.perf_counter() - t0
                    rec = {"method": method, "variant": variant, "image": name, "op": op, "seed": seed,
                           "psnr": float(psnr(x, r.x_hat.clamp(0, 1))), "evaluations": r.extra.get("evaluations"),
                           "stop": r.extra.get("stop"), "seconds": dt, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "host": platform.platform()}
                    with a.out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(rec, flush=True)


def report(path: Path, baseline: str = "paper", since: str = ""):
    """Per method and operator: each variant's mean PSNR difference to ``baseline`` (a variant
    name; default the paper schedule) over the cells (image, seed) where both ran, the standard
    error of that difference, the worst cell, the mean time ratio, and n. ``since`` (a
    "YYYY-MM-DD HH:MM:SS" prefix) keeps only rows written at or after it, so time ratios compare
    runs of one code and host (rows before 2026-12-03 04:00 carry no time and are left out then)."""
    import statistics

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if since:
        rows = [r for r in rows if r.get("when", "") >= since]
    by = {(r["method"], r["variant"], r["image"], r["op"], r.get("seed", 0)): r for r in rows}
    for method in dict.fromkeys(r["method"] for r in rows):
        for op in OPERATORS:
            line = []
            for v in dict.fromkeys(r["variant"] for r in rows if r["method"] == method):  # tagged names too
                pairs = [(r, by[(method, baseline, k[2], op, k[4])]) for k, r in by.items()
                         if k[0] == method and k[1] == v and k[3] == op and (method, baseline, k[2], op, k[4]) in by]
                if pairs and v != baseline:
                    d = [a["psnr"] - b["psnr"] for a, b in pairs]
                    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
                    ratio = statistics.mean(a["seconds"] / b["seconds"] for a, b in pairs)
                    line.append(f"{v} {statistics.mean(d):+.2f} +- {se:.2f} dB (worst {min(d):+.2f}) x{ratio:.2f} time (n{len(pairs)})")
            if line:
                print(method, op, f"vs {baseline}:", " | ".join(line))


if __name__ == "__main__":
    main()
