"""Generator adapters (one module per architecture), checkpoint loaders and the weights zoo."""

from .base import BlockInfo, GeneratorAdapter, GeneratorMeta, State  # noqa: F401
