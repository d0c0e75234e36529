"""Generator adapters (one module per architecture), checkpoint loaders and the weights zoo."""

_LAZY = ("BlockInfo", "GeneratorAdapter", "GeneratorMeta", "State")


def __getattr__(name):
    # lazy (PEP 562): the zoo's manifest (`recon priors`) is read without importing torch
    if name in _LAZY:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
