"""recon_core: the engine of `recon` (operators, generator adapters, solvers, metrics).

The public Python API (``import recon_core as rc``; see recon_core/api.py and README "Python
API")::

    G = rc.load_prior("dcgan-faces-64")
    A = rc.operator("cs-gaussian", (3, 64, 64), ratio=0.1, seed=0)
    x = rc.example_image(size=64)
    y = rc.add_noise(A(x), A, 0.01, seed=1)
    res = rc.solve("surgery", A, y, G, noise_std=0.01, seed=0)
    print(rc.compute_metrics(x, res.x_hat, y, A)["psnr"])

Names are imported on first use (PEP 562), so ``import recon_core`` stays light (no torch) for
tools such as ``recon priors``. Never imports the CLI (typer/rich).
"""

__version__ = "0.1.0"

#: public name -> (module, attribute)
_EXPORTS = {
    "load_prior": ("api", "load_prior"), "operator": ("api", "operator"), "add_noise": ("api", "add_noise"),
    "solve": ("api", "solve"), "reconstruct": ("api", "reconstruct"), "compute_metrics": ("api", "compute_metrics"),
    "list_methods": ("api", "list_methods"), "list_operators": ("api", "list_operators"),
    "list_priors": ("api", "list_priors"), "example_image": ("api", "example_image"),
    "Pipeline": ("pipeline", "Pipeline"), "simulate": ("pipeline", "simulate"), "Grid": ("pipeline", "Grid"),
    "NoiseSpec": ("operators.noise", "NoiseSpec"), "Problem": ("solvers.common", "Problem"),
    "Result": ("solvers.common", "Result"), "load_image": ("images", "load_image"), "save_image": ("images", "save_image"),
    "ReconError": ("errors", "ReconError"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value  # cached: later lookups skip this function
        return value
    raise AttributeError(f"module 'recon_core' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
