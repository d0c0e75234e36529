"""Save an 8 x 8 grid of samples from a zoo prior: python benchmarks/sample_grid.py [NAME] [SEED].

Writes docs/samples/NAME.png (the path the manifest's "samples" field points to)."""

import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from recon_core.generators.zoo import load_prior

name = sys.argv[1] if len(sys.argv) > 1 else "dcgan-faces-64"
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
g = load_prior(name)
with torch.no_grad():
    x = g(g.sample_latent(64, torch.Generator().manual_seed(seed)))
out = Path(__file__).resolve().parents[1] / "docs" / "samples" / f"{name}.png"
out.parent.mkdir(parents=True, exist_ok=True)
save_image(x, out, nrow=8, padding=2)
print(out)
