"""The measurements file: round trip and every malformation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from recon_core.errors import MeasurementFileError
from recon_core.measurements import SCHEMA_VERSION, load_measurements, save_measurements
from recon_core.operators import NoiseSpec, build


@pytest.fixture
def saved(tmp_path):
    A = build("cs-gaussian", (3, 8, 8), seed=3, ratio=0.25)
    x = torch.rand(1, 3, 8, 8)
    y = A.A(x)
    path = save_measurements(tmp_path / "m.npz", y, A, NoiseSpec("cs-norm", 0.1, seed=4), image={"path": "x.png"})
    return path, A, y


def _write(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def test_round_trip(saved):
    path, A, y = saved
    y2, A2, noise, meta = load_measurements(path)
    assert torch.equal(y2, y) and A2.spec() == A.spec()
    assert noise == NoiseSpec("cs-norm", 0.1, seed=4) and meta["image"] == {"path": "x.png"}
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(A2.A(x), A.A(x))


def test_errors(saved, tmp_path):
    path, A, y = saved
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        yv = f["y"]
    with pytest.raises(MeasurementFileError, match="does not exist"):
        load_measurements(tmp_path / "nope.npz")
    with pytest.raises(MeasurementFileError, match="lacks the field.* meta"):
        load_measurements(_write(tmp_path / "a.npz", y=yv))
    with pytest.raises(MeasurementFileError, match="pickled objects"):
        load_measurements(_write(tmp_path / "b.npz", y=yv, meta=np.array([{"evil": 1}], dtype=object)))
    with pytest.raises(MeasurementFileError, match="y has shape"):
        load_measurements(_write(tmp_path / "c.npz", y=yv[:-1], meta=np.array(json.dumps(meta))))
    newer = {**meta, "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(MeasurementFileError, match="newer than this recon reads"):
        load_measurements(_write(tmp_path / "d.npz", y=yv, meta=np.array(json.dumps(newer))))
    with pytest.raises(MeasurementFileError, match="lacks 'operator'"):
        load_measurements(_write(tmp_path / "e.npz", y=yv, meta=np.array(json.dumps({"schema_version": 1, "noise": meta["noise"]}))))
    with pytest.raises(MeasurementFileError, match="not a JSON object"):
        load_measurements(_write(tmp_path / "f.npz", y=yv, meta=np.array("{oops")))
    with pytest.raises(MeasurementFileError, match="NaN or Inf"):
        load_measurements(_write(tmp_path / "g.npz", y=yv * np.nan, meta=np.array(json.dumps(meta))))
    bad_op = {**meta, "operator": {**meta["operator"], "kind": "cs-gausian"}}
    with pytest.raises(MeasurementFileError, match="did you mean 'cs-gaussian'"):
        load_measurements(_write(tmp_path / "h.npz", y=yv, meta=np.array(json.dumps(bad_op))))
    (tmp_path / "i.npz").write_text("not a zip")
    with pytest.raises(MeasurementFileError, match="not a valid"):
        load_measurements(tmp_path / "i.npz")
