"""Inversion methods, one module each, registered by CLI name.

Each method is ``(ConfigDataclass, solve)`` with ``solve(problem, prior, config, on_event, seed)
-> Result``."""

from __future__ import annotations

from ..errors import UnknownName
from . import csgm, surgery
from .common import Problem, Result  # noqa: F401

METHODS = {
    "csgm": (csgm.CSGMConfig, csgm.solve),
    "surgery": (surgery.SurgeryConfig, surgery.solve),
}


def get_method(name: str):
    """(ConfigClass, solve) of method ``name``; UnknownName with a suggestion otherwise."""
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name]
