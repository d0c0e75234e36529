"""Generator Surgery (paper settings) vs CSGM (Adam, 500 steps, 3 restarts) on the astronaut
face crop, 64 px, dcgan-faces-64, cs-gaussian m/n = 0.1, Surgery CS noise convention
(sqrt(E||eta||^2) = 0.1), seeds 0, 1, 2. Runs the real CLI and writes
benchmarks/results/surgery_vs_csgm.{md,json}.

    python benchmarks/surgery_vs_csgm.py [--seeds 0,1,2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "recon_core" / "data" / "astronaut_face.png"
COMMON = ["--preset", "paper", "--op", "cs-gaussian", "--ratio", "0.1", "--noise-convention", "cs-norm", "--noise-std", "0.1",
          "--prior", "dcgan-faces-64", "--quiet", "--json", "--force"]


def run(method: str, seed: int, out: Path, device: str) -> dict:
    cmd = ["recon", "reconstruct", str(IMAGE), "--method", method, "--seed", str(seed), "--out", str(out), "--device", device, *COMMON]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rec = json.loads(p.stdout)
    return {"method": method, "seed": seed, "psnr": rec["metrics"]["psnr"], "ssim": rec["metrics"]["ssim"],
            "lpips": rec["metrics"]["lpips"], "solve_s": rec["wall_time"]["solve"], "config": rec["method"]["config"],
            "command": " ".join(cmd[:2] + ["docs/examples/astronaut_face.png"] + cmd[3:]).replace(str(out), f"out/{method}-S")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for method in ("surgery", "csgm"):
                rows.append(run(method, seed, Path(tmp) / f"{method}{seed}", a.device))
                print(json.dumps({k: rows[-1][k] for k in ("method", "seed", "psnr", "solve_s")}), flush=True)
    mean = {m: statistics.mean(r["psnr"] for r in rows if r["method"] == m) for m in ("surgery", "csgm")}
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}, device {a.device}"
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "surgery_vs_csgm.json").write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"), "rows": rows, "mean_psnr": mean}, indent=2))
    lines = [
        "# Generator Surgery vs CSGM (astronaut face, 64 px, dcgan-faces-64, cs-gaussian m/n=0.1, cs-norm noise 0.1)",
        "",
        f"Machine: {machine}; date {time.strftime('%Y-%m-%d')}. Produced by `python benchmarks/surgery_vs_csgm.py`.",
        "",
        "| seed | surgery PSNR | csgm PSNR | surgery SSIM | csgm SSIM | surgery LPIPS | csgm LPIPS | surgery s | csgm s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        s = next(r for r in rows if r["method"] == "surgery" and r["seed"] == seed)
        c = next(r for r in rows if r["method"] == "csgm" and r["seed"] == seed)
        lines.append(f"| {seed} | {s['psnr']:.2f} | {c['psnr']:.2f} | {s['ssim']:.3f} | {c['ssim']:.3f} | {s['lpips']:.3f} | {c['lpips']:.3f} | {s['solve_s']:.1f} | {c['solve_s']:.1f} |")
    lines += ["", f"Mean PSNR: surgery {mean['surgery']:.2f} dB, csgm {mean['csgm']:.2f} dB, difference {mean['surgery'] - mean['csgm']:+.2f} dB.", "",
              "Commands (per seed S):", "", "```", rows[0]["command"].replace("--seed 0", "--seed S"), rows[1]["command"].replace("--seed 0", "--seed S"), "```", ""]
    (res / "surgery_vs_csgm.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
