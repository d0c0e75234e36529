"""Every method, from the CLI, on the astronaut face crop with the real dcgan-faces-64 prior and
four operators (few steps: this checks the whole path and the outputs, not quality)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recon_cli.app import app
from tests.test_cli import METHOD_FAST

runner = CliRunner()
OPS = {
    "cs-gaussian": ["--op", "cs-gaussian", "--ratio", "0.1"],
    "cs-circulant": ["--op", "cs-circulant", "--ratio", "0.1"],
    "inpaint": ["--op", "inpaint", "--frac", "0.3"],
    "superres": ["--op", "superres", "--factor", "4"],
}
SHORT = {**METHOD_FAST, "surgery": ["--steps", "1"], "ilo": ["--steps", "2,2,2"], "mgan": ["--steps", "2"]}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("method", sorted(SHORT))
def test_method_on_real_prior(tmp_path, method, op):
    from recon_core.images import example_image, save_image

    img = save_image(example_image(size=64), tmp_path / "astronaut_face.png")
    restarts = [] if method in ("lasso-dct", "pinv") else ["--restarts", "1"]
    out = tmp_path / "out"
    r = runner.invoke(app, ["reconstruct", str(img), "--method", method, *SHORT[method], *restarts, *OPS[op],
                            "--out", str(out), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert {p.name for p in out.iterdir()} == {"x_hat.png", "x_hat.npy", "compare.png", "metrics.json", "measurements.npz"}
    assert m["prior"]["name"] == "dcgan-faces-64" and m["operator"]["kind"] == op and m["method"]["name"] == method
    assert m["metrics"]["psnr"] > 0 and m["metrics"]["lpips"] is not None and isinstance(m["method"]["config"], dict)
