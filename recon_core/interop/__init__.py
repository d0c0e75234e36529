"""Bridges to other libraries, each an optional extra imported only when used:

- ``recon_core.interop.deepinv`` (``pip install recon[deepinv]``): recon operators as deepinv
  ``LinearPhysics`` and back, and recon priors as deepinv generators.
"""
