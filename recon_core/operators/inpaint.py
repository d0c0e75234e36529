"""Inpainting: keep a subset of pixels (the same ones in every channel).

Masks: ``random`` (exactly round(frac * H * W) pixels, uniformly at random), ``box`` (a centred
rectangle with the image's aspect ratio and area (1 - frac) * H * W is removed: a square on square
images), or a user mask file (white = kept; converted to grey and thresholded at 0.5). In every
mode ``frac`` means the kept fraction. A file mask is recorded in the spec by its absolute path and
the sha256 of the thresholded mask, and rebuilding from a spec fails if the mask has changed.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Optional

import numpy as np
import torch

from ..errors import OperatorError, is_real
from .base import LinearOperator, register

MODES = ("random", "box")


def _mask_digest(mask: np.ndarray) -> str:
    """sha256 of a boolean (H, W) mask's bits and shape (independent of how the file was saved)."""
    h = hashlib.sha256(f"{mask.shape[0]}x{mask.shape[1]}:".encode())
    h.update(np.packbits(mask.astype(bool), axis=None).tobytes())
    return h.hexdigest()


def load_mask(path: str, hw) -> np.ndarray:
    """Read a mask image as a boolean (H, W) array: True (kept) where grey >= 0.5.

    OperatorError if the file cannot be read as an image or its size differs from ``hw``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise OperatorError(f"inpaint: cannot read mask file '{path}': {e}") from None
    H, W = hw
    if grey.shape != (H, W):
        raise OperatorError(
            f"inpaint: mask '{path}' is {grey.shape[1]}x{grey.shape[0]} (WxH) but the image is {W}x{H}; they must match"
        )
    return grey >= 0.5


@register("inpaint")
class Inpaint(LinearOperator):
    """y = x at the kept pixels: (N, C, H, W) -> (N, C, k), k kept pixels in raster order.

    Parameters: ``mask`` in {"random", "box"} or a path to a mask image; ``frac`` in (0, 1], the
    kept fraction, required for "random"/"box" and not allowed with a file; ``mask_sha256``
    (filled in by ``spec()``) pins a file mask. A has orthonormal rows (A A^T = I), so A_dagger =
    zero-fill is the exact pseudo-inverse. Preserves the input dtype. Buffer: ``pixels`` (k,),
    the kept pixels' flat indices in the (H, W) plane, sorted."""

    previewable = True

    def __init__(
        self,
        img_shape,
        *,
        seed: int = 0,
        device="cpu",
        frac: Optional[float] = None,
        mask: str = "random",
        mask_sha256: Optional[str] = None,
    ):
        super().__init__(img_shape, seed=seed, device=device)
        C, H, W = self.img_shape
        if not isinstance(mask, str) or not mask:
            raise OperatorError(f"inpaint: mask must be 'random', 'box' or a path to a mask image, got {mask!r}")
        self.mask_mode = mask if mask in MODES else "file"
        self.frac: Optional[float] = None
        self.mask_path: Optional[str] = None

        if self.mask_mode == "file":
            if frac is not None:
                raise OperatorError("inpaint: frac does not apply with a mask file (the file sets the kept pixels); omit it")
            if not os.path.isfile(mask):
                import difflib

                close = difflib.get_close_matches(mask, ["random", "box"], n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise OperatorError(f"inpaint: mask must be 'random', 'box' or an existing mask image file; '{mask}' is neither{hint}")
            self.mask_path = os.path.abspath(mask)
            keep = load_mask(self.mask_path, (H, W))
            self.mask_sha256 = _mask_digest(keep)
            if mask_sha256 is not None and mask_sha256 != self.mask_sha256:
                raise OperatorError(
                    f"inpaint: mask file '{self.mask_path}' changed since the operator was recorded (sha256 mismatch)"
                )
            flat = torch.from_numpy(np.flatnonzero(keep.reshape(-1)))
        else:
            if mask_sha256 is not None:
                raise OperatorError(f"inpaint: mask_sha256 only applies to a mask file, not mask='{mask}'")
            self.mask_sha256 = None
            self.frac = self._check_frac(frac)
            if self.mask_mode == "random":
                k = round(self.frac * H * W)
                if k < 1:
                    raise OperatorError(f"inpaint: frac {self.frac} keeps {k} of {H * W} pixels; need frac > {0.5 / (H * W):.3g}")
                flat = torch.randperm(H * W, generator=self._rng())[:k]
            else:
                flat = self._box(H, W, self.frac)
        if flat.numel() == 0:
            hint = "white (>= 0.5) marks kept pixels" if self.mask_mode == "file" else f"increase frac (got {self.frac})"
            raise OperatorError(f"inpaint: the {self.mask_mode} mask keeps no pixel; {hint}")
        self.register_buffer("pixels", flat.sort().values.to(self.device))
        self.meas_shape = (C, self.pixels.numel())

    @staticmethod
    def _check_frac(frac) -> float:
        if frac is None:
            raise OperatorError("inpaint: frac (kept fraction of pixels, in (0, 1]) is required for mask 'random' or 'box'")
        if not is_real(frac) or not math.isfinite(frac) or not 0 < frac <= 1:
            raise OperatorError(f"inpaint: frac must be in (0, 1], got {frac!r}")
        return float(frac)

    @staticmethod
    def _box(H: int, W: int, frac: float) -> torch.Tensor:
        # side lengths scale by sqrt(1 - frac) so the removed area is (1 - frac) H W (to rounding)
        s = math.sqrt(1.0 - frac)
        bh, bw = round(H * s), round(W * s)
        keep = torch.ones(H, W, dtype=torch.bool)
        top, left = (H - bh) // 2, (W - bw) // 2
        keep[top : top + bh, left : left + bw] = False
        return torch.nonzero(keep.reshape(-1)).reshape(-1)

    def params(self) -> dict:
        if self.mask_mode == "file":
            return {"mask": self.mask_path, "mask_sha256": self.mask_sha256}
        return {"mask": self.mask_mode, "frac": self.frac}

    @property
    def mask(self) -> torch.Tensor:
        """Boolean (H, W) map of kept pixels."""
        _, H, W = self.img_shape
        keep = torch.zeros(H * W, dtype=torch.bool, device=self.device)
        keep[self.pixels] = True
        return keep.reshape(H, W)

    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], -1)[..., self.pixels]

    def _At(self, y: torch.Tensor) -> torch.Tensor:
        C, H, W = self.img_shape
        x = y.new_zeros((y.shape[0], C, H * W))
        x[..., self.pixels] = y
        return x.reshape((y.shape[0], C, H, W))

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Exact pseudo-inverse: zero-fill (A A^T = I)."""
        return self._At(self._check_y(y))

    def _AAt_solve(self, r: torch.Tensor, tol: float = 0.0, max_iter: int = 0) -> torch.Tensor:
        return r  # A A^T = I
