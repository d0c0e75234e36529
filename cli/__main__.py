"""`python -m recon_cli`: the same as the `recon` command."""

from .app import main

main()
