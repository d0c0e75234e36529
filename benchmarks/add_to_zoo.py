"""Add a finished `recon train-rtil` run to the weights zoo.

    python benchmarks/add_to_zoo.py RUN_DIR NAME [--licence TEXT]

Copies RUN_DIR/checkpoint.pt to weights/NAME.pt, writes a sample grid to docs/samples/NAME.png
(the run's own fixed-latent samples of its last step), and adds (or replaces) the manifest entry
with the architecture, config, sha256, data, exact training command, steps, images seen and wall
time taken from RUN_DIR/run.json."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_LICENCES = {
    "fashion-mnist": "Fashion-MNIST (Zalando Research), MIT licence",
    "mnist5k": "MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0",
}


def main() -> int:
    from recon_core.generators.checkpoints import load_checkpoint
    from recon_core.generators.zoo import sha256_file

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("name")
    a = ap.parse_args()
    run = json.loads((a.run_dir / "run.json").read_text())
    if not run.get("finished"):
        print(f"{a.run_dir} has not finished ({run.get('steps_done')}/{run.get('steps_requested')} steps)", file=sys.stderr)
        return 2
    dst = ROOT / "weights" / f"{a.name}.pt"
    shutil.copyfile(a.run_dir / "checkpoint.pt", dst)
    g = load_checkpoint(dst)
    samples = sorted(a.run_dir.glob("samples_*.png"))
    grid = ROOT / "docs" / "samples" / f"{a.name}.png"
    shutil.copyfile(samples[-1], grid)
    cfg = run["config"]
    data = cfg["data"]
    entry = {
        "name": a.name,
        "architecture": g.meta.architecture,
        "resolution": g.meta.resolution,
        "channels": g.meta.channels,
        "latent": f"{g.meta.latent_kind}, state at cut 0: {g.state_shapes(0)}",
        "config": g.meta.config,
        "format": "recon",
        "source": {"kind": "file", "path": dst.name},
        "sha256": sha256_file(dst),
        "size_bytes": dst.stat().st_size,
        "licence": f"Trained by this project. Training data: {DATA_LICENCES.get(data, data)}.",
        "training_data": f"{data} (train split), {run.get('images_seen')} images seen",
        "training_command": run["command"],
        "training": {"mode": cfg["mode"], "steps": run["steps_done"], "batch": cfg["batch"], "wall_time_s": run["wall_time_s"],
                     "device": run["device"], "machine": "x86_64, 2 CPU cores (shared), torch threads 1"},
        "cut_points": g.cut_points,
        "samples": f"docs/samples/{a.name}.png",
    }
    mpath = ROOT / "weights" / "MANIFEST.json"
    manifest = json.loads(mpath.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != a.name] + [entry]
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
