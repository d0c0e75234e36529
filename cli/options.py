"""`recon reconstruct`'s method options, generated from the method config dataclasses.

A config field is the single source of its option: the name (``lr_theta`` -> ``--lr-theta``),
the type, the help (the field's ``opt(...)`` metadata, or ``SHARED_HELP`` for the fields several
methods share) and the defaults shown (each method's paper value, its fast preset's where that
differs, and whether the paper sets it per architecture). A field only one method has goes into
that method's help panel; the shared ones into one "Method settings" panel. Importing this module
imports the solvers (and torch): the CLI builds `reconstruct` lazily (cli/app.py).
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import Field, fields
from typing import Callable, Dict, List, Optional, Tuple

import typer

#: the panels of `recon reconstruct --help` besides the per-method ones
PANEL_INPUT, PANEL_OPERATOR, PANEL_PRIOR = "Input", "Operator and noise", "Prior"
PANEL_METHOD, PANEL_RUN, PANEL_OUTPUT = "Method", "Run", "Output"
PANEL_SHARED = "Method settings (default: the preset's, per method)"
#: architectures whose paper settings a shown default may depend on
_ARCHS = ("dcgan", "began", "vae", "stylegan2", "pggan", "biggan")


def method_panel(method: str) -> str:
    """The help panel of the options only ``method`` has."""
    return f"Method: {method}"


def cli_fields() -> Dict[str, List[Tuple[str, Field, object]]]:
    """Option name -> [(method, field, resolved type)] over every method's config fields, in the
    registry's method order."""
    from recon_core.solvers import METHODS

    out: Dict[str, List[Tuple[str, Field, object]]] = {}
    for method, (cls, _) in METHODS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            out.setdefault(f.name, []).append((method, f, hints[f.name]))
    return out


def field_help(name: str, entries) -> str:
    """The option's help: the fields' own (joined per method when they differ) or SHARED_HELP."""
    from recon_core.solvers.common import SHARED_HELP

    own = {m: f.metadata.get("help") for m, f, _ in entries if f.metadata.get("help")}
    if not own:
        return SHARED_HELP[name]  # KeyError: a shared field without help (tested)
    if len(set(own.values())) == 1:
        return next(iter(own.values()))
    return " ".join(f"{m}: {h}" for m, h in own.items())


def option_type(entries) -> type:
    """bool, int, float or str (a tuple-valued or mixed field is given as text, 'a,b,c')."""
    kinds = set()
    for _, _, t in entries:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if typing.get_origin(t) is typing.Union and len(args) == 1:  # Optional[X]
            t = args[0]
        kinds.add(t if t in (bool, int, float, str) else str)
    return kinds.pop() if len(kinds) == 1 else str


def _fmt(v) -> str:
    if v is None:
        return "auto"
    if isinstance(v, tuple):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:g}" if isinstance(v, float) else str(v)


def shown_default(name: str, entries) -> str:
    """What --help shows as the default: the paper value per method (one value when all agree),
    the fast preset's where it differs, '*' where the paper sets it per architecture."""
    from recon_core.solvers import effective_preset, make_config

    parts = []
    for m, f, _ in entries:
        paper = getattr(make_config(m, "paper"), name)
        text = _fmt(paper)
        if effective_preset(m, "fast") == "fast":
            fast = getattr(make_config(m, "fast"), name)
            if fast != paper:
                text = f"{_fmt(fast)} (paper {text})"
        if any(getattr(make_config(m, "paper", a), name) != paper for a in _ARCHS):
            text += "*"
        parts.append((m, text))
    if len({t for _, t in parts}) == 1 and len(parts) > 1:
        return parts[0][1]
    return ", ".join(f"{m} {t}" if len(parts) > 1 else t for m, t in parts)


def generated_parameters() -> List[inspect.Parameter]:
    """One keyword-only Typer parameter (default None = the method's value) per exposed field."""
    params = []
    for name, entries in cli_fields().items():
        kind = option_type(entries)
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:  # one flag, the one that changes the default (keeps --help at 80 columns)
            on = all(f.default is True for _, f, _ in entries)
            decls = [f" /--no-{name.replace('_', '-')}"] if on else [flag]
        else:
            decls = [flag]
        panel = method_panel(entries[0][0]) if len(entries) == 1 else PANEL_SHARED
        option = typer.Option(None, *decls, help=field_help(name, entries), show_default=shown_default(name, entries),
                              rich_help_panel=panel)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def with_method_options(func: Callable) -> Callable:
    """``func`` (a Typer command with a ``method_options: dict`` parameter) with one option per
    method config field instead: the values given (None = not given) reach it as that dict."""
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(func).parameters.values()
           if p.name != "method_options"]
    gen = generated_parameters()
    names = [p.name for p in gen]
    clash = sorted(set(names) & {p.name for p in own})
    if clash:  # a config field named like a run option would shadow it
        raise RuntimeError(f"method config fields clash with reconstruct options: {clash}")

    @functools.wraps(func)
    def wrapper(**kwargs):
        return func(**{k: v for k, v in kwargs.items() if k not in names}, method_options={k: kwargs.get(k) for k in names})

    wrapper.__signature__ = inspect.Signature(own + gen)
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own + gen}}
    del wrapper.__wrapped__  # Typer must read the new signature, not the wrapped one
    return wrapper

