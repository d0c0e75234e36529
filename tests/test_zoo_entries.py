"""Every zoo entry loads (sha256-verified), and reconstructs through the CLI with surgery and
ILO; its sample grid exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recon_cli.app import app
from recon_core.generators import zoo

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
NAMES = zoo.list_priors()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method, opts", [("surgery", ["--steps", "2"]), ("ilo", ["--steps", "3,3,3", "--layers", "0,1,2"])])
def test_zoo_entry_reconstructs(tmp_path, name, method, opts):
    from recon_core.images import example_image, save_image

    e = zoo.entry(name)
    assert (ROOT / e["samples"]).is_file()
    img = save_image(example_image(size=64), tmp_path / "x.png")
    r = runner.invoke(app, ["reconstruct", str(img), "--prior", name, "--method", method, *opts, "--restarts", "1",
                            "--op", "inpaint", "--frac", "0.5", "--out", str(tmp_path / "o"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["prior"]["name"] == name and m["image"]["shape"] == [e["channels"], e["resolution"], e["resolution"]]
    assert m["metrics"]["psnr"] > 0
