"""Inversion methods, one module each, registered by CLI name.

Each method is ``(ConfigDataclass, solve)`` with ``solve(problem, prior, config, on_event, seed)
-> Result``."""

from __future__ import annotations

import sys

from ..errors import UnknownName
from ..generators import registry
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
BATCH_METHODS = {"csgm": csgm.solve_batch, "surgery": surgery.solve_batch, "ilo": ilo.solve_batch,
                 "mgan": mgan.solve_batch, "deep-decoder": deep_decoder.solve_batch, "hybrid": hybrid.solve_batch,
                 "iagan": iagan.solve_batch}


#: settings presets: ``paper`` (each config's defaults: its paper's schedule) and ``fast`` (a
#: faster schedule at equal quality, see benchmarks/speed.py). A method has a fast preset when its
#: module's PRESETS names one; for the others ``fast`` is their paper schedule (recorded as such,
#: see effective_preset).
PRESET_NAMES = ("fast", "paper")
_MODULES = {m: sys.modules[solve.__module__] for m, (_, solve) in METHODS.items()}
FAST_METHODS = tuple(m for m, mod in _MODULES.items() if "fast" in getattr(mod, "PRESETS", {}))


#: config fields that name cut points of the prior (checked against its blocks)
CUT_FIELDS = ("cut", "layer", "layers")


def capabilities(method: str) -> dict:
    """What ``method`` declares: needs_prior (loads a generator), batched (has solve_batch:
    several images as one batch), uses_cut (its config names cut points: Surgery's cut, ILO's
    layers, mGANprior's layer), presets (the presets that differ: ("paper", "fast") or
    ("paper",)), fast_candidate (a measured fast schedule that is not a default)."""
    import dataclasses

    cfg_cls, _ = get_method(method)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    return {"needs_prior": needs_prior(method), "batched": method in BATCH_METHODS,
            "uses_cut": bool(names & set(CUT_FIELDS)),
            "presets": ("paper", "fast") if method in FAST_METHODS else ("paper",),
            "fast_candidate": getattr(_MODULES[method], "FAST_CANDIDATE", None) is not None}


def needs_prior(method: str) -> bool:
    """Whether ``method`` uses a generator prior (its module's NEEDS_PRIOR; default True)."""
    get_method(method)
    return getattr(_MODULES[method], "NEEDS_PRIOR", True)


def effective_preset(method: str, preset: str) -> str:
    """The preset a run of ``method`` really uses: ``fast`` only where the method has one."""
    if preset not in PRESET_NAMES:
        raise UnknownName("preset", preset, PRESET_NAMES)
    return "fast" if preset == "fast" and method in FAST_METHODS else "paper"


def make_config(method: str, preset: str = "paper", arch: str = "", cut_points=None):
    """The config of ``method`` with ``preset`` applied on top of its paper settings for the
    architecture ``arch`` (the registry entry's, e.g. Surgery's lr and cut, IAGAN's lrs and steps;
    when ``cut_points`` of a smaller model lack the paper's cut, cut 1 or the last one)."""
    import dataclasses

    cfg_cls, _ = get_method(method)
    paper = registry.paper_settings(arch, method)
    cfg = dataclasses.replace(cfg_cls(), **paper)
    if "cut" in paper and cut_points is not None and cfg.cut not in cut_points:
        # the paper's cut is for its full-size model; a smaller config has fewer blocks
        cfg = dataclasses.replace(cfg, cut=min(1, cut_points[-1]))
    if effective_preset(method, preset) == "fast":
        cfg = dataclasses.replace(cfg, **_MODULES[method].PRESETS["fast"])
    return cfg


def fast_candidate(method: str, arch: str = "", cut_points=None):
    """The config of the fast schedule measured for ``method`` in benchmarks/speed.py: its fast
    preset, or for a method without one the candidate it did not adopt (its module's
    FAST_CANDIDATE, where it declares one: the hybrid and the deep decoder), on the
    paper settings; None when it has neither."""
    import dataclasses

    if method in FAST_METHODS:
        return make_config(method, "fast", arch, cut_points)
    cand = getattr(_MODULES[method], "FAST_CANDIDATE", None)
    return None if cand is None else dataclasses.replace(make_config(method, "paper", arch, cut_points), **cand)


def get_method(name: str):
    """(ConfigClass, solve) of method ``name``; UnknownName with a suggestion otherwise."""
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name]
