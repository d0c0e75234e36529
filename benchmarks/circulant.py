"""Time and peak memory of the cs-circulant operator on a 3 x 1024 x 1024 image at ratio 0.1.

Target: A and A_adjoint each < 2 s and < 200 MB on the project machine (2 CPU cores); this is
what makes cs-circulant the compressed-sensing operator for 1024 px (METHODS.md).

Usage: python benchmarks/circulant.py [--size 1024] [--ratio 0.1] [--repeats 5] [--dagger]

Each measurement runs in a fresh subprocess so that one phase's allocations do not hide
another's. Peak memory is the rise of the process's peak resident set size (VmHWM, reset through
/proc/self/clear_refs before the phase; falls back to ru_maxrss when that is not allowed) over the
resident size just before the phase; tracemalloc does not see torch's allocator.

Recorded results (2026-11-21, Linux container, 2 CPU cores shared with other jobs: load average
~4 during the run, torch 2.14.1 CPU build, 2 threads, float32, one 3 x 1024 x 1024 image,
m = 314573; `python benchmarks/circulant.py --dagger`):

    build the operator:               0.54-0.73 s   peak + 104 MB (draws signs, g, rows; FFT of g)
    A (forward), median of 5:         0.20-0.21 s   peak +  48 MB
    A_adjoint, median of 5:           0.20 s        peak +  48 MB
    A_dagger (CG on A A^T), 1 run:    8.3 s         peak +  74 MB (16 CG iterations, tol 1e-7)

In an earlier, less loaded run A took 0.12 s and A_dagger 3.3 s. Target met with margin.
(A_dagger/backproject are not bound by the requirement; shown for planning.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(fn) -> dict:
    """Run fn once; return wall time and the peak RSS rise in MB."""
    import gc

    gc.collect()
    rss0 = _status_kb("VmRSS")
    exact = _reset_peak()
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    if exact:
        peak = _status_kb("VmHWM") - rss0
    else:  # only a rise above the process's earlier peak is visible
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - ru0
    del out
    return {"seconds": dt, "peak_mb": peak / 1024, "exact_peak": exact}


def child(phase: str, size: int, ratio: float, repeats: int) -> None:
    """Measure one phase in this (fresh) process and print a JSON line."""
    sys.path.insert(0, ROOT)
    import torch

    from recon_core.operators import build

    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    shape = (3, size, size)
    if phase == "build":
        res = _measure(lambda: build("cs-circulant", shape, seed=0, ratio=ratio))
        print(json.dumps({"phase": phase, **res, "threads": torch.get_num_threads()}))
        return
    op = build("cs-circulant", shape, seed=0, ratio=ratio)
    y = op.A(x)
    fn = {"A": lambda: op.A(x), "A_adjoint": lambda: op.A_adjoint(y), "A_dagger": lambda: op.A_dagger(y)}[phase]
    runs = [_measure(fn) for _ in range(repeats + 1)]
    runs = runs[1:] if repeats > 1 else runs  # the first call also builds the FFT plan
    print(
        json.dumps(
            {
                "phase": phase,
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_mb": max(r["peak_mb"] for r in runs),
                "exact_peak": all(r["exact_peak"] for r in runs),
                "m": op.m,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dagger", action="store_true", help="also time A_dagger (conjugate gradients)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "circulant.json"),
                    help="results file (JSON), written at the end")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.size, a.ratio, a.repeats)
        return
    phases = ["build", "A", "A_adjoint"] + (["A_dagger"] if a.dagger else [])
    print(f"cs-circulant, image 3x{a.size}x{a.size}, ratio {a.ratio}, {os.cpu_count()} CPUs")
    ok = True
    rows = []
    for ph in phases:
        reps = 1 if ph in ("build", "A_dagger") else a.repeats
        cmd = [sys.executable, __file__, "--child", ph, "--size", str(a.size), "--ratio", str(a.ratio), "--repeats", str(reps)]
        # time with the default allocator; memory with a fixed mmap threshold, which makes glibc
        # return every large buffer to the OS when freed (by default freed buffers stay in the
        # heap, the next call reuses them without raising the RSS, and the peak is under-reported;
        # but the fresh page faults slow the calls down, so that run is not timed)
        t = _run(cmd, os.environ)
        m = _run(cmd, {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
        flag = "" if m["exact_peak"] else " (ru_maxrss: lower bound)"
        print(f"  {ph:10s} {t['seconds']:7.3f} s   peak +{m['peak_mb']:6.1f} MB{flag}   threads {t['threads']}")
        rows.append({"phase": ph, "seconds": t["seconds"], "peak_mb": m["peak_mb"], "exact_peak": m["exact_peak"],
                     "threads": t["threads"], "repeats": reps})
        if ph in ("A", "A_adjoint"):
            ok &= t["seconds"] < 2.0 and m["peak_mb"] < 200
    print("target (A, A_adjoint < 2 s and < 200 MB):", "met" if ok else "NOT met")
    import platform

    from recon_core.images import atomic_write_text

    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "command": " ".join(["python", "benchmarks/circulant.py", *sys.argv[1:]]), "image": [3, a.size, a.size],
           "ratio": a.ratio, "phases": rows, "target_met": ok,
           "note": "seconds: median over the repeats (1 run for build and A_dagger); peak_mb: rise of the peak RSS"}
    atomic_write_text(Path(a.out), json.dumps(doc, indent=1) + "\n")
    print(f"wrote {a.out}")


def _run(cmd, env) -> dict:
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
