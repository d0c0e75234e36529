"""Additive Gaussian measurement noise, kept separate from the operator and recorded in a spec.

Two conventions:
- ``per-entry``: ``value`` is the standard deviation of each measurement entry (pixel units of
  [0, 1] images, e.g. 10/255).
- ``cs-norm``: the compressed-sensing convention of the Generator Surgery paper (after Bora et
  al. 2017): ``value`` = sqrt(E||eta||^2) for a 64 x 64 x 3 image (n = 12288), scaled for other
  sizes so that E[||eta||^2 / ||Ax||^2] stays constant; per-entry std =
  value * sqrt(n / (m * 12288)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import OperatorError
from .base import LinearOperator

CONVENTIONS = ("per-entry", "cs-norm")
_REF_N = 64 * 64 * 3
#: the largest noise level accepted: images are in [0, 1], and far larger levels overflow the
#: float32 measurements' squared norms (a level of 1e308 crashed the noise floor's m sigma^2)
MAX_LEVEL = 1e6


@dataclass(frozen=True)
class NoiseSpec:
    """Noise description: convention, the user's value, and the seed of the noise draw."""

    convention: str = "per-entry"
    value: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise OperatorError(f"unknown noise convention '{self.convention}'; choose from: {', '.join(CONVENTIONS)}")
        if not (math.isfinite(self.value) and 0 <= self.value <= MAX_LEVEL):
            raise OperatorError(f"noise level must be a number in [0, {MAX_LEVEL:g}], got {self.value}")

    def std(self, op: LinearOperator) -> float:
        """Per-entry standard deviation of the noise for measurements of ``op``."""
        if self.convention == "per-entry":
            return float(self.value)
        return float(self.value) * math.sqrt(op.n / (op.m * _REF_N))

    def to_dict(self, op: LinearOperator) -> dict:
        """JSON-able record, including the resolved per-entry std for ``op``."""
        return {**asdict(self), "std": self.std(op)}

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSpec":
        """Inverse of ``to_dict`` (the derived ``std`` is ignored)."""
        try:
            return cls(convention=str(d["convention"]), value=float(d["value"]), seed=int(d.get("seed", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise OperatorError(f"invalid noise spec: {e}") from None


def add_noise(y: torch.Tensor, noise: NoiseSpec, op: LinearOperator) -> torch.Tensor:
    """y + eta, eta ~ N(0, std^2) drawn on the CPU from ``noise.seed`` (device independent)."""
    std = noise.std(op)
    if std == 0:
        return y
    g = torch.Generator(device="cpu")
    g.manual_seed(noise.seed)
    eta = torch.randn(y.shape, generator=g, dtype=torch.float32) * std
    return y + eta.to(y.device, y.dtype)
