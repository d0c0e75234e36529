"""The measurements file (``.npz``) written by ``recon measure`` and read by ``recon reconstruct``.

Contents (no pickled objects; read with ``allow_pickle=False``):
- ``y``: float32 measurements, shape (*meas_shape) of the operator;
- ``meta``: a JSON string: schema version, operator spec, noise spec, image info, recon version.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from . import __version__
from .errors import MeasurementFileError, OperatorError, ReconError, is_int
from .images import atomic_write_bytes
from .operators import NoiseSpec, from_spec
from .operators.base import LinearOperator

SCHEMA_VERSION = 1


def save_measurements(path, y: torch.Tensor, A: LinearOperator, noise: NoiseSpec, image: Optional[dict] = None) -> Path:
    """Write y (1, *meas_shape) or (*meas_shape) with its operator and noise specs, atomically."""
    y = A._check_y(y.detach().cpu())
    if A.spec().get("serialisable") is False:  # a file that could never be read back
        raise OperatorError(f"cannot save measurements of a '{A.kind}' operator: {A.spec().get('reason', 'it is not serialisable')}")
    meta = {
        "schema_version": SCHEMA_VERSION,
        "recon_version": __version__,
        "operator": A.spec(),
        "noise": noise.to_dict(A),
        "image": image,
    }
    buf = io.BytesIO()
    np.savez(buf, y=y[0].numpy().astype(np.float32), meta=np.array(json.dumps(meta)))
    return atomic_write_bytes(Path(path), buf.getvalue())


def load_measurements(path, device="cpu", max_memory: Optional[int] = None) -> Tuple[torch.Tensor, LinearOperator, NoiseSpec, dict]:
    """Read a measurements file -> (y (1, *meas_shape), operator, noise, meta dict).

    Every malformation (missing file or field, pickled objects, wrong shape, non-finite values,
    newer schema) is a one-line MeasurementFileError; ``max_memory`` bounds the operator's size
    (bytes; None = a quarter of the RAM)."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementFileError(f"measurements file '{path}' does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise MeasurementFileError(f"'{path}' is not a valid .npz measurements file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            missing = {"y", "meta"} - names
            if missing:
                raise MeasurementFileError(f"'{path}' lacks the field(s) {', '.join(sorted(missing))}")
            y = f["y"]
            meta_raw = f["meta"]
    except MeasurementFileError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise MeasurementFileError(f"'{path}' contains pickled objects; refusing to load it") from None
        raise MeasurementFileError(f"'{path}' is not a valid measurements file ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise MeasurementFileError(f"'{path}' is not a valid .npz measurements file ({type(e).__name__})") from None
    try:
        meta = json.loads(str(meta_raw))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (ValueError, TypeError):
        raise MeasurementFileError(f"'{path}': field 'meta' is not a JSON object") from None
    version = meta.get("schema_version")
    if not is_int(version):
        raise MeasurementFileError(f"'{path}': meta lacks an integer schema_version")
    if version > SCHEMA_VERSION:
        raise MeasurementFileError(
            f"'{path}' has schema version {version}, newer than this recon reads ({SCHEMA_VERSION}); upgrade recon"
        )
    for key in ("operator", "noise"):
        if key not in meta:
            raise MeasurementFileError(f"'{path}': meta lacks '{key}'")
    try:
        A = from_spec(meta["operator"], device=device, max_bytes=max_memory)
        noise = NoiseSpec.from_dict(meta["noise"])
    except ReconError as e:
        raise MeasurementFileError(f"'{path}': {e}") from None
    if y.dtype.kind != "f":
        raise MeasurementFileError(f"'{path}': y must be floating point, got {y.dtype}")
    if tuple(y.shape) != tuple(A.meas_shape):
        raise MeasurementFileError(f"'{path}': y has shape {tuple(y.shape)}, the operator expects {tuple(A.meas_shape)}")
    if not np.isfinite(y).all():
        raise MeasurementFileError(f"'{path}': y contains NaN or Inf")
    yt = torch.from_numpy(y.astype(np.float32)).unsqueeze(0).to(device)
    return yt, A, noise, meta
