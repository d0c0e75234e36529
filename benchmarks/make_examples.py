"""Regenerate the shipped example images from scikit-image: python benchmarks/make_examples.py

Source: ``skimage.data.astronaut()`` (512x512 RGB), Eileen Collins' official NASA portrait,
public domain. Crop box: rows 33..203, cols 139..309 (170x170, half-open), centred on the eyes
(eye centre at about row 101, col 224) with the eyes at 40% of the height and the chin at 85%:
the whole face and most of the hair, like an aligned face dataset crop. Resized with
recon_core.images' antialiased bicubic.

Writes docs/examples/astronaut_face.png (128x128), docs/examples/astronaut_face_64.png (64x64)
and the same two files under recon_core/data/ (loaded by ``recon_core.images.example_image``).
"""

from pathlib import Path

import torch
from skimage import data

from recon_core.images import fit_image, save_image

CROP = (33, 203, 139, 309)  # top, bottom, left, right (pixels of the 512x512 original)

root = Path(__file__).resolve().parents[1]
top, bottom, left, right = CROP
face = torch.from_numpy(data.astronaut()[top:bottom, left:right].copy()).permute(2, 0, 1)
face = face.unsqueeze(0).float() / 255.0
for folder in (root / "docs" / "examples", root / "recon_core" / "data"):
    folder.mkdir(parents=True, exist_ok=True)
    for size, name in ((128, "astronaut_face.png"), (64, "astronaut_face_64.png")):
        # both sizes straight from the crop: one resampling step each
        out = save_image(fit_image(face, size, "resize"), folder / name)
        print(out)
