"""Write the real-photo benchmark set: benchmarks/data/photos/*.png (64 px RGB, from
scikit-image's bundled data; all public domain or CC0 per skimage.data's docs).

The astronaut face crop is the shipped example; the others are centre-cropped to a square and
resized (antialiased bicubic)."""

from pathlib import Path

import torch

from recon_core.images import example_image, fit_image, save_image

NAMES = ("chelsea", "coffee", "rocket", "camera", "immunohistochemistry")


def photos(size: int = 64):
    """[(name, (1, 3, size, size) tensor)] for the astronaut face and NAMES."""
    import skimage.data

    out = [("astronaut_face", example_image(size=size))]
    for name in NAMES:
        a = getattr(skimage.data, name)()
        x = torch.from_numpy(a.copy()).float().div(255)
        x = x[None, None].repeat(1, 3, 1, 1) if x.ndim == 2 else x.permute(2, 0, 1)[None]
        out.append((name, fit_image(x, size)))
    return out


if __name__ == "__main__":
    d = Path(__file__).resolve().parent / "data" / "photos"
    d.mkdir(parents=True, exist_ok=True)
    for name, x in photos():
        print(save_image(x, d / f"{name}.png"))
