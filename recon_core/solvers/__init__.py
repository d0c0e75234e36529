"""Inversion methods, one module each, registered by CLI name.

Each method is ``(ConfigDataclass, solve)`` with ``solve(problem, prior, config, on_event, seed)
-> Result``."""

from __future__ import annotations

from ..errors import UnknownName
from . import csgm, surgery
from .common import Problem, Result  # noqa: F401
from . import deep_decoder, hybrid, iagan, lasso_dct, pinv
from . import ilo, mgan

METHODS = {
    "csgm": (csgm.CSGMConfig, csgm.solve),
    "surgery": (surgery.SurgeryConfig, surgery.solve),
    "iagan": (iagan.IAGANConfig, iagan.solve),
    "deep-decoder": (deep_decoder.DeepDecoderConfig, deep_decoder.solve),
    "hybrid": (hybrid.HybridConfig, hybrid.solve),
    "lasso-dct": (lasso_dct.LassoDCTConfig, lasso_dct.solve),
    "pinv": (pinv.PinvConfig, pinv.solve),
    "ilo": (ilo.ILOConfig, ilo.solve),
    "mgan": (mgan.MGANConfig, mgan.solve),
}


#: methods with a batched solver ``solve_batch(problems, prior, config, on_event, seed)``: several
#: images as one batch (see common.solve_isolated)
BATCH_METHODS = {"ilo": ilo.solve_batch, "mgan": mgan.solve_batch}


def get_method(name: str):
    """(ConfigClass, solve) of method ``name``; UnknownName with a suggestion otherwise."""
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name]
