"""JSON that never holds NaN or Infinity (RFC 8259 has neither; JSON.parse and strict parsers
reject Python's default ``NaN`` / ``Infinity`` tokens).

A non-finite number becomes ``null``; in a metrics dict it also gets a ``<name>_reason`` saying
what the value was (e.g. PSNR is +inf when the estimate equals the truth exactly)."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (also inside dicts, lists and tuples) replaced by None;
    numbers that are not plain floats (numpy, torch scalars) are converted with float() first."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    try:
        v = float(obj)
    except (TypeError, ValueError):
        return obj
    return v if math.isfinite(v) else None


def finite_metrics(metrics: dict) -> dict:
    """A metrics dict with non-finite values set to None and ``<name>_reason`` saying why."""
    out = dict(metrics)
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
            out[k] = None
            out.setdefault(f"{k}_reason", f"not a finite number ({v}); e.g. psnr is inf when x_hat equals the truth exactly")
    return out


def dumps(obj: Any, **kw) -> str:
    """json.dumps of ``finite(obj)`` that refuses NaN/Infinity (allow_nan=False)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)
