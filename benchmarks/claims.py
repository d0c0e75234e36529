"""Every quantitative claim of the five papers, checked against recon's own runs (issue #18).

One table (`benchmarks/results/claims.md`): the claim, the paper's figure, recon's figure (mean
+- standard error over images x seeds, n given), a verdict (held / not held / not comparable / by
construction) and the exact settings and deviations, each row computed from a raw results file.
The claims are listed in ``CLAIMS`` below (the papers are in ../shared/papers/).

Existing results files answer most rows (methods.json, speed.json, surgery_vs_csgm.json,
cut_sweep/sweep.json, rtil.json). The experiments the issue names as missing run here, each a
resumable keyed grid (recon_core.pipeline.Grid) in `benchmarks/results/claims_<exp>.json`,
rewritten after every cell (a stopped run loses at most the cell in progress; a rerun skips
finished cells):

    python benchmarks/claims.py --run repr --threads 1          # Surgery's representation error, A = I
    python benchmarks/claims.py --run lasso,untrained --threads 1   # Surgery vs Lasso-DCT across m/n; untrained weights
    python benchmarks/claims.py --run nogs-more --threads 1     # No GS with 6x the restarts and 4x the steps
    python benchmarks/claims.py --run iagan-noise --threads 1   # IAGAN and back-projection, noiseless vs 10/255
    python benchmarks/claims.py --run hybrid-ood --threads 1    # hybrid vs GAN and DD, faces vs other photos
    python benchmarks/claims.py --run ilo-extra,params --threads 1   # ILO's SNA and 50 x 4 steps; parameter counts
    python benchmarks/claims.py --run inits --threads 1         # Surgery's initialisations (Fig. 14)
    python benchmarks/claims.py --run iagan-tasks --threads 1   # IAGAN vs CSGM: Fourier CS, deblurring, misaligned faces
    python benchmarks/claims.py --report-only                   # claims.md + claims_surgery_lasso.png from the JSON

``--seeds`` adds seeds to an experiment's grid (finished cells are kept); ``--smoke`` runs every
experiment on one image with a few steps into ``--out-dir`` (the script's own test; not a result).
Nothing is selected against the ground truth: every method keeps its lowest-measurement-loss
restart/iterate. PSNR averages are means of per-image PSNR unless a row says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
NOISE_10 = 10 / 255  # the IAGAN paper's noise level (per entry, pixel units)
#: --images: the image names to run, in this order (empty: every image of the experiment)
ONLY: list = []


# ---------------------------------------------------------------------------------------------
# images


def report_photos() -> list:
    """[(name, (1, 3, 64, 64))] the six report photos as stored PNGs (benchmarks/data/photos):
    the very inputs of speed.json, so rows that pair with its runs see identical measurements."""
    from recon_core.images import load_image

    d = ROOT / "benchmarks" / "data" / "photos"
    return [(p.stem, load_image(p, channels=3)) for p in sorted(d.glob("*.png"))]


def lfw_faces(idx=(0, 1), size: int = 64) -> list:
    """[(name, (1, 3, size, size))] real faces from scikit-image's lfw_subset (25 px greyscale,
    enlarged): the only real faces besides the astronaut crop offline."""
    import numpy as np
    import skimage.data

    from recon_core.images import fit_image

    faces = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")
    return [(f"lfw{i}", fit_image(torch.from_numpy(faces[i].astype("float32"))[None, None].repeat(1, 3, 1, 1), size))
            for i in idx]


def generated(G, seeds=(1000, 1001)) -> list:
    """[(name, (1, C, H, W))] samples G(z), z drawn from the prior with a fixed seed each: images
    with zero representation error for the uncut generator (the paper's "Generated" row)."""
    return [(f"gen{s}", G.sample(1, s)) for s in seeds]


def _faces_and_photos(G) -> dict:
    photos = dict(report_photos())
    return {"face": [("astronaut_face", photos["astronaut_face"])] + lfw_faces(),
            "generated": generated(G),
            "photo": [(n, photos[n]) for n in ("camera", "chelsea", "coffee", "rocket")]}


# ---------------------------------------------------------------------------------------------
# running


def only(items: list, name=lambda t: t[0]) -> list:
    """``items`` restricted to and ordered by --images (all of them when it is empty)."""
    if not ONLY:
        return items
    by = {name(t): t for t in items}
    return [by[n] for n in ONLY if n in by]


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), CPU only")


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


class Runner:
    """One experiment's resumable grid: ``cell(key, fn)`` runs ``fn() -> dict`` unless ``key``
    is finished, stamps it with the time, and stores it at once."""

    def __init__(self, out_dir: Path, exp: str, settings: dict, smoke: bool):
        from recon_core.pipeline import Grid

        self.grid = Grid(out_dir / f"claims_{exp}.json", {**settings, "smoke": smoke}, cells="runs")
        self.grid.doc.setdefault("invocations", []).append(
            {"command": "python benchmarks/claims.py " + " ".join(sys.argv[1:]), "date": _now(), "machine": _machine()})
        self.grid.save()

    def cell(self, key: str, fn) -> dict:
        """The stored record of ``key``, computing and storing it first if missing."""
        if key in self.grid:
            return self.grid.cells[key]
        t0 = time.perf_counter()
        rec = fn()
        rec.setdefault("time_s", time.perf_counter() - t0)
        rec["when"] = _now()
        self.grid.put(key, rec)
        print(f"{key}: PSNR {rec.get('psnr', float('nan')):.2f} ({rec['time_s']:.1f} s)", flush=True)
        return rec


def _solve(method, problem, G, cfg, seed):
    from recon_core.pipeline import solve_problems

    res = solve_problems(method, [problem], G, cfg, seed)[0]
    if isinstance(res, Exception):
        raise res
    return res


def _record(x, res, problem, **extra) -> dict:
    from recon_core.pipeline import score

    m = score(x, res.x_hat, problem)
    return {"psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"], "mse": m.get("mse"), "residual": m["residual"],
            "evaluations": res.extra.get("evaluations"), **extra}


def _shrink(cfg, smoke: bool, **small):
    """``cfg`` with the smoke test's tiny step counts when ``smoke``."""
    return dataclasses.replace(cfg, **small) if smoke else cfg


def run_repr(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Table 2 / Fig. 8: A = I, no noise, so only representation and
    optimisation error remain. Surgery at the paper's raw-reconstruction settings for DCGAN
    (Table 3: L-BFGS lr 1, 100 steps, c = 1, 3 restarts, CN(0,1) init) vs the same with c = 0
    (No GS), on real photos (a face and non-faces) and on generated images G(z)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    base = dataclasses.replace(make_config("surgery", "paper", "dcgan"), lr=1.0, steps=100)
    base = _shrink(base, smoke, steps=1, lbfgs_max_iter=2)
    settings = {"op": "identity", "noise": 0.0, "prior": "dcgan-faces-64", "config": dataclasses.asdict(base), "cuts": [0, 1]}
    run = Runner(out, "repr", settings, smoke)
    photos = dict(report_photos())
    sets = [("photo", n, photos[n]) for n in ("astronaut_face", "chelsea", "coffee", "camera")] + \
           [("generated", n, x) for n, x in generated(G)]
    sets = sets[:1] if smoke else only(sets, lambda t: t[1])
    for seed in seeds:
        for group, name, x in sets:
            problem, _ = simulate(x, "identity", {}, seed)
            for cut in (1, 0):
                cfg = dataclasses.replace(base, cut=cut)
                run.cell(f"{name}|{seed}|c{cut}", lambda: {"image": name, "group": group, "seed": seed, "cut": cut,
                                                          **_record(x, _solve("surgery", problem, G, cfg, seed), problem)})


def run_lasso(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Figs. 2-3: Surgery (c = 1), No GS (c = 0, the same L-BFGS schedule) and
    Lasso-DCT across m/n with the paper's noise (||eta|| = 0.1, cs-norm) on the six report photos.
    Surgery's paper-preset runs at m/n 0.05-0.2 are speed.json's ("paper" arm, identical
    measurements and solver seeds); this grid adds m/n 0.4 for Surgery and everything for c = 0
    and Lasso-DCT."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    gs = _shrink(make_config("surgery", "paper", "dcgan"), smoke, steps=1, lbfgs_max_iter=2)
    lasso = _shrink(make_config("lasso-dct", "paper"), smoke, steps=3)
    ratios = (0.05, 0.1, 0.2, 0.4)
    settings = {"op": "cs-gaussian", "noise": ["cs-norm", 0.1], "prior": "dcgan-faces-64", "ratios": list(ratios),
                "surgery": dataclasses.asdict(gs), "lasso-dct": dataclasses.asdict(lasso)}
    run = Runner(out, "lasso", settings, smoke)
    imgs = report_photos()[:1] if smoke else report_photos()
    for seed in seeds:
        for name, x in only(imgs):
            for ratio in (ratios[:1] if smoke else ratios):
                problem, _ = simulate(x, "cs-gaussian", {"ratio": ratio}, seed, 0.1, "cs-norm")
                base = {"image": name, "ratio": ratio, "seed": seed}
                run.cell(f"{name}|{ratio:g}|{seed}|lasso-dct", lambda: {
                    **base, "method": "lasso-dct", **_record(x, _solve("lasso-dct", problem, None, lasso, seed), problem)})
                run.cell(f"{name}|{ratio:g}|{seed}|nogs", lambda: {
                    **base, "method": "nogs", **_record(x, _solve("surgery", problem, G, dataclasses.replace(gs, cut=0), seed), problem)})
                if ratio == 0.4 or smoke:  # speed.json has the paper-preset Surgery runs at 0.05-0.2
                    run.cell(f"{name}|{ratio:g}|{seed}|surgery", lambda: {
                        **base, "method": "surgery", **_record(x, _solve("surgery", problem, G, gs, seed), problem)})


def run_nogs_more(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Fig. 7: No GS (c = 0) with 6x the restarts (18) and 4x the steps (100 L-BFGS
    steps of up to 20 inner iterations), cs-gaussian m/n 0.1 with the paper's noise; paired with
    claims_lasso.json's No GS runs (3 restarts, 25 steps) on the same measurements and solver seed."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    cfg = dataclasses.replace(make_config("surgery", "paper", "dcgan"), cut=0, restarts=18, steps=100)
    cfg = _shrink(cfg, smoke, restarts=2, steps=1, lbfgs_max_iter=2)
    run = Runner(out, "nogs-more", {"op": "cs-gaussian", "ratio": 0.1, "noise": ["cs-norm", 0.1], "surgery": dataclasses.asdict(cfg)}, smoke)
    for seed in seeds:
        for name, x in (report_photos()[:1] if smoke else only(report_photos())):
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, seed, 0.1, "cs-norm")
            run.cell(f"{name}|{seed}", lambda: {"image": name, "seed": seed, **_record(x, _solve("surgery", problem, G, cfg, seed), problem)})


def untrained_dcgan(G, seed: int = 0):
    """A copy of ``G`` with freshly initialised weights (pytorch/examples DCGAN init: conv
    N(0, 0.02), BatchNorm weight N(1, 0.02), bias 0, running statistics reset)."""
    H = copy.deepcopy(G)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in H.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.02)
            elif isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(1 + torch.randn(mod.weight.shape, generator=gen) * 0.02)
                mod.bias.zero_()
                mod.reset_running_stats()
    return H.eval()


def run_untrained(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Fig. 9: Surgery with trained vs randomly initialised weights, cs-gaussian
    m/n 0.1 with the paper's noise; the trained runs are speed.json's paper arm (same measurements
    and solver seeds)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    H = untrained_dcgan(load_prior("dcgan-faces-64"))
    gs = _shrink(make_config("surgery", "paper", "dcgan"), smoke, steps=1, lbfgs_max_iter=2)
    run = Runner(out, "untrained", {"op": "cs-gaussian", "ratio": 0.1, "noise": ["cs-norm", 0.1], "surgery": dataclasses.asdict(gs),
                                    "weights": "dcgan-faces-64 architecture, DCGAN init, seed 0"}, smoke)
    for seed in seeds:
        for name, x in (report_photos()[:1] if smoke else only(report_photos())):
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, seed, 0.1, "cs-norm")
            run.cell(f"{name}|{seed}", lambda: {"image": name, "seed": seed, **_record(x, _solve("surgery", problem, H, gs, seed), problem)})


def run_iagan_noise(out: Path, seeds, smoke: bool) -> None:
    """IAGAN Tables 2-3 and its back-projection: super-resolution x4 on faces, noiseless and with
    noise 10/255; bicubic (pinv), CSGM (the paper's: Adam lr 0.1, 1600 steps, minimum-objective
    iterate), CSGM-BP, IAGAN (stage 1 as CSGM, stage 2 the paper's super-resolution count, 500
    steps for BEGAN, halved when noisy), IAGAN-BP. BP is run under noise too, the regime the
    paper says it helps less in (it applies BP only when noiseless)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config
    from recon_core.solvers.postprocess import backproject

    G = load_prior("dcgan-faces-64")
    ia = dataclasses.replace(make_config("iagan", "paper", "dcgan"), steps=500)
    ia = _shrink(ia, smoke, csgm_steps=3, steps=2)
    cs = dataclasses.replace(make_config("csgm", "paper", "dcgan"), steps=ia.csgm_steps)
    run = Runner(out, "iagan-noise", {"op": "superres", "factor": 4, "noise": [0.0, NOISE_10], "iagan": dataclasses.asdict(ia),
                                      "csgm": dataclasses.asdict(cs)}, smoke)
    photos = dict(report_photos())
    faces = [("astronaut_face", photos["astronaut_face"])] + lfw_faces()
    for seed in seeds:
        for name, x in (faces[:1] if smoke else only(faces)):
            for noise in (0.0, NOISE_10):
                problem, _ = simulate(x, "superres", {"factor": 4}, seed, noise)
                base = {"image": name, "seed": seed, "noise": noise}
                tag = f"{name}|{seed}|{noise:.4f}"
                run.cell(f"{tag}|bicubic", lambda: {**base, "method": "bicubic", **_record(x, _solve("pinv", problem, None, make_config("pinv"), seed), problem)})
                if f"{tag}|csgm-bp" not in run.grid or f"{tag}|csgm" not in run.grid:
                    t0 = time.perf_counter()
                    r = _solve("csgm", problem, G, cs, seed)
                    t = time.perf_counter() - t0
                    run.cell(f"{tag}|csgm", lambda: {**base, "method": "csgm", "time_s": t, **_record(x, r, problem)})
                    run.cell(f"{tag}|csgm-bp", lambda: {**base, "method": "csgm-bp", "time_s": t, **_record(x, backproject(r, problem), problem)})
                if f"{tag}|iagan-bp" not in run.grid or f"{tag}|iagan" not in run.grid:
                    t0 = time.perf_counter()
                    r2 = _solve("iagan", problem, G, ia, seed)
                    t2 = time.perf_counter() - t0
                    run.cell(f"{tag}|iagan", lambda: {**base, "method": "iagan", "time_s": t2, **_record(x, r2, problem, adapt_steps=r2.extra.get("adapt_steps"))})
                    run.cell(f"{tag}|iagan-bp", lambda: {**base, "method": "iagan-bp", "time_s": t2, **_record(x, backproject(r2, problem), problem)})


#: Surgery's initialisations compared (GS-14); the paper's N(0, 5), N(0, 10) and LassoInv are not options of recon
INITS = ("cn", "zero", "normal", "uniform", "prior")


def run_inits(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Fig. 14: Surgery (c = 1, the paper's DCGAN CS schedule) with each
    initialisation of ``INITS``, cs-gaussian m/n 0.16 with the paper's noise (||eta|| = 0.1), on
    the six report photos (1 face, 5 non-face; the paper: CelebA and COCO)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    gs = _shrink(make_config("surgery", "paper", "dcgan"), smoke, steps=1, lbfgs_max_iter=2)
    run = Runner(out, "inits", {"op": "cs-gaussian", "ratio": 0.16, "noise": ["cs-norm", 0.1], "inits": list(INITS),
                                "surgery": dataclasses.asdict(gs)}, smoke)
    for seed in seeds:
        for name, x in (report_photos()[:1] if smoke else only(report_photos())):
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.16}, seed, 0.1, "cs-norm")
            for init in (INITS[:2] if smoke else INITS):
                run.cell(f"{name}|{seed}|{init}", lambda: {
                    "image": name, "seed": seed, "init": init,
                    **_record(x, _solve("surgery", problem, G, dataclasses.replace(gs, init=init), seed), problem)})


def misaligned(x: torch.Tensor, shift: int = 4) -> torch.Tensor:
    """``x`` (1, C, H, W) translated down by ``shift`` pixels (top rows repeated): the IAGAN
    paper's "vertically translated by a few pixels" faces."""
    import torch.nn.functional as F

    return F.pad(x, (0, 0, shift, 0), mode="replicate")[..., : x.shape[-2], :]


#: IAGAN's other tasks (Tables 1 and 4, the misaligned-faces text): name -> (operator, params, noise per entry)
IAGAN_TASKS = {"fourier-0.3": ("cs-fourier", {"ratio": 0.3}, NOISE_10), "fourier-0.5": ("cs-fourier", {"ratio": 0.5}, NOISE_10),
               "deblur-9": ("blur", {"kernel_size": 9}, NOISE_10), "misaligned-sr4": ("superres", {"factor": 4}, 0.0)}


def run_iagan_tasks(out: Path, seeds, smoke: bool) -> None:
    """IAGAN Table 1 (subsampled Fourier CS 0.3 / 0.5, noise 10/255), Table 4 (9x9 uniform
    deblurring, noise 10/255) and the misaligned-faces text (SR x4 of faces translated down 4 px,
    noiseless): CSGM (Adam lr 0.1, 1600 steps, minimum-objective iterate) vs IAGAN (stage 1 the
    same; stage 2 the paper's 600 compressed-sensing steps, halved when noisy, and 500 for
    super-resolution) on the astronaut face and 2 LFW faces. No back-projection (the paper skips
    it under noise)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    ia = _shrink(make_config("iagan", "paper", "dcgan"), smoke, csgm_steps=3, steps=2)
    cs = dataclasses.replace(make_config("csgm", "paper", "dcgan"), steps=ia.csgm_steps)
    run = Runner(out, "iagan-tasks", {"tasks": {k: [o, p, n] for k, (o, p, n) in IAGAN_TASKS.items()}, "misaligned_shift": 4,
                                      "iagan": dataclasses.asdict(ia), "iagan_sr_steps": 500, "csgm": dataclasses.asdict(cs)}, smoke)
    photos = dict(report_photos())
    faces = [("astronaut_face", photos["astronaut_face"])] + lfw_faces()
    for seed in seeds:
        for name, x0 in (faces[:1] if smoke else only(faces)):
            for task, (op, params, noise) in (list(IAGAN_TASKS.items())[:1] if smoke else IAGAN_TASKS.items()):
                x = misaligned(x0) if task.startswith("misaligned") else x0
                problem, _ = simulate(x, op, params, seed, noise)
                cfg = dataclasses.replace(ia, steps=500) if op == "superres" and not smoke else ia
                base = {"image": name, "seed": seed, "task": task}
                run.cell(f"{name}|{seed}|{task}|csgm", lambda: {**base, "method": "csgm", **_record(x, _solve("csgm", problem, G, cs, seed), problem)})
                run.cell(f"{name}|{seed}|{task}|iagan", lambda: {**base, "method": "iagan", **_record(x, _solve("iagan", problem, G, cfg, seed), problem)})
                run.cell(f"{name}|{seed}|{task}|naive", lambda: {**base, "method": "pinv", **_record(x, _solve("pinv", problem, None, make_config("pinv"), seed), problem)})


#: the reduced budget of benchmarks/methods.py for the slow methods (stated beside the rows)
HYBRID_REDUCED = {"hybrid": {"n_pre": 200, "steps": 1500}, "deep-decoder": {"steps": 1500}}


def run_hybrid_ood(out: Path, seeds, smoke: bool) -> None:
    """Hybrid paper Figs. 3 and 5: the GAN prior alone (CSGM), the Deep Decoder alone and the hybrid,
    cs-gaussian m/n 0.1 with the paper's noise (||eta|| = 0.1), on faces (generated samples, the
    astronaut face, LFW faces) and on non-face photos; alpha and beta recorded."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    cfgs = {"csgm": _shrink(make_config("csgm", "paper"), smoke, steps=3),
            "deep-decoder": _shrink(dataclasses.replace(make_config("deep-decoder", "paper"), **HYBRID_REDUCED["deep-decoder"]), smoke, steps=3),
            "hybrid": _shrink(dataclasses.replace(make_config("hybrid", "paper"), **HYBRID_REDUCED["hybrid"]), smoke, n_pre=2, steps=3)}
    run = Runner(out, "hybrid-ood", {"op": "cs-gaussian", "ratio": 0.1, "noise": ["cs-norm", 0.1],
                                     **{m: dataclasses.asdict(c) for m, c in cfgs.items()}}, smoke)
    groups = _faces_and_photos(G)
    order = [("generated", n, x) for n, x in groups["generated"]] + [("photo", n, x) for n, x in groups["photo"][:2]] + \
            [("face", n, x) for n, x in groups["face"]] + [("photo", n, x) for n, x in groups["photo"][2:]]
    for seed in seeds:
        for group, name, x in (order[:1] if smoke else only(order, lambda t: t[1])):
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, seed, 0.1, "cs-norm")
            for m, cfg in cfgs.items():
                def go(m=m, cfg=cfg):
                    r = _solve(m, problem, None if m == "deep-decoder" else G, cfg, seed)
                    return {"image": name, "group": group, "seed": seed, "method": m, **_record(x, r, problem),
                            **({"alpha": r.extra.get("alpha"), "beta": r.extra.get("beta")} if m == "hybrid" else {})}
                run.cell(f"{name}|{seed}|{m}", go)


def run_ilo_extra(out: Path, seeds, smoke: bool) -> None:
    """ILO Table 1 (Stochastic Noise Addition for denoising, sigma = 30/255): CSGM (ILO's round 0
    alone) and ILO, each with and without SNA; and ILO's running-time remark (50 steps on each of
    the first four layers beats CSGM) on cs-gaussian m/n 0.1 with the Surgery paper's noise, paired
    with speed.json's paper-preset CSGM runs (same measurements, seed 0)."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    ilo = _shrink(make_config("ilo", "paper", "dcgan"), smoke, steps=(2, 2, 2))
    csgm0 = dataclasses.replace(ilo, layers=(0,), steps=(ilo.steps[0],), radii=())
    ilo4 = _shrink(dataclasses.replace(ilo, layers=(0, 1, 2, 3), steps=(50, 50, 50, 50), radii=(500.0, 1000.0, 2000.0)),
                   smoke, steps=(2, 2, 2, 2))
    sigma = 30 / 255
    run = Runner(out, "ilo-extra", {"sna": {"op": "identity", "noise": sigma, "ilo": dataclasses.asdict(ilo), "csgm": dataclasses.asdict(csgm0)},
                                    "ilo-50x4": {"op": "cs-gaussian", "ratio": 0.1, "noise": ["cs-norm", 0.1], "ilo": dataclasses.asdict(ilo4)}}, smoke)
    photos = report_photos()
    for seed in seeds:
        for name, x in (photos[:1] if smoke else only(photos[:3])):
            problem, _ = simulate(x, "identity", {}, seed, sigma)
            for label, cfg in (("csgm", csgm0), ("ilo", ilo)):
                for sna in (0.0, sigma):
                    c = dataclasses.replace(cfg, sna_std=sna)
                    run.cell(f"sna|{name}|{seed}|{label}|{'sna' if sna else 'plain'}", lambda: {
                        "exp": "sna", "image": name, "seed": seed, "method": label, "sna": sna > 0, **_record(x, _solve("ilo", problem, G, c, seed), problem)})
        for name, x in (photos[:1] if smoke else only(photos)):
            problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, seed, 0.1, "cs-norm")
            run.cell(f"ilo50x4|{name}|{seed}", lambda: {"exp": "ilo-50x4", "image": name, "seed": seed,
                                                       **_record(x, _solve("ilo", problem, G, ilo4, seed), problem)})


def run_params(out: Path, seeds, smoke: bool) -> None:
    """Generator Surgery Table 1 and the hybrid paper's Fig. 7: parameters each method optimises
    for dcgan-faces-64, over the pixel count n. Surgery's and mGANprior's come from the state a
    one-step solve returns; the Deep Decoder's at the Surgery paper's fixed 64 px size (depth 5,
    k 44); the hybrid's at m/n 0.1 (its decoder is sized below m); IAGAN's = z + every weight."""
    from recon_core.generators.zoo import load_prior
    from recon_core.pipeline import simulate
    from recon_core.priors import deep_decoder as dd
    from recon_core.solvers import make_config

    G = load_prior("dcgan-faces-64")
    x = report_photos()[0][1]
    n = x.numel()
    run = Runner(out, "params", {"prior": "dcgan-faces-64", "n": n}, smoke)
    problem, _ = simulate(x, "cs-gaussian", {"ratio": 0.1}, 0, 0.1, "cs-norm")

    def state_size(method, cfg):
        r = _solve(method, problem, G, cfg, 0)
        return sum(v.numel() for k, v in r.state.items() if not k.endswith("input")), r

    z = G.sample_latent(1, torch.Generator().manual_seed(0))
    nz = sum(v.numel() for v in z.values()) if isinstance(z, dict) else z.numel()
    run.cell("csgm", lambda: {"method": "csgm", "params": nz, "n": n})
    run.cell("surgery", lambda: {"method": "surgery", "params": state_size("surgery", dataclasses.replace(
        make_config("surgery", "paper", "dcgan"), steps=1, lbfgs_max_iter=1))[0], "n": n})
    run.cell("mgan", lambda: {"method": "mgan", "params": state_size("mgan", dataclasses.replace(
        make_config("mgan", "paper", "dcgan"), steps=1))[0], "n": n})
    run.cell("iagan", lambda: {"method": "iagan", "params": nz + sum(p.numel() for p in G.parameters()), "n": n})
    run.cell("deep-decoder", lambda: {"method": "deep-decoder", "params": dd.num_params(44, 5, 3), "n": n,
                                      "note": "depth 5, k 44 (the Surgery paper's 64 px Deep Decoder)"})

    def hybrid():
        r = _solve("hybrid", problem, G, dataclasses.replace(make_config("hybrid", "paper"), n_pre=1, steps=1), 0)
        return {"method": "hybrid", "params": r.extra["num_params"], "n": n, "m": problem.A.m,
                "note": f"m/n 0.1: decoder depth {r.extra['dd_depth']}, width {r.extra['dd_width']}, + z + alpha + beta"}
    run.cell("hybrid", hybrid)


RUNNERS = {"repr": run_repr, "lasso": run_lasso, "nogs-more": run_nogs_more, "untrained": run_untrained, "iagan-noise": run_iagan_noise,
           "hybrid-ood": run_hybrid_ood, "ilo-extra": run_ilo_extra, "params": run_params, "inits": run_inits,
           "iagan-tasks": run_iagan_tasks}
EXPERIMENTS = tuple(RUNNERS)


def main(argv=None) -> None:
    """Run the named experiments (resumable), then rebuild the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="", help="comma-separated experiments: " + ",".join(EXPERIMENTS))
    ap.add_argument("--seeds", default="0", help="seeds of the experiments run now (added to their grids)")
    ap.add_argument("--images", default="", help="comma-separated image names: run only these cells, in this order (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="one image, a few steps per method (a test, not a result)")
    ap.add_argument("--out-dir", default=str(RESULTS), help="where claims_<exp>.json and the report are written")
    ap.add_argument("--results", default=str(RESULTS), help="where the existing results files are read")
    ap.add_argument("--report-only", action="store_true", help="only rebuild claims.md / claims_surgery_lasso.png")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        seeds = [int(s) for s in a.seeds.split(",")]
        global ONLY
        ONLY = [n for n in a.images.split(",") if n]
        for exp in filter(None, a.run.split(",")):
            if exp not in RUNNERS:
                sys.exit(f"unknown experiment {exp!r}; choose from {', '.join(EXPERIMENTS)}")
            RUNNERS[exp](out, seeds, a.smoke)
    from claims_report import build_report

    print(build_report(Path(a.results), out))


if __name__ == "__main__":
    main()
