"""`recon priors`: list the weights zoo."""

from __future__ import annotations

import json

import typer

from .common import DebugOpt  # noqa: E501
from .common import handle_errors


@handle_errors
def priors(
    json_out: bool = typer.Option(False, "--json", help="Print the manifest entries as JSON."),
    debug: DebugOpt = False,
):
    """List the named priors (resolution, latent, cut points, provenance, installed or not)."""
    from rich.console import Console
    from rich.table import Table

    from recon_core.errors import ReconError
    from recon_core.generators.zoo import entry_path, manifest

    rows = []
    for name, e in sorted(manifest().items()):
        try:
            entry_path(e)
            status = "installed"
        except ReconError as err:
            status = f"missing: {err}"
        rows.append({**e, "status": status})
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="recon priors")
    for col in ("name", "arch", "res", "latent", "cuts", "source", "samples", "status"):
        t.add_column(col)
    for e in rows:
        src = e["source"]
        t.add_row(e["name"], e["architecture"], str(e["resolution"]), e.get("latent", ""),
                  ",".join(map(str, e.get("cut_points", []))), src.get("package", src.get("path", "")),
                  e.get("samples", ""), e["status"])
    Console().print(t)
