"""The CLI's method options are generated from the config fields: every field has an option
and help, every option reaches the config, --help fits 80 columns with every choice visible,
and a change of any config field changes the result identity (so --resume solves again)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from recon_cli import options
from recon_cli.app import app
from recon_core.errors import BadInput
from recon_core.pipeline import Pipeline
from recon_core.solvers import METHODS

runner = CliRunner()

FIELDS = [(m, f) for m, (cls, _) in METHODS.items() for f in dataclasses.fields(cls)]


def other_value(method: str, f, cut_points):
    """A value of field ``f`` other than its default, as CLI text and as the config holds it."""
    d = f.default
    if f.name == "cut":
        v = next(c for c in cut_points if c != d)
        return str(v), v
    if f.name == "screen":  # 0 (off) or at least the restarts (3): the config refuses 1
        return "8", 8
    if isinstance(d, bool):
        return None, not d
    if isinstance(d, tuple):
        v = tuple(x + 1 for x in d) if all(isinstance(x, (int, float)) for x in d) else ("adam",) * len(d)
        return ",".join(str(x) for x in v), v
    if d is None:
        return "7", 7
    if isinstance(d, int):
        return str(d + 1), d + 1
    if isinstance(d, float):
        return repr(d * 2 + 0.125), d * 2 + 0.125
    if f.name in ("optimizer", "csgm_optimizer"):
        v = "lbfgs-ls" if d != "lbfgs-ls" else "adam"
        return v, v
    if f.name == "init":
        return "zero", "zero"
    if f.name == "loss":
        return "mse+lpips", "mse+lpips"
    raise AssertionError(f"no other value for {method}.{f.name}")


def test_every_field_has_help_and_an_option():
    params = {p.name: p for p in options.generated_parameters()}
    assert {f.name for _, f in FIELDS} == set(params)
    for name, entries in options.cli_fields().items():
        assert len(options.field_help(name, entries)) > 10, name


@pytest.mark.parametrize("method,f", FIELDS, ids=[f"{m}.{f.name}" for m, f in FIELDS])
def test_every_option_reaches_the_config_and_the_identity(method, f, tiny_ckpt, tiny_dcgan, monkeypatch):
    """`--<field> V` on the command line sets the field to V (nothing else changes), and a
    Pipeline with the field changed has another identity hash than the default's."""
    from recon_cli import reconstruct as rc

    text, value = other_value(method, f, tiny_dcgan.cut_points)
    flag = "--" + f.name.replace("_", "-")
    if isinstance(f.default, bool):
        flag = flag if value else "--no-" + f.name.replace("_", "-")
    seen = {}

    def stop(self, **kw):
        rc.Pipeline.__init__(self, **kw, on_note=None)
        seen["cfg"], seen["identity"] = self.cfg, self.identity
        raise BadInput("stopped by the test")

    monkeypatch.setattr(rc.Job, "__init__", stop)
    args = ["reconstruct", "img.png", "--prior", str(tiny_ckpt), "--method", method, "--preset", "paper", flag]
    from recon_core.images import example_image, save_image

    save_image(example_image(size=32), "img.png")
    r = runner.invoke(app, args + ([text] if text is not None else []))
    assert r.exit_code == 2 and "stopped by the test" in r.output, r.output
    assert getattr(seen["cfg"], f.name) == value
    base = Pipeline(prior=str(tiny_ckpt), method=method, preset="paper")
    assert dataclasses.replace(seen["cfg"], **{f.name: getattr(base.cfg, f.name)}) == base.cfg  # only that field moved
    assert seen["identity"]["hash"] != base.identity["hash"]


def test_help_fits_80_columns_with_every_choice_visible():
    r = runner.invoke(app, ["reconstruct", "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"}, terminal_width=80)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in r.output  # nothing cut off
    text = re.sub(r"[│\s]+", " ", r.output)
    assert all(m in text for m in METHODS)
    own = {e[0][0] for e in options.cli_fields().values() if len(e) == 1}  # methods with options of their own
    assert all(f"Method: {m}" in text for m in own), own
    for panel in ("Input", "Operator and noise", "Prior", "Method", "Run", "Output", "Method: ilo", "Method: iagan"):
        assert f"─ {panel} ─" in r.output, panel
    from recon_cli.common import OPS

    assert all(op in text for op in OPS)


def test_recon_priors_still_starts_without_torch():
    """Generating reconstruct's options imports the solvers (torch): the app builds that command
    only when it is used."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from recon_cli.app import app; "
            "r = CliRunner().invoke(app, ['--version']); assert r.exit_code == 0; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
