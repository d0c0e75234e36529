"""JSON that never holds NaN or Infinity (RFC 8259 has neither; JSON.parse and strict parsers
reject Python's default ``NaN`` / ``Infinity`` tokens).

A non-finite number becomes ``null``; in a metrics dict it also gets a ``<name>_reason`` saying
what the value was (e.g. PSNR is +inf when the estimate equals the truth exactly)."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import is_real  # light: no torch


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
        if is_real(v) and not math.isfinite(v):
            out[k] = None
            out.setdefault(f"{k}_reason", f"not a finite number ({v}); e.g. psnr is inf when x_hat equals the truth exactly")
    return out


def dumps(obj: Any, **kw) -> str:
    """json.dumps of ``finite(obj)`` that refuses NaN/Infinity (allow_nan=False)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def check_free(paths, force: bool) -> None:
    """Refuse (BadInput) if any of ``paths`` exists and ``force`` is False: outputs are never
    overwritten by accident."""
    from pathlib import Path

    from .errors import BadInput

    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise BadInput(f"refusing to overwrite {existing[0]}" + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "") + "; use --force")


def staged(out, write):
    """Run ``write(stage_dir)`` into a hidden staging folder beside the folder ``out``, then move
    the files into ``out`` (metrics.json last; the whole folder is renamed at once when ``out`` is
    new). On any failure or Ctrl-C the staging folder is removed: no partial result is ever
    left. Returns what ``write`` returns."""
    import os
    import shutil
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    stage.mkdir()
    try:
        record = write(stage)
        if not out.exists():
            os.rename(stage, out)
        else:
            for name in sorted(os.listdir(stage), key=lambda n: n == "metrics.json"):
                os.replace(stage / name, out / name)
            stage.rmdir()
        return record
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
