"""The cut-sweep engine: Generator Surgery at every cut, ratio and image, resumable.

Results live in one JSON document (``sweep.json``, a recon_core.pipeline.Grid) rewritten
atomically after every cell, so an interrupted sweep loses at most the cell in progress and a
rerun skips the finished ones; every cell is the run ``recon reconstruct`` makes with its seed. The
recommended cut for a ratio is the one with the highest mean PSNR over the user's *validation*
images (the paper's procedure); it is a choice for later images, not a selection on test images.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .errors import BadInput
from .events import EventSink, null_sink
from .images import atomic_write_text
from .operators import NoiseSpec
from .pipeline import NOISE_SEED_OFFSET, Grid, score, simulate, solve_problems
from .solvers import surgery

SWEEP_SCHEMA = 1
#: operator family -> the parameter that --ratios sets
RATIO_PARAM = {"cs-gaussian": "ratio", "cs-circulant": "ratio", "cs-fourier": "ratio", "inpaint": "frac"}


def parse_cuts(text: str, cut_points: Sequence[int]) -> List[int]:
    """'0-4' or '0,1,3' -> sorted cut list, each a cut point of the prior (BadInput otherwise)."""
    cuts = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-"))
                cuts.update(range(a, b + 1))
            elif part:
                cuts.add(int(part))
    except ValueError:
        raise BadInput(f"--cuts must look like '0-4' or '0,1,3', got '{text}'") from None
    bad = sorted(c for c in cuts if c not in cut_points)
    if not cuts or bad:
        raise BadInput(f"--cuts {text}: {bad or 'none'} outside the prior's cut points 0..{cut_points[-1]}")
    return sorted(cuts)


def parse_ratios(text: str) -> List[float]:
    """'0.05,0.1' -> [0.05, 0.1]; each in (0, 1]."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--ratios must be comma-separated numbers, got '{text}'") from None
    if not vals or any(not (0 < v <= 1) or not math.isfinite(v) for v in vals):
        raise BadInput(f"--ratios must be numbers in (0, 1], got '{text}'")
    return vals


def cell_key(image: str, ratio: float, cut: int) -> str:
    return f"{image}|{ratio:g}|{cut}"


def run_sweep(
    prior,
    images: List[Tuple[str, torch.Tensor]],
    *,
    op: str,
    ratios: List[float],
    cuts: List[int],
    noise: NoiseSpec,
    seed: int,
    config: surgery.SurgeryConfig,
    path: Path,
    settings: dict,
    force: bool = False,
    on_event: EventSink = null_sink,
    on_cell: Optional[Callable[[dict], None]] = None,
    max_bytes: Optional[int] = None,
) -> dict:
    """Run surgery for every (image, ratio, cut) cell not yet in ``path`` and return the document.

    images: (name, x (1, C, R, R) in [0, 1]). Each cell is the run ``recon reconstruct --method
    surgery --preset paper --cut c --seed S`` makes (recon_core.pipeline: the operator from
    ``seed``, the noise ``noise`` drawn from seed + NOISE_SEED_OFFSET, the solver from seed +
    SOLVER_SEED_OFFSET), so every cut of an (image, ratio) pair sees identical measurements and a
    cell can be reproduced alone. ``settings`` (JSON-able) must match a resumed document unless
    ``force``."""
    if op not in RATIO_PARAM:
        raise BadInput(f"cut-sweep --ratios applies to {', '.join(RATIO_PARAM)}; got --op {op}")
    if noise.seed != seed + NOISE_SEED_OFFSET:
        raise BadInput(f"the noise of a sweep is drawn from seed + {NOISE_SEED_OFFSET} (the seed policy), got seed {noise.seed}")
    grid = Grid(path, settings, schema=SWEEP_SCHEMA, force=force)
    total = len(images) * len(ratios) * len(cuts)
    done = 0
    for name, x in images:
        for ratio in ratios:
            problem = None
            for cut in cuts:
                key = cell_key(name, ratio, cut)
                done += 1
                if key in grid:
                    continue
                if problem is None:
                    problem, _ = simulate(x, op, {RATIO_PARAM[op]: ratio}, seed, noise.value, noise.convention, x.device, max_bytes)
                t0 = time.perf_counter()
                res = solve_problems("surgery", [problem], prior, replace(config, cut=cut), seed, on_event)[0]
                if isinstance(res, Exception):
                    raise res
                m = score(x, res.x_hat, problem)
                cell = {"image": name, "ratio": ratio, "cut": cut, "psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"],
                        "residual": m["residual"], "time_s": time.perf_counter() - t0, "losses": res.losses}
                grid.put(key, cell)
                if on_cell is not None:
                    on_cell({**cell, "done": done, "total": total})
    grid.doc["summary"] = summarise(grid.doc, ratios, cuts)
    grid.save()
    return grid.doc


def summarise(doc: dict, ratios: List[float], cuts: List[int]) -> dict:
    """Per ratio and cut: mean/std PSNR (mean of per-image PSNR), mean SSIM/LPIPS, n; and the
    recommended cut per ratio (highest mean PSNR)."""
    table: Dict[str, dict] = {}
    best: Dict[str, int] = {}
    for ratio in ratios:
        row = {}
        for cut in cuts:
            cells = [c for c in doc["cells"].values() if c["ratio"] == ratio and c["cut"] == cut]
            if not cells:
                continue
            ps = [c["psnr"] for c in cells]
            lp = [c["lpips"] for c in cells if c["lpips"] is not None]
            row[str(cut)] = {"psnr_mean": statistics.mean(ps), "psnr_std": statistics.pstdev(ps),
                             "ssim_mean": statistics.mean(c["ssim"] for c in cells),
                             "lpips_mean": statistics.mean(lp) if lp else None, "n": len(cells)}
        table[f"{ratio:g}"] = row
        if row:
            best[f"{ratio:g}"] = int(max(row, key=lambda k: row[k]["psnr_mean"]))
    return {"table": table, "recommended_cut": best}


def write_csv(doc: dict, path: Path) -> Path:
    """One row per cell."""
    import csv
    import io

    buf = io.StringIO()
    cols = ["image", "ratio", "cut", "psnr", "ssim", "lpips", "residual", "time_s"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for c in doc["cells"].values():
        w.writerow(c)
    return atomic_write_text(path, buf.getvalue())


def plot(doc: dict, path: Path) -> Path:
    """sweep.png: mean PSNR vs cut, one line per ratio, +-1 std bands."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for ratio, row in doc["summary"]["table"].items():
        cuts = sorted(int(c) for c in row)
        mean = [row[str(c)]["psnr_mean"] for c in cuts]
        std = [row[str(c)]["psnr_std"] for c in cuts]
        ax.plot(cuts, mean, marker="o", label=f"m/n = {ratio}" if doc["settings"]["op"].startswith("cs-") else f"frac = {ratio}")
        ax.fill_between(cuts, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    all_cuts = sorted({int(c) for row in doc["summary"]["table"].values() for c in row})
    ax.set_xticks(all_cuts)
    ax.set_xlabel("cut index c (0 = no surgery)")
    ax.set_ylabel("mean PSNR (dB)")
    n_img = len({c["image"] for c in doc["cells"].values()})
    ax.set_title(f"{doc['settings']['prior']}, {doc['settings']['op']}, {n_img} images")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
