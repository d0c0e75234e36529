"""The `recon` command-line app: a thin Typer layer over recon_core."""

from __future__ import annotations

import typer

from .cut_sweep import cut_sweep
from .measure import measure
from .priors import priors
from .reconstruct import reconstruct
from .train_rtil import train_rtil

app = typer.Typer(
    name="recon",
    help="Recover images from few or degraded measurements with deep generative priors.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from recon_core import __version__

        typer.echo(f"recon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Recover images from few or degraded measurements with deep generative priors."""


app.command()(measure)
app.command()(reconstruct)
app.command()(priors)
app.command("cut-sweep")(cut_sweep)
app.command("train-rtil")(train_rtil)


def main() -> None:
    """Console-script entry point."""
    app()
