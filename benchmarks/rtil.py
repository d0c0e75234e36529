"""Vanilla vs RTIL-trained priors under ILO and mGANprior, on held-out Fashion-MNIST (issue 6).

What it measures: for each pair of checkpoints (a vanilla generator and an RTIL-trained one of
the same architecture, trained at equal budgets), it reconstructs the same N held-out
Fashion-MNIST test images (the first N of the test split, 32 px grey, never seen in training)
from the same measurements, with the same solver seeds, using each prior in turn, and compares
PSNR / SSIM / LPIPS. Operators: noiseless cs-gaussian at m/n in {0.05, 0.1, 0.2}, inpainting
keeping 10 % of the pixels (random mask), bicubic super-resolution x4. Seeds {0, 1, 2}: the seed
and the image index set the operator draw (Gaussian matrix, mask) and the solver's restarts.
Methods: ``ilo`` for rtil-ilo pairs, ``mgan`` for rtil-mgan pairs (read from the RTIL
checkpoint's training record), or ``--methods ilo,mgan`` for both on every pair.

Solver settings: ``recon_core.solvers`` defaults (ILOConfig: layers (0, 1, 2), steps (300, 200,
100), l1 radii (500, 1000), 3 restarts, MSE loss; MGANConfig: 10 codes, Adam lr 0.03, 2000 steps,
3 restarts), with every step count multiplied by ``--steps-scale``. ILO layers: ``--ilo-layers
default`` (the default) keeps ILOConfig's (0, 1, 2), cut to the cut points both priors of the
pair have (said on stdout and in the report when cut); ``--ilo-layers trained`` uses 0 plus the
layers the RTIL checkpoint was trained with (``--layers`` of train-rtil), so ILO optimises exactly
the regularised layers; or an explicit list ``0,2,3`` (rounds beyond three repeat the last step
count and double the last radius). mGANprior layer: ``--mgan-layer trained`` (the default) mixes
at the layer the RTIL checkpoint was trained to mix at (``--mgan-layer`` of train-rtil, 2 by
default), falling back to MGANConfig's layer 1 for checkpoints without one; or a number. Both
models of a pair always get the very same settings. Loss is MSE for every operator (the configs'
default; the ILO paper adds LPIPS for SR, which this benchmark does not).

Honest reporting: nothing is selected against the ground truth -- the solvers keep the restart
(and, for ILO, the round) with the lowest *measurement* loss; every finished run is kept and
reported, whichever prior it favours. PSNR is averaged as the mean of per-image PSNR (the
PSNR of the mean MSE is reported alongside). The paired comparison is the mean of
(RTIL - vanilla) over images x seeds with its standard error; images x seeds are not independent
(one image appears under every seed), so the SE over per-image means (seeds averaged first) is
given too -- trust the larger.

Output: every run is appended to ``benchmarks/results/rtil.json`` as it finishes (key
``pair|model|method|op|seed|image``); rerunning the same command skips finished runs (resume),
and refuses to mix in runs made with other checkpoints (sha256) or other solver settings. Then
``rtil.md`` (table per pair, method and operator; machine; date; the exact commands) and
``rtil.png`` (PSNR, vanilla vs RTIL, per operator) are written from everything in the JSON.
Parallel processes (say one per core, one pair each) write their own ``--out``; ``--merge
a.json,b.json`` folds them into ``--out`` with the same checks, then reports.

The issue's protocol -- first train the four models at equal budgets (same steps, batch, seed and
widths within each pair; RTIL steps cost more wall time since every step runs the whole family of
generators, but see the same number of real images)::

    recon train-rtil --arch stylegan2 --data fashion-mnist --mode vanilla  --out runs/sg2-vanilla --steps 20000 --batch 32 --seed 0 --threads 1
    recon train-rtil --arch stylegan2 --data fashion-mnist --mode rtil-ilo --layers 2,3 --sigma 1 --out runs/sg2-rtil --steps 20000 --batch 32 --seed 0 --threads 1
    recon train-rtil --arch pggan --data fashion-mnist --mode vanilla   --out runs/pg-vanilla --steps 20000 --batch 32 --seed 0 --threads 1
    recon train-rtil --arch pggan --data fashion-mnist --mode rtil-mgan --codes 10,20 --mgan-layer 2 --out runs/pg-rtil --steps 20000 --batch 32 --seed 0 --threads 1

then (ILO on the StyleGAN2 pair, mGANprior on the PGGAN pair; 50 images, seeds 0,1,2)::

    python benchmarks/rtil.py --threads 1 \\
        --pair stylegan2:runs/sg2-vanilla/checkpoint.pt,runs/sg2-rtil/checkpoint.pt \\
        --pair pggan:runs/pg-vanilla/checkpoint.pt,runs/pg-rtil/checkpoint.pt

Add ``--methods ilo,mgan`` to run both methods on both pairs, ``--ilo-layers trained`` to run
ILO over the layers RTIL regularised (StyleGAN2's default training layers are 2,3: the default
ILO layers (0, 1, 2) optimise cut 2 but not cut 3).

Batching: ``--batch-images K`` (default 10) solves K consecutive images of one (pair, model,
method, operator, seed) as one batch (``ilo.solve_batch`` / ``mgan.solve_batch``: K x restarts
rows per generator call, one operator per image through ``StackedOperator``). Image i keeps the
solver seed it has alone, so a batched run computes what a single run computes up to float
rounding in the batched kernels -- but these solvers are chaotic in such rounding: on the
StyleGAN2 pair (seed 0, images 0-9, steps x 0.5) batched runs of 2026-12-01 and the single runs
of 2026-11-22 (older code, same seeds) differed per cell by a median 0.15 dB and up to 9 dB,
with a mean difference of -0.003 dB over the 100 cells; single runs of today's and that code
differ too (PGGAN, 1 of 10 cells by 3.6 dB, the rest by < 0.1 dB). Single cells are noisy
samples of the solver; compare means. ``time_s`` of a batched run is the batch's wall time
divided by its images (``batch`` records K).

Budget: the protocol is 50 images x 3 seeds x 5 operators x 2 priors = 1500 solver runs per
(pair, method), 3000 for the command above (6000 with ``--methods ilo,mgan``). A default ILO run
is 600 Adam steps on a batch of 3 restarts; an mGANprior run is 2000 steps on 3 x 10 codes.
Measured on the 2-core machine of this project at one thread per process, two processes
running, with the zoo models at ``--steps-scale 0.5``, in batches of 10: ILO/StyleGAN2 ~3 s
per run (~1.2 CPU hours per 1500 runs), mGANprior/PGGAN (layer 2) ~17 s per run (~7 CPU hours
per 1500 runs). Batching gains little on a CPU (1.2-1.6x for these two:
``benchmarks/batch_speed.py``). ``--steps-scale 1`` doubles these. Pairs and methods are independent: run
them as separate processes (one ``--pair`` each, or split ``--seeds``, or split the images with
``--images A:B`` = test images A..B-1; distinct ``--out``) to use several cores, then
``--merge``. ``--images``/``--seeds`` shrink the protocol (the report says what ran).

``--smoke`` checks the script end to end in about 20 s: two tiny random-weight DCGANs,
4 images, seed 0, steps x 0.02, results in a temporary directory, then a second pass that must
find every run done (resume).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

from recon_core.errors import ReconError, SolverDiverged  # noqa: E402
from recon_core.generators.checkpoints import build_adapter, from_object, read_checkpoint, save_checkpoint  # noqa: E402
from recon_core.images import atomic_write_bytes, atomic_write_text  # noqa: E402
from recon_core.pipeline import SOLVER_SEED_OFFSET, Grid, score, simulate, solve_problems  # noqa: E402
from recon_core.solvers import METHODS, Result  # noqa: E402
from recon_core.training.data import load_source  # noqa: E402

#: (name in the results, operator family, its parameters)
OPERATORS = [
    ("cs-0.05", "cs-gaussian", {"ratio": 0.05}),
    ("cs-0.1", "cs-gaussian", {"ratio": 0.1}),
    ("cs-0.2", "cs-gaussian", {"ratio": 0.2}),
    ("inpaint-0.1", "inpaint", {"frac": 0.1, "mask": "random"}),
    ("superres-x4", "superres", {"factor": 4}),
]
MODELS = ("vanilla", "rtil")
METHOD_NAMES = ("ilo", "mgan")
METRICS = ("psnr", "ssim", "lpips")


# ---- inputs ------------------------------------------------------------------------------------
def parse_pair(text: str) -> tuple:
    """'label:vanilla.pt,rtil.pt' -> (label, vanilla path, rtil path)."""
    label, sep, paths = text.partition(":")
    parts = paths.split(",")
    if not sep or not label or "|" in label or len(parts) != 2 or not all(parts):
        raise SystemExit(f"--pair must be LABEL:VANILLA_CKPT,RTIL_CKPT (label without '|'), got {text!r}")
    return label, Path(parts[0]), Path(parts[1])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_prior(path: Path, device: str) -> tuple:
    """(adapter in eval mode on device, the checkpoint's training record or {}, sha256)."""
    obj = read_checkpoint(path)
    training = obj.get("training") if isinstance(obj, dict) and isinstance(obj.get("training"), dict) else {}
    model = from_object(obj, source=f"'{path}'").to(device)
    return model, training, sha256(path)


def parse_images(text: str) -> tuple:
    """'N' -> (0, N); 'A:B' -> (A, B), the test images A..B-1. ValueError unless 0 <= A < B."""
    lo, sep, hi = text.partition(":")
    try:
        lo, hi = (int(lo), int(hi)) if sep else (0, int(lo))
    except ValueError:
        raise ValueError(f"--images must be N or A:B (integers), got {text!r}") from None
    if not 0 <= lo < hi:
        raise ValueError(f"--images must be N >= 1 or A:B with 0 <= A < B, got {text!r}")
    return lo, hi


def consecutive_runs(indices: List[int]) -> List[List[int]]:
    """Sorted indices split into runs of consecutive values: [0, 1, 3, 4, 5] -> [[0, 1], [3, 4, 5]]."""
    runs: List[List[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def scaled(n: int, scale: float) -> int:
    return max(1, int(round(n * scale)))


def ilo_config(spec: str, cuts: List[int], training: dict, scale: float, radii: Optional[str], notes: List[str], label: str):
    """ILOConfig for a pair whose priors share the cut points ``cuts`` (see the module docstring)."""
    base = METHODS["ilo"][0]()
    if spec == "default":
        layers = [c for c in base.layers if c in cuts]
        if len(layers) < len(base.layers):
            notes.append(f"{label}: ILO layers {tuple(base.layers)} cut to {tuple(layers)} (the priors' cut points are {cuts[0]}..{cuts[-1]})")
    elif spec == "trained":
        trained = training.get("layers") if training.get("mode") == "rtil-ilo" else None
        if not trained:
            raise SystemExit(f"--ilo-layers trained: the RTIL checkpoint of pair '{label}' records no rtil-ilo layers; give them (e.g. 0,1,2)")
        layers = [0] + sorted(int(c) for c in trained if int(c) > 0)
    else:
        layers = [int(c) for c in spec.split(",")]
    bad = [c for c in layers if c not in cuts]
    if bad:
        raise SystemExit(f"pair '{label}': ILO layers {bad} are not cut points of its priors ({cuts[0]}..{cuts[-1]})")
    steps = list(base.steps)[: len(layers)]
    steps += [steps[-1]] * (len(layers) - len(steps))
    rad = [float(r) for r in radii.split(",")] if radii else list(base.radii)
    rad = rad[: len(layers) - 1]
    while len(rad) < len(layers) - 1:
        rad.append(rad[-1] * 2 if rad else float(base.radii[0]))
    return replace(base, layers=tuple(layers), steps=tuple(scaled(s, scale) for s in steps), radii=tuple(rad),
                   range_steps=scaled(base.range_steps, scale))


def mgan_config(spec: str, cuts: List[int], training: dict, scale: float, notes: List[str], label: str):
    base = METHODS["mgan"][0]()
    if spec == "trained":
        layer = training.get("mgan_layer") if training.get("mode") == "rtil-mgan" else None
        if layer is None:
            layer = base.layer
            notes.append(f"{label}: the RTIL checkpoint records no rtil-mgan layer; mGANprior mixes at MGANConfig's layer {layer}")
    else:
        layer = int(spec)
    if layer not in cuts[1:]:
        clamped = min(max(layer, 1), cuts[-1])
        notes.append(f"{label}: mGANprior layer {layer} is not an intermediate cut of the priors; using {clamped}")
        layer = clamped
    return replace(base, layer=int(layer), steps=scaled(base.steps, scale))


# ---- the benchmark -----------------------------------------------------------------------------
def results_grid(out: Path) -> Grid:
    """The results file as a resumable keyed grid (recon_core.pipeline.Grid, cells "runs"; the
    protocol is checked by ``run``), with its "pairs" and "invocations" records."""
    grid = Grid(out, cells="runs")
    grid.doc.setdefault("pairs", {})
    grid.doc.setdefault("invocations", [])
    return grid


def merge(doc: dict, other: dict, source: str) -> int:
    """Fold the runs of ``other`` (the JSON of a parallel run with another --out) into ``doc``;
    returns the number of runs added. Refuses (SystemExit) another protocol, another checkpoint
    (sha256) or other solver settings under the same pair label, as a resumed run would."""
    if doc.get("protocol", other.get("protocol")) != other.get("protocol"):
        raise SystemExit(f"--merge {source}: another protocol ({other.get('protocol')}) than {doc['protocol']}")
    doc["protocol"] = other["protocol"]
    for label, rec in other["pairs"].items():
        old = doc["pairs"].get(label)
        if old is None:
            doc["pairs"][label] = rec
            continue
        for model in MODELS:
            if old[model]["sha256"] != rec[model]["sha256"]:
                raise SystemExit(f"--merge {source}: pair '{label}' was run with another {model} checkpoint there")
        for m, cfg in rec.get("configs", {}).items():
            if old.get("configs", {}).get(m, cfg) != cfg:
                raise SystemExit(f"--merge {source}: pair '{label}' method {m} was run with other settings there")
        old["configs"] = {**old.get("configs", {}), **rec.get("configs", {})}
    new = {k: v for k, v in other["runs"].items() if k not in doc["runs"]}
    doc["runs"].update(new)
    doc["invocations"] += [i for i in other["invocations"] if i not in doc["invocations"]]
    return len(new)


def machine_info(device: str) -> str:
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} thread(s), device {device}, Python {platform.python_version()}")


def run(a, out: Path, command: str) -> dict:
    """Run every missing (pair, model, method, op, seed, image) and write the JSON; returns stats."""
    notes: List[str] = []
    grid = results_grid(out)
    doc = grid.doc
    protocol = {"data": a.data, "split": "test", "noise_std": a.noise_std, "steps_scale": a.steps_scale,
                "operators": [[n, k, p] for n, k, p in OPERATORS]}
    if doc.get("protocol", protocol) != protocol:
        raise SystemExit(f"{out} holds runs of another protocol ({doc['protocol']}); use another --out, or delete it to start over")
    doc["protocol"] = protocol
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs = []  # (label, priors, method, config)
    labels = [parse_pair(t)[0] for t in a.pair]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--pair labels must be distinct, got {labels}")
    for text in a.pair:
        label, p_van, p_rtil = parse_pair(text)
        priors, trains, shas = {}, {}, {}
        for model, path in zip(MODELS, (p_van, p_rtil)):
            priors[model], trains[model], shas[model] = load_prior(path, a.device)
        g_v, g_r = priors["vanilla"], priors["rtil"]
        if (g_v.meta.resolution, g_v.meta.channels) != (g_r.meta.resolution, g_r.meta.channels):
            raise SystemExit(f"pair '{label}': the priors make different images ({g_v.meta.resolution} px x {g_v.meta.channels} vs "
                             f"{g_r.meta.resolution} px x {g_r.meta.channels})")
        if g_v.meta.architecture != g_r.meta.architecture:
            notes.append(f"{label}: the two priors have different architectures ({g_v.meta.architecture}, {g_r.meta.architecture})")
        for model in MODELS:
            mode = trains[model].get("mode")
            if mode is not None and (mode == "vanilla") != (model == "vanilla"):
                notes.append(f"{label}: the {model} checkpoint was trained with mode '{mode}'")
        tv, tr = trains["vanilla"], trains["rtil"]
        if tv.get("step") is not None and tr.get("step") is not None and tv.get("step") != tr.get("step"):
            notes.append(f"{label}: unequal budgets: vanilla trained {tv.get('step')} steps, RTIL {tr.get('step')}")
        cuts = [c for c in g_v.cut_points if c in g_r.cut_points]
        if a.methods == "auto":
            mode = tr.get("mode")
            if mode not in ("rtil-ilo", "rtil-mgan"):
                raise SystemExit(f"pair '{label}': the RTIL checkpoint's mode is {mode!r}, so the method cannot be chosen; pass --methods ilo,mgan")
            methods = ["ilo" if mode == "rtil-ilo" else "mgan"]
        else:
            methods = [m for m in a.methods.split(",") if m]
            if not methods or any(m not in METHOD_NAMES for m in methods):
                raise SystemExit(f"--methods must be 'auto' or a list of {', '.join(METHOD_NAMES)}, got {a.methods!r}")
        configs = {}
        for m in methods:
            cfg = (ilo_config(a.ilo_layers, cuts, tr, a.steps_scale, a.ilo_radii, notes, label) if m == "ilo"
                   else mgan_config(a.mgan_layer, cuts, tr, a.steps_scale, notes, label))
            configs[m] = cfg
            jobs.append((label, priors, m, cfg))
        record = {"vanilla": {"path": str(p_van), "sha256": shas["vanilla"], "architecture": g_v.meta.architecture,
                              "config": dict(g_v.meta.config), "training": tv},
                  "rtil": {"path": str(p_rtil), "sha256": shas["rtil"], "architecture": g_r.meta.architecture,
                           "config": dict(g_r.meta.config), "training": tr},
                  "resolution": g_v.meta.resolution, "channels": g_v.meta.channels, "cut_points": cuts}
        old = doc["pairs"].get(label)
        if old is not None:
            for model in MODELS:
                if old[model]["sha256"] != shas[model]:
                    raise SystemExit(f"{out}: pair '{label}' was run with another {model} checkpoint ({old[model]['path']}, "
                                     f"sha256 {old[model]['sha256'][:12]}); use another label or --out")
            for m, cfg in configs.items():
                if m in old.get("configs", {}) and old["configs"][m] != json.loads(json.dumps(asdict(cfg))):
                    raise SystemExit(f"{out}: pair '{label}' method {m} was run with other settings ({old['configs'][m]}); "
                                     f"use another --out, or the same options")
            record["configs"] = {**old.get("configs", {}), **{m: asdict(c) for m, c in configs.items()}}
        else:
            record["configs"] = {m: asdict(c) for m, c in configs.items()}
        doc["pairs"][label] = json.loads(json.dumps(record, default=str))
    for n in notes:
        print(f"note: {n}", flush=True)

    resolutions = {(p["vanilla"].meta.resolution, p["vanilla"].meta.channels) for _, p, _, _ in jobs}
    sources = {rc: load_source(a.data, rc[0], rc[1], split="test") for rc in resolutions}
    for src in sources.values():
        if a.image_hi > len(src):
            raise SystemExit(f"--images {a.images} exceeds the {len(src)} images of the {a.data} test split")

    def missing(label, model, m, op_name, seed, i):
        return f"{label}|{model}|{m}|{op_name}|{seed}|{i}" not in doc["runs"]

    # batches: images in chunks of --batch-images; within a chunk every (pair, method, op, model)
    # solves its missing images as runs of consecutive indices (problem j of a batch then has
    # the solver seed a single run of that image would have), so early images get every cell first
    K = a.batch_images
    batches = []  # (label, priors, m, cfg, op, seed, model, [image indices])
    for seed in seeds:
        for c0 in range(a.image_lo, a.image_hi, K):
            for (label, priors, m, cfg), op, model in itertools.product(jobs, OPERATORS, MODELS):
                todo = [i for i in range(c0, min(c0 + K, a.image_hi)) if missing(label, model, m, op[0], seed, i)]
                for images in consecutive_runs(todo):
                    batches.append((label, priors, m, cfg, op, seed, model, images))
    n_todo = sum(len(b[-1]) for b in batches)
    total = len(seeds) * (a.image_hi - a.image_lo) * len(jobs) * len(OPERATORS) * len(MODELS)
    print(f"{total - n_todo} of {total} runs already in {out}; {n_todo} to do, in {len(batches)} batches of up to {K} images",
          flush=True)
    inv = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(a.device),
           "new_runs": 0, "notes": notes, "batch_images": K}
    doc["invocations"].append(inv)
    grid.save()
    t_start, done = time.perf_counter(), 0
    for label, priors, m, cfg, (op_name, kind, params), seed, model, images in batches:
        G = priors[model]
        C, R = G.meta.channels, G.meta.resolution
        x, y_label = sources[(R, C)].get(images)
        x = x.to(a.device)
        problems, recs = [], []
        for j, i in enumerate(images):
            op_seed = seed * 100_003 + i  # same operator (and noise) for both priors of a pair
            # the seed policy of `recon reconstruct --seed op_seed` (noise from op_seed + NOISE_SEED_OFFSET;
            # before 2026-12-02 from op_seed + 1: the stored runs are noiseless, so unchanged)
            problems.append(simulate(x[j : j + 1], kind, params, op_seed, a.noise_std, "per-entry", a.device)[0])
            recs.append({"pair": label, "model": model, "method": m, "op": op_name, "seed": seed, "image": i,
                         "class": int(y_label[j]), "op_seed": op_seed, "solver_seed": op_seed + SOLVER_SEED_OFFSET})
        t0 = time.perf_counter()
        results = solve_problems(m, problems, G, cfg, [r["op_seed"] for r in recs])  # solver seeds: op_seed + SOLVER_SEED_OFFSET
        wall = time.perf_counter() - t0
        together = all(isinstance(r, Result) and r.extra.get("batch", 1) == len(images) for r in results)
        for j, (res, rec) in enumerate(zip(results, recs)):
            key = f"{label}|{model}|{m}|{op_name}|{seed}|{rec['image']}"
            if together:  # wall time of the batch, shared equally by its images
                rec.update({"time_s": res.wall_time / len(images), "batch": len(images)})
            else:  # re-solved alone after a diverged batch: its own time (a failed one: a share)
                rec["time_s"] = res.wall_time if isinstance(res, Result) else wall / len(images)
            if isinstance(res, SolverDiverged):
                rec["error"] = str(res)
                print(f"{key}: FAILED ({res})", flush=True)
            else:
                met = score(x[j : j + 1], res.x_hat.to(x.device), problems[j])
                rec.update({"psnr": met["psnr"], "ssim": met["ssim"], "lpips": met["lpips"], "mse": met["mse"],
                            "residual": met["residual"], "best_restart": res.best_restart,
                            **({"best_round": res.extra.get("best_round"), "cut": res.extra.get("cut")} if m == "ilo" else {})})
                if met["lpips"] is None:
                    rec["lpips_reason"] = met.get("lpips_reason")
            doc["runs"][key] = rec
        done += len(images)
        inv["new_runs"] += len(images)
        grid.save()
        ok = [r["psnr"] for r in recs if "psnr" in r]
        eta = (time.perf_counter() - t_start) / done * (n_todo - done)
        print(f"[{done}/{n_todo}] {label}|{model}|{m}|{op_name}|seed {seed}|images {images[0]}-{images[-1]}: "
              f"mean PSNR {statistics.fmean(ok) if ok else float('nan'):.2f} ({sum(r['time_s'] for r in recs):.1f} s, "
              f"ETA {eta / 60:.0f} min)", flush=True)
    return doc


# ---- the report --------------------------------------------------------------------------------
def mean_se(v: List[float]) -> tuple:
    if not v:
        return float("nan"), float("nan")
    if len(v) < 2:
        return statistics.fmean(v), float("nan")
    return statistics.fmean(v), statistics.stdev(v) / math.sqrt(len(v))


def summarise(doc: dict) -> List[dict]:
    """Per (pair, method, op): paired statistics over the (seed, image) cells both priors finished."""
    cells: Dict[tuple, Dict[str, dict]] = {}
    failed: Dict[tuple, int] = {}
    for r in doc["runs"].values():
        g = (r["pair"], r["method"], r["op"])
        if "error" in r:
            failed[g] = failed.get(g, 0) + 1
            continue
        cells.setdefault(g, {}).setdefault(f"{r['seed']}|{r['image']}", {})[r["model"]] = r
    ops = [o[0] for o in OPERATORS]
    rows = []
    for g in sorted(cells, key=lambda g: (g[0], g[1], ops.index(g[2]) if g[2] in ops else 99)):
        both = [c for c in cells[g].values() if all(mo in c for mo in MODELS)]
        row = {"pair": g[0], "method": g[1], "op": g[2], "n": len(both), "failed": failed.get(g, 0),
               "images": len({c["vanilla"]["image"] for c in both}), "seeds": sorted({c["vanilla"]["seed"] for c in both}),
               "time_s": {mo: statistics.fmean(c[mo]["time_s"] for c in both) if both else float("nan") for mo in MODELS}}
        for met in METRICS:
            ok = [c for c in both if c["vanilla"][met] is not None and c["rtil"][met] is not None]
            d = [c["rtil"][met] - c["vanilla"][met] for c in ok]
            per_image: Dict[int, List[float]] = {}
            for c, dv in zip(ok, d):
                per_image.setdefault(c["vanilla"]["image"], []).append(dv)
            img_means = [statistics.fmean(v) for v in per_image.values()]
            md, se = mean_se(d)
            row[met] = {"n": len(ok), "vanilla": mean_se([c["vanilla"][met] for c in ok])[0],
                        "rtil": mean_se([c["rtil"][met] for c in ok])[0],
                        "se_vanilla": mean_se([c["vanilla"][met] for c in ok])[1], "se_rtil": mean_se([c["rtil"][met] for c in ok])[1],
                        "diff": md, "se": se, "se_by_image": mean_se(img_means)[1],
                        "rtil_better": sum(1 for v in d if (v > 0 if met != "lpips" else v < 0)),
                        "ties": sum(1 for v in d if v == 0)}
        mse = {mo: statistics.fmean(c[mo]["mse"] for c in both) if both else float("nan") for mo in MODELS}
        row["psnr_of_mean_mse"] = {mo: -10 * math.log10(v) if v > 0 else float("inf") for mo, v in mse.items()}
        rows.append(row)
    return rows


def fmt(v, nd=2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def fmt_diff(s: dict, nd: int) -> str:
    if s["n"] == 0:
        return "n/a"
    return f"{s['diff']:+.{nd}f} ± {fmt(s['se'], nd)} ({fmt(s['se_by_image'], nd)})"


def compact_table(rows: List[dict]) -> str:
    """One markdown row per (pair, method), one column per operator: mean PSNR vanilla -> RTIL
    (RTIL - vanilla +- the larger of its two standard errors; n cells)."""
    ops = [o[0] for o in OPERATORS]
    heads = {"cs-0.05": "cs 0.05", "cs-0.1": "cs 0.1", "cs-0.2": "cs 0.2", "inpaint-0.1": "inpaint 10 %", "superres-x4": "superres x4"}
    out = ["| pair, method | " + " | ".join(heads.get(o, o) for o in ops) + " |", "|---|" + "---|" * len(ops)]
    for label, m in sorted({(r["pair"], r["method"]) for r in rows}):
        cells = []
        for o in ops:
            r = next((r for r in rows if (r["pair"], r["method"], r["op"]) == (label, m, o)), None)
            p = r["psnr"] if r else None
            if not p or not p["n"]:
                cells.append("n/a")
                continue
            se = max((v for v in (p["se"], p["se_by_image"]) if not math.isnan(v)), default=float("nan"))
            cells.append(f"{fmt(p['vanilla'])} -> {fmt(p['rtil'])} ({p['diff']:+.2f} +- {fmt(se)}; n {p['n']})")
        out.append(f"| {label}, `{m}` | " + " | ".join(cells) + " |")
    return "\n".join(out)


def report(doc: dict, md_path: Path, png_path: Path) -> str:
    rows = summarise(doc)
    inv = doc["invocations"]
    lines = [
        "# Vanilla vs RTIL-trained priors: ILO and mGANprior on held-out Fashion-MNIST",
        "",
        f"Data: the first images of the `{doc['protocol']['data']}` **test** split (held out from training), "
        f"{'noiseless' if not doc['protocol']['noise_std'] else 'per-entry noise std %g' % doc['protocol']['noise_std']} "
        f"measurements; solver step counts x {doc['protocol']['steps_scale']:g} (`--steps-scale`, 1 = the solvers' defaults). "
        "Both priors of a pair see the same images, measurements and solver seeds. Nothing is selected against the "
        "ground truth: the solvers keep the restart (ILO: and round) with the lowest measurement loss. Every finished "
        "run is reported.",
        "",
        "Columns: means over the (seed, image) cells both priors finished (PSNR: mean of per-image PSNR, dB; "
        "LPIPS: AlexNet, lower is better); Δ = RTIL − vanilla, ± its standard error over images × seeds, and in "
        "parentheses the SE over per-image means (seeds averaged first; images × seeds are not independent, so "
        "trust the larger); 'RTIL better' counts cells where RTIL has the higher PSNR; "
        "'PSNR(mean MSE)' = 10 log10(1 / mean MSE), vanilla / RTIL; 's/run': solver wall time per run (runs solved "
        "in batches of K images, `--batch-images`: the batch's wall time / K).",
        "",
    ]
    for label, p in doc["pairs"].items():
        lines.append(f"Pair **{label}**: vanilla `{p['vanilla']['path']}` ({p['vanilla']['architecture']}, sha256 "
                     f"{p['vanilla']['sha256'][:12]}, trained {p['vanilla']['training'].get('step', '?')} steps, mode "
                     f"{p['vanilla']['training'].get('mode', '?')}); RTIL `{p['rtil']['path']}` ({p['rtil']['architecture']}, sha256 "
                     f"{p['rtil']['sha256'][:12]}, trained {p['rtil']['training'].get('step', '?')} steps, mode "
                     f"{p['rtil']['training'].get('mode', '?')}, layers {p['rtil']['training'].get('layers')}, mgan_layer "
                     f"{p['rtil']['training'].get('mgan_layer')}); {p['resolution']} px x {p['channels']}, cut points "
                     f"{p['cut_points'][0]}..{p['cut_points'][-1]}.")
        for m, c in p.get("configs", {}).items():
            short = ({k: c[k] for k in ("layers", "steps", "radii", "lr", "restarts", "loss")} if m == "ilo"
                     else {k: c[k] for k in ("n_codes", "layer", "optimizer", "lr", "steps", "restarts")})
            lines.append(f"  - {m}: `{json.dumps(short)}`")
    lines += ["", "| pair | method | operator | n (img × seed) | PSNR van | PSNR RTIL | ΔPSNR ± SE (by image) | RTIL better | "
              "PSNR(mean MSE) | SSIM van | SSIM RTIL | ΔSSIM ± SE (by image) | LPIPS van | LPIPS RTIL | ΔLPIPS ± SE (by image) | "
              "failed | s/run van / RTIL |",
              "|" + "---|" * 17]
    for r in rows:
        ps, ss, lp = r["psnr"], r["ssim"], r["lpips"]
        lines.append(
            f"| {r['pair']} | {r['method']} | {r['op']} | {r['n']} ({r['images']} × {len(r['seeds'])}) | {fmt(ps['vanilla'])} | "
            f"{fmt(ps['rtil'])} | {fmt_diff(ps, 2)} | {ps['rtil_better']}/{ps['n']} | "
            f"{fmt(r['psnr_of_mean_mse']['vanilla'])} / {fmt(r['psnr_of_mean_mse']['rtil'])} | {fmt(ss['vanilla'], 3)} | "
            f"{fmt(ss['rtil'], 3)} | {fmt_diff(ss, 3)} | {fmt(lp['vanilla'], 3)} | {fmt(lp['rtil'], 3)} | {fmt_diff(lp, 3)} | "
            f"{r['failed']} | {fmt(r['time_s']['vanilla'], 1)} / {fmt(r['time_s']['rtil'], 1)} |")
    if not rows:
        lines.append("| (no finished runs) |" + " |" * 16)
    lines += ["", "Summary (the README's table): PSNR vanilla -> RTIL (Δ ± the larger SE; n cells).", "", compact_table(rows)]
    notes = sorted({n for i in inv for n in i.get("notes", [])})
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {len(doc['runs'])} runs in "
              f"`{Path(md_path).with_suffix('.json').name}`, made by these invocations (date, machine, runs added, exact command):", ""]
    for i in inv:
        lines.append(f"- {i['date']}; {i['machine']}; {i['new_runs']} runs:")
        lines.append(f"  `{i['command']}`")
    lines.append("")
    text = "\n".join(lines)
    atomic_write_text(md_path, text)
    plot(rows, png_path)
    return text


def plot(rows: List[dict], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["pair"], r["method"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5.2 * max(1, len(groups)), 4), dpi=120, squeeze=False)
    for ax, (label, m) in zip(axes[0], groups):
        rs = [r for r in rows if r["pair"] == label and r["method"] == m]
        xs = range(len(rs))
        for j, (mo, colour) in enumerate((("vanilla", "tab:gray"), ("rtil", "tab:orange"))):
            ax.bar([x + (j - 0.5) * 0.38 for x in xs], [r["psnr"][mo] for r in rs], width=0.38,
                   yerr=[0 if math.isnan(r["psnr"][f"se_{mo}"]) else r["psnr"][f"se_{mo}"] for r in rs],
                   capsize=3, color=colour, label="vanilla" if mo == "vanilla" else "RTIL")
        for x, r in zip(xs, rs):
            top = max(r["psnr"]["vanilla"], r["psnr"]["rtil"])
            if not math.isnan(top):
                se = max((v for v in (r["psnr"]["se"], r["psnr"]["se_by_image"]) if not math.isnan(v)), default=float("nan"))
                ax.annotate(f"{r['psnr']['diff']:+.2f}\n±{fmt(se)}", (x, top), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["op"] for r in rs], rotation=20, fontsize=8)
        ax.set_ylabel("mean PSNR (dB) ± SE")
        ns = sorted({r["n"] for r in rs})
        n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        ax.set_title(f"{label}, {m}: n = {n} cells (image x seed) per bar\nlabels: Δ ± paired SE (the larger)", fontsize=9)
        tops = [max(r["psnr"]["vanilla"], r["psnr"]["rtil"]) for r in rs]
        tops = [t for t in tops if not math.isnan(t)]
        if tops:
            ax.set_ylim(0, max(tops) * 1.18)  # room for the labels
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Vanilla vs RTIL prior: PSNR on held-out Fashion-MNIST (Δ = RTIL − vanilla)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())


# ---- smoke -------------------------------------------------------------------------------------
def smoke_setup(a) -> Path:
    """Two tiny random-weight DCGANs (32 px, grey) in a temp dir; the protocol shrunk to seconds."""
    tmp = Path(tempfile.mkdtemp(prefix="rtil-smoke-"))
    paths = []
    for k, name in enumerate(("vanilla", "rtil")):
        torch.manual_seed(k)
        g = build_adapter("dcgan", resolution=32, nz=16, ngf=8, nc=1)
        paths.append(save_checkpoint(g, tmp / f"{name}.pt"))
    a.pair = [f"smoke-dcgan:{paths[0]},{paths[1]}"]
    a.methods = "ilo,mgan"
    a.images, a.seeds = 4, "0"
    a.steps_scale = 0.02
    a.out = str(tmp / "results" / "rtil.json")
    return tmp


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", default=[], metavar="LABEL:VANILLA,RTIL",
                    help="a pair of checkpoints: label, vanilla checkpoint, RTIL checkpoint (repeatable)")
    ap.add_argument("--methods", default="auto", help="'auto' (ilo for rtil-ilo pairs, mgan for rtil-mgan pairs) or e.g. ilo,mgan")
    ap.add_argument("--images", default="50",
                    help="N: the first N images of the test split (default 50); A:B: images A..B-1 (to split work between processes)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--steps-scale", type=float, default=1.0,
                    help="budget knob: multiplies every step count of the method configs (default 1 = the solvers' defaults)")
    ap.add_argument("--ilo-layers", default="default", help="default (ILOConfig's 0,1,2, cut to the priors' cuts) | trained | e.g. 0,2,3")
    ap.add_argument("--ilo-radii", default=None, help="l1 radii of ILO rounds 1.. (default ILOConfig's 500,1000)")
    ap.add_argument("--mgan-layer", default="trained", help="trained (the RTIL checkpoint's mixing layer) | a cut index")
    ap.add_argument("--data", default="fashion-mnist", help="test split of this source (default fashion-mnist)")
    ap.add_argument("--noise-std", type=float, default=0.0, help="per-entry measurement noise std (default 0: noiseless)")
    ap.add_argument("--batch-images", type=int, default=10,
                    help="solve up to N images as one batch (default 10; 1 = one at a time; same results up to float rounding)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--out", default=str(RESULTS / "rtil.json"), help="results JSON (the .md and .png go next to it)")
    ap.add_argument("--report-only", action="store_true", help="only write the .md and .png from the runs already in --out")
    ap.add_argument("--merge", default="", metavar="JSON,...",
                    help="fold the results of parallel runs (written with other --out) into --out, then report")
    ap.add_argument("--smoke", action="store_true", help="tiny random DCGANs, 4 images, 1 seed, steps x 0.02, temp results")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = shlex.join(["python", "benchmarks/rtil.py", *(sys.argv[1:] if argv is None else argv)])
    if a.merge:
        out = Path(a.out)
        grid = results_grid(out)
        for src in filter(None, a.merge.split(",")):
            if not Path(src).is_file():
                ap.error(f"--merge: {src} does not exist")
            print(f"merged {merge(grid.doc, json.loads(Path(src).read_text()), src)} runs from {src}", flush=True)
        grid.save()
        doc = grid.doc
        print(report(doc, out.with_suffix(".md"), out.with_suffix(".png")))
        return
    if a.report_only:
        # a run stopped part-way (time budget) is still reported: the JSON holds every finished run
        out = Path(a.out)
        if not out.exists():
            ap.error(f"--report-only: {out} does not exist")
        print(report(json.loads(out.read_text()), out.with_suffix(".md"), out.with_suffix(".png")))
        return
    if a.smoke:
        tmp = smoke_setup(a)
        print(f"smoke: checkpoints and results in {tmp}", flush=True)
    if not a.pair:
        ap.error("give at least one --pair LABEL:VANILLA,RTIL (or --smoke)")
    if not (a.steps_scale > 0 and math.isfinite(a.steps_scale)):
        ap.error("--steps-scale must be a positive number")
    try:
        a.image_lo, a.image_hi = parse_images(str(a.images))
    except ValueError as e:
        ap.error(str(e))
    if a.batch_images < 1:
        ap.error("--batch-images must be >= 1")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        doc = run(a, out, command)
    except ReconError as e:
        raise SystemExit(f"error: {e}") from None
    text = report(doc, out.with_suffix(".md"), out.with_suffix(".png"))
    print(text)
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if a.smoke:
        # resume check: the same invocation again must find every run done and add none
        doc2 = run(a, out, command + "  # resume check")
        added = doc2["invocations"][-1]["new_runs"]
        if added:
            raise SystemExit(f"smoke: resume check failed, {added} runs were redone")
        report(doc2, out.with_suffix(".md"), out.with_suffix(".png"))
        print(f"smoke: resume check passed (0 runs redone); total {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
