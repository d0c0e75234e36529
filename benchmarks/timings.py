"""Time README's two commands on this machine and record what they printed: the default
reconstruction (`make demo`'s `recon reconstruct` call, set-up excluded: run `make setup` first)
(the demo 3 times, medians), `recon priors` (5 runs), and, with --tests, the test suite (`make test`: test count and wall time).
It also times the demo's solve in-process with DCGAN's block-1 matmul path on and off, interleaved
(``block1_ab``: what that kernel choice buys, side by side in one run), and one Deep Decoder
step (forward + backward) of recon's batched decoder against the reference's torch layers
(``dd_step_ab``), and the dense Gaussian measurement loss with its gradient in one blocked pass
against the plain two passes and its coarse bfloat16 form (``residual_ab``), and a process
taking one Adam step with recon's Adam against one with torch.optim.Adam (``optimiser_ab``: the
import torch's optimisers cost),
and the demo's solve with the fast preset's bfloat16 share against float32 throughout, with the
generator's evaluation in both precisions (``bf16_ab``).

    python benchmarks/timings.py [--tests] [--out benchmarks/results/timings.json]

README quotes its figures from the file this writes."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _median(v: list) -> float:
    """The middle value of v (the upper one of the two for an even count)."""
    return sorted(v)[len(v) // 2]


def demo(out_dir: Path, repeats: int = 3) -> dict:
    """Run `make demo`'s reconstruction (with --json) ``repeats`` times (this machine is shared and
    noisy) and return every wall and solve time, their medians, and the run's metrics."""
    recon = str(Path(sys.executable).parent / "recon")
    cmd = [recon, "reconstruct", "recon_core/data/astronaut_face.png", "--op", "cs-gaussian", "--ratio", "0.1",
           "--noise-convention", "cs-norm", "--noise-std", "0.1", "--method", "surgery", "--out", str(out_dir), "--force",
           "--json", "--quiet"]
    walls, solves, totals = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
        rec = json.loads(p.stdout)
        solves.append(rec["wall_time"]["solve"])
        totals.append(rec["wall_time"]["total"])
    return {"command": " ".join(cmd[1:]), "runs": repeats, "wall_s_all": walls, "solve_s_all": solves,
            "wall_s": _median(walls), "solve_s": _median(solves), "total_in_process_s": _median(totals), "psnr": rec["metrics"]["psnr"],
            "evaluations": rec["solve"]["evaluations"], "stop": rec["solve"]["stop"], "preset": rec["method"]["preset"]}


def priors(repeats: int = 5) -> dict:
    """Wall time of `recon priors` (listing the zoo; reads the manifest only), ``repeats`` runs."""
    recon = str(Path(sys.executable).parent / "recon")
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([recon, "priors"], cwd=ROOT, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return {"command": "priors", "wall_s": walls, "median_s": _median(walls)}


def block1_ab(repeats: int = 3, **options) -> dict:
    """The demo's solve (in-process, torch's default threads) with DCGAN's block 1 as the library's
    transposed convolution ("library") and as recon's matmul + fold for a few rows ("matmul",
    generators/dcgan.deconv4x4_s2_as_matmul, dcgan.MATMUL_ROWS), interleaved ``repeats`` times: seconds and PSNR.
    ``options``: solver options (tests shorten the solve)."""
    import torch

    import recon_core as rc
    from recon_core.generators import dcgan
    from recon_core.pipeline import simulate

    G = rc.load_prior("dcgan-faces-64")
    x = rc.example_image("astronaut-face", 64)
    p = simulate(x, "cs-gaussian", {"ratio": 0.1}, 0, 0.1, "cs-norm")[0]  # the demo's settings, seed 0
    use = dcgan._use_matmul
    out: dict = {"threads": torch.get_num_threads(), "library": [], "matmul": [], "psnr": {}}
    try:
        for _ in range(repeats):
            for arm, rule in (("library", lambda h: False), ("matmul", use)):
                dcgan._use_matmul = rule
                t0 = time.perf_counter()
                r = rc.solve("surgery", p.A, p.y, G, noise_std=p.noise_std, seed=0, **options)
                out[arm].append(time.perf_counter() - t0)
                out["psnr"][arm] = float(rc.compute_metrics(x, r.x_hat)["psnr"])
    finally:
        dcgan._use_matmul = use
    out["median_s"] = {k: _median(out[k]) for k in ("library", "matmul")}
    out["speedup"] = out["median_s"]["library"] / out["median_s"]["matmul"]
    return out


def bf16_ab(repeats: int = 3, reps: int = 20, **options) -> dict:
    """The demo's solve (in-process, torch's default threads) with the fast preset as it is
    (``bf16_share`` 0.6: its first 60 % of evaluations on a bfloat16 copy of the generator, where
    the CPU computes bfloat16 natively) and with ``bf16_share`` 0 (float32 throughout),
    interleaved ``repeats`` times: seconds, PSNR, evaluations in bfloat16; and the generator's
    forward + backward at cut 1 (1 and 3 rows) in float32 and in bfloat16, in milliseconds.
    ``options``: solver options (tests shorten the solve)."""
    import torch

    import recon_core as rc
    from recon_core.pipeline import simulate
    from recon_core.solvers.common import bf16_tail, frozen, native_bf16

    G = rc.load_prior("dcgan-faces-64")
    x = rc.example_image("astronaut-face", 64)
    p = simulate(x, "cs-gaussian", {"ratio": 0.1}, 0, 0.1, "cs-norm")[0]  # the demo's settings, seed 0
    out: dict = {"threads": torch.get_num_threads(), "native_bf16": native_bf16("cpu"), "preset": [], "float32": [],
                 "psnr": {}, "bf16_evaluations": {}, "generator_ms": []}
    for _ in range(repeats):
        for arm, share in (("preset", 0.6), ("float32", 0.0)):
            t0 = time.perf_counter()
            r = rc.solve("surgery", p.A, p.y, G, noise_std=p.noise_std, seed=0, bf16_share=share, **options)
            out[arm].append(time.perf_counter() - t0)
            out["psnr"][arm] = float(rc.compute_metrics(x, r.x_hat)["psnr"])
            out["bf16_evaluations"][arm] = r.extra["bf16_evaluations"]
    out["median_s"] = {k: _median(out[k]) for k in ("preset", "float32")}
    out["speedup"] = out["median_s"]["float32"] / out["median_s"]["preset"]
    with frozen(G):
        low = bf16_tail(G, 1)
        for rows in (1, 3):
            s = {k: v.requires_grad_(True) for k, v in G.init_state(1, rows, rng=torch.Generator().manual_seed(0)).items()}
            arms = {"float32": lambda: torch.autograd.grad(G.tail(s, 1).sum(), list(s.values())),
                    "bfloat16": lambda: torch.autograd.grad(low(s).sum(), list(s.values()))}
            ms = _ms_interleaved(arms, reps)
            out["generator_ms"].append({"rows": rows, **ms, "speedup": ms["float32"] / ms["bfloat16"]})
    return out


def reference_decoder(params, net_input, i: int) -> "torch.nn.Module":
    """Restart ``i`` of recon's decoder parameters as the Deep Decoder reference code builds it:
    1x1 Conv2d (no bias), bilinear Upsample, ReLU, BatchNorm2d in training mode, sigmoid."""
    import torch

    depth = sum(1 for key in params if key.startswith("conv")) - 1
    k = params["conv0"].shape[1]
    layers = []
    for j in range(depth + 1):
        conv = torch.nn.Conv2d(k, k, 1, bias=False)
        conv.weight.data = params[f"conv{j}"][i][:, :, None, None].clone()
        bn = torch.nn.BatchNorm2d(k)
        bn.weight.data, bn.bias.data = params[f"gamma{j}"][i].clone(), params[f"beta{j}"][i].clone()
        layers += [conv] + ([torch.nn.Upsample(scale_factor=2, mode="bilinear")] if j < depth else []) + [torch.nn.ReLU(), bn]
    out = torch.nn.Conv2d(k, params["out"].shape[1], 1, bias=False)
    out.weight.data = params["out"][i][:, :, None, None].clone()
    return torch.nn.Sequential(*layers, out, torch.nn.Sigmoid()).train()


def _ms_interleaved(arms: dict, reps: int, rounds: int = 3) -> dict:
    """Median milliseconds per call of each zero-argument function in ``arms``: ``rounds``
    rounds, each timing ``reps`` calls of every arm in turn (after one warm-up call)."""
    times: dict = {arm: [] for arm in arms}
    for _ in range(rounds):
        for arm, f in arms.items():
            f()
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            times[arm].append((time.perf_counter() - t0) / reps * 1e3)
    return {arm: _median(v) for arm, v in times.items()}


def residual_ab(rows=(1, 3), reps: int = 40) -> dict:
    """Milliseconds of the demo's measurement loss with its gradient (cs-gaussian m/n 0.1 at 64 px,
    ||y - A x||^2 per row): the plain form (A x, then A^T r in the backward: the base class's
    ``residual_energy``) vs recon's (``GaussianCS.residual_energy``: one blocked pass for several
    rows) vs its coarse form (``coarse=True``: bfloat16 copies of A for several rows; the fast
    schedule's early evaluations), interleaved; and the largest difference of their gradients
    (the coarse form's relative to the gradient's largest entry)."""
    import torch

    from recon_core.operators import build
    from recon_core.operators.base import LinearOperator

    A = build("cs-gaussian", (3, 64, 64), seed=0, ratio=0.1)
    y = torch.randn(1, *A.meas_shape, generator=torch.Generator().manual_seed(1))
    out: dict = {"threads": torch.get_num_threads(), "cells": []}
    for R in rows:
        x = torch.randn(R, 3, 64, 64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)

        def grad(energy):
            return torch.autograd.grad(energy(x, y).sum(), x)[0]

        arms = {"plain": lambda: grad(lambda a, b: LinearOperator.residual_energy(A, a, b)), "recon": lambda: grad(A.residual_energy),
                "coarse": lambda: grad(lambda a, b: A.residual_energy(a, b, coarse=True))}
        ref = arms["plain"]()
        diff = float((ref - arms["recon"]()).abs().max())
        coarse_diff = float((ref - arms["coarse"]()).abs().max() / ref.abs().max())
        ms = _ms_interleaved(arms, reps)
        out["cells"].append({"rows": R, "plain_ms": ms["plain"], "recon_ms": ms["recon"], "coarse_ms": ms["coarse"],
                             "speedup": ms["plain"] / ms["recon"], "coarse_speedup": ms["plain"] / ms["coarse"],
                             "max_abs_grad_diff": diff, "coarse_rel_grad_diff": coarse_diff})
    return out


def library_decode(params, net_input):
    """recon's batched decoder with the library forms it used before 2026-12-03: the bilinear
    kernel of ``F.interpolate`` at every size and the channel norm as ``F.group_norm`` without
    affine weights followed by an ``addcmul`` with each restart's scale and shift."""
    import torch
    import torch.nn.functional as F

    from recon_core.priors import deep_decoder as dd

    depth = sum(1 for key in params if key.startswith("conv")) - 1
    x = net_input
    for i in range(depth + 1):
        x = dd._conv1x1(params[f"conv{i}"], x)
        if i < depth:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.group_norm(F.relu(x), x.shape[1], eps=dd.NORM_EPS)
        x = torch.addcmul(params[f"beta{i}"][:, :, None, None], x, params[f"gamma{i}"][:, :, None, None])
    return torch.sigmoid(dd._conv1x1(params["out"], x))


def dd_step_ab(widths=(13, 44), restarts=(1, 3), reps: int = 30) -> dict:
    """Milliseconds of one Deep Decoder step at 64 px, depth 5, interleaved: the decode and the
    gradient of every weight with recon's batched ``priors.deep_decoder.decode`` on R restarts,
    with the same batched decoder in the library forms (``library_decode``), and with the
    reference's torch layers run once per restart (as its code does); then one Adam update of
    the 19 weight tensors as 19 parameters vs as one flat tensor (optimise_state's form since
    2026-12-03, the same iterates bit for bit); and the largest output differences."""
    import torch

    from recon_core.priors import deep_decoder as dd
    from recon_core.solvers.common import Adam, _flat

    out: dict = {"threads": torch.get_num_threads(), "cells": []}
    for k in widths:
        for R in restarts:
            g = torch.Generator().manual_seed(0)
            p = {key: v.requires_grad_(True) for key, v in dd.init_params((3, 64, 64), k, 5, n=R, rng=g).items()}
            inp = dd.init_input((3, 64, 64), k, 5, n=R, rng=g)
            nets = [reference_decoder(p, inp, i) for i in range(R)]

            def recon_step():
                torch.autograd.grad(dd.decode(p, inp).sum(), list(p.values()))

            def library_step():
                torch.autograd.grad(library_decode(p, inp).sum(), list(p.values()))

            def reference_step():
                for i, net in enumerate(nets):
                    torch.autograd.grad(net(inp[i : i + 1]).sum(), list(net.parameters()))

            with torch.no_grad():
                diff = max(float((dd.decode(p, inp)[i : i + 1] - nets[i](inp[i : i + 1])).abs().max()) for i in range(R))
                lib_diff = float((dd.decode(p, inp) - library_decode(p, inp)).abs().max())
            per_tensor = [v.detach().clone().requires_grad_(True) for v in p.values()]
            flat = _flat({key: v.detach() for key, v in p.items()}).clone().requires_grad_(True)
            for v in per_tensor + [flat]:
                v.grad = torch.randn(v.shape, generator=g)
            adam_tensors, adam_flat = Adam(per_tensor, lr=0.01), Adam([flat], lr=0.01)
            ms = _ms_interleaved({"recon": recon_step, "library": library_step, "reference": reference_step,
                                  "adam_per_tensor": adam_tensors.step, "adam_flat": adam_flat.step}, reps)
            out["cells"].append({"width": k, "restarts": R, "recon_ms": ms["recon"], "library_forms_ms": ms["library"],
                                 "reference_ms": ms["reference"], "speedup": ms["reference"] / ms["recon"],
                                 "speedup_over_library_forms": ms["library"] / ms["recon"], "max_abs_diff": diff,
                                 "max_abs_diff_library_forms": lib_diff, "adam_per_tensor_ms": ms["adam_per_tensor"],
                                 "adam_flat_ms": ms["adam_flat"]})
    return out


def optimiser_ab(repeats: int = 5) -> dict:
    """Wall time of a fresh Python process that imports recon's solvers and takes one Adam step
    with recon's Adam (solvers.common.Adam) or with torch.optim.Adam (whose constructor imports
    torch._dynamo), ``repeats`` runs of each, interleaved: the fixed cost recon's Adam saves every
    run of an Adam schedule (csgm, ilo, iagan, deep-decoder, hybrid, mgan's paper preset)."""
    step = ("import sys, time, torch\nfrom recon_core.solvers import common\n"
            "p = torch.zeros(3, requires_grad=True)\nt = time.perf_counter()\no = {}([p], lr=0.1)\n"
            "p.sum().backward(); o.step()\nprint(time.perf_counter() - t, 'torch._dynamo' in sys.modules, torch.get_num_threads())\n")
    arms = {"recon": "common.Adam", "torch": "torch.optim.Adam"}
    walls = {k: [] for k in arms}
    in_process = {k: [] for k in arms}
    dynamo = {}
    for _ in range(repeats):
        for k, cls in arms.items():
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", step.format(cls)], cwd=ROOT, capture_output=True, text=True, check=True)
            walls[k].append(time.perf_counter() - t0)
            secs, imported, threads = p.stdout.split()
            in_process[k].append(float(secs))
            dynamo[k] = imported == "True"
    med = {k: _median(v) for k, v in walls.items()}
    return {"threads": int(threads), "wall_s": walls, "median_wall_s": med, "median_construct_and_step_s": {k: _median(v) for k, v in in_process.items()},
            "imports_torch_dynamo": dynamo, "saved_s": med["torch"] - med["recon"]}


def tests() -> dict:
    """Run `make test` and return its wall time and pytest's final counts."""
    t0 = time.perf_counter()
    p = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    # pytest's summary is stdout's last line that counts results (stderr may end with warnings)
    lines = [ln for ln in p.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    tail = lines[-1].strip() if lines else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail)}
    return {"command": "make test", "wall_s": wall, "returncode": p.returncode, "counts": counts, "summary": tail}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tests", action="store_true", help="also run `make test`")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "timings.json")
    ap.add_argument("--only", default="", help="comma list of sections to run (default: all), e.g. dd_step_ab")
    a = ap.parse_args(argv)
    # the machine is shared: the 1-minute load average before and after says how quiet it was
    sections = {"demo": lambda: demo(Path(os.environ.get("TMPDIR", "/tmp")) / "recon_timings_demo"), "priors": priors,
                "block1_ab": block1_ab, "dd_step_ab": dd_step_ab, "residual_ab": residual_ab,
                "optimiser_ab": optimiser_ab, "bf16_ab": bf16_ab}
    only = a.only.split(",") if a.only else list(sections)
    unknown = sorted(set(only) - set(sections))
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(sections)}")
    doc = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.platform(), "cpus": os.cpu_count(),
           "load_average_before": os.getloadavg()[0]}
    doc.update((name, sections[name]()) for name in only)
    if a.tests:
        doc["tests"] = tests()
    doc["load_average_after"] = os.getloadavg()[0]
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
