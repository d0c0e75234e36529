"""The progress event that solvers and trainers emit instead of printing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional


@dataclass
class Event:
    """One progress report.

    phase: what is running (e.g. "csgm", "surgery", "ilo:round1"); step/total: progress within
    the phase (1-based step); loss: the current best measurement loss over restarts;
    restart: which restart (None when restarts run as one batch); extra: anything else JSON-able."""

    phase: str
    step: int
    total: int
    loss: Optional[float] = None
    restart: Optional[int] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


EventSink = Callable[[Event], None]


def null_sink(_event: Event) -> None:
    """An event sink that discards everything."""
