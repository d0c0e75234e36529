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
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from recon_core.errors import ReconError
    from recon_core.generators.zoo import entry_path, manifest, weights_dir

    rows = []
    root = weights_dir().resolve().parent  # the manifest's relative paths (samples) are from here
    for name, e in sorted(manifest().items()):
        try:
            path, status = str(entry_path(e).resolve()), "installed"
        except ReconError as err:
            path, status = None, f"missing: {err}"
        samples = e.get("samples")
        if samples and (root / samples).exists():
            samples = str(root / samples)
        rows.append({**e, "status": status, "path": path, "samples": samples})
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    # Narrow terminals (80 columns) must still show every name in full: the table keeps to short
    # columns and never truncates a name; paths and provenance follow it one prior per line.
    t = Table(title="recon priors", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("name", no_wrap=True, min_width=max((len(e["name"]) for e in rows), default=4))
    for col in ("arch", "image", "cuts", "training", "status"):
        t.add_column(col, no_wrap=True)
    for e in rows:
        t.add_row(e["name"], e["architecture"], f"{e['resolution']} {'RGB' if e.get('channels', 3) == 3 else 'grey'}",
                  _cuts(e.get("cut_points", [])), _trained(e), "ok" if e["status"] == "installed" else "missing")
    con = Console()
    con.print(t)
    for e in rows:
        src = e["source"]
        where = e["path"] or (f"pip {src['package']}=={src.get('version', '')}" if "package" in src else f"weights/{src.get('path', '')}")
        con.print(f"[bold]{e['name']}[/]: samples {e.get('samples') or '-'}; weights {where}", soft_wrap=True, highlight=False)
        if e["status"] != "installed":
            con.print(f"  {e['status']}", soft_wrap=True, highlight=False)
    con.print("Full provenance (licence, training command, sha256): recon priors --json", highlight=False)


def _cuts(cuts) -> str:
    """[0, 1, 2, 3] -> '0-3' (contiguous) or '0,2,5'."""
    cuts = list(cuts)
    if cuts and cuts == list(range(cuts[0], cuts[-1] + 1)) and len(cuts) > 2:
        return f"{cuts[0]}-{cuts[-1]}"
    return ",".join(map(str, cuts))


def _trained(e: dict) -> str:
    """Short provenance: '<mode> <steps>' (trained by this project) or 'upstream'."""
    tr = e.get("training")
    if tr:
        return f"{tr.get('mode', 'vanilla')} {tr.get('steps', '?')}"
    return "upstream"
