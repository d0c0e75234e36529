"""benchmarks/batch_speed.py end to end on tiny random priors (--smoke)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_benchmark


def test_batch_speed_smoke(capsys):
    bench = load_benchmark("batch_speed")
    bench.main(["--smoke", "--repeats", "1"])
    out = capsys.readouterr().out
    path = Path(out.strip().splitlines()[-1].split("wrote ")[1].split(" and ")[0])
    doc = json.loads(path.read_text())
    assert [(c["method"], c["k"]) for c in doc["cases"]] == [("ilo", 3), ("mgan", 3)]
    for c in doc["cases"]:
        assert c["batched_s"] > 0 and c["one_by_one_s"] > 0
        assert abs(c["speedup"] - c["one_by_one_s"] / c["batched_s"]) < 1e-9
    md = path.with_suffix(".md").read_text()
    assert "| `tiny-dcgan` | ilo | 3 |" in md and "1 thread(s)" in md
