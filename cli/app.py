"""The `recon` command-line app: a thin Typer layer over recon_core."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from .cut_sweep import cut_sweep
from .measure import measure
from .priors import priors
from .train_rtil import train_rtil


class LazyGroup(TyperGroup):
    """The `recon` group with `reconstruct` built on first use: its method options are generated
    from the solvers' config dataclasses (cli/options.py), which import torch, so `recon
    priors`, `recon --version` and the other commands start without it."""

    def list_commands(self, ctx):
        names = list(super().list_commands(ctx))
        if "reconstruct" not in names:
            names.insert(names.index("measure") + 1 if "measure" in names else 0, "reconstruct")
        return names

    def get_command(self, ctx, cmd_name):
        if cmd_name == "reconstruct" and cmd_name not in self.commands:
            from .options import with_method_options
            from .reconstruct import reconstruct

            sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                              context_settings={"help_option_names": ["-h", "--help"]})
            sub.command("reconstruct")(with_method_options(reconstruct))
            self.add_command(typer.main.get_command(sub), "reconstruct")
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=LazyGroup,
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
app.command()(priors)
app.command("cut-sweep")(cut_sweep)
app.command("train-rtil")(train_rtil)


def main() -> None:
    """Console-script entry point."""
    app()
