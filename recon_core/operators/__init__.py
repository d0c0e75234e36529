"""Forward operators: one module per family, registered by name (see base.py)."""

from .base import LinearOperator, build, from_spec, get, list_operators, register  # noqa: F401
from .composed import ComposedOperator, compose  # noqa: F401
from .noise import NoiseSpec, add_noise  # noqa: F401
from .stacked import StackedOperator  # noqa: F401
