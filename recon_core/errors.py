"""User-facing errors. Each carries a one-line message; the CLI maps them to exit codes."""

from __future__ import annotations

import difflib
import numbers


def is_real(v) -> bool:
    """True for a real number, Python's or NumPy's (np.float32(0.5), np.int64(3)), never a bool.
    Here, the lowest layer, so operators, generators and solvers check their inputs alike."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_int(v) -> bool:
    """True for an integer, Python's or NumPy's (np.int64(3)), never a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class ReconError(Exception):
    """Base class of every failure the user should see as a one-line message.

    ``exit_code`` is 2 for bad usage/input and 1 for runtime failures."""

    exit_code = 1

    def __init__(self, message: str):
        # one line, always: multi-line messages break batch logs
        super().__init__(" ".join(str(message).split()))


class BadInput(ReconError):
    """The user gave something unusable: a file, a parameter, an option value."""

    exit_code = 2


class ImageError(BadInput):
    """An image file could not be read or is unsuitable."""


class OperatorError(BadInput):
    """Operator parameters are invalid or a tensor has the wrong shape."""


class MeasurementFileError(BadInput):
    """A measurements file is missing fields, malformed or of an unknown schema."""


class CheckpointError(BadInput):
    """A checkpoint is not recognised, unsafe, or its shapes do not match."""


class MissingWeights(ReconError):
    """Pretrained weights needed for the request are not installed."""

    exit_code = 1


class UnknownName(BadInput):
    """An unknown registry name (operator, method, prior); suggests the closest match."""

    def __init__(self, kind: str, name: str, choices):
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        super().__init__(f"unknown {kind} '{name}'{hint}; choose from: {', '.join(choices)}")


class SolverDiverged(ReconError):
    """Every restart of a solver produced NaN/Inf."""


class MissingDependency(ReconError):
    """An optional dependency (a ``recon[...]`` extra) needed for the request is not installed."""

    exit_code = 1
