"""recon_core: the engine of `recon` (operators, generator adapters, solvers, metrics).

Never imports the CLI (typer/rich)."""

__version__ = "0.1.0"
