"""Render engine events (rich progress or JSON lines on stderr) and results (tables, JSON)."""

from __future__ import annotations

import sys
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from recon_core.events import Event
from recon_core.io import dumps as strict_dumps


#: the renderer whose bars are live (so one-line messages print above them, see common.say)
ACTIVE = {"renderer": None}


class EventRenderer:
    """Callable event sink. Shows a rich progress bar on stderr when stderr is a terminal (and
    not ``quiet``); with ``log_json`` writes one JSON object per event to stderr instead."""

    def __init__(self, quiet: bool = False, log_json: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.log_json = log_json
        self.enabled = not quiet and not log_json and self.stream.isatty()
        self.progress: Optional[Progress] = None
        self.tasks = {}
        self.steps = {}  # phase -> last step shown (a smaller one starts the next solve)
        #: fields added to every JSON event (the images being solved), set by the command
        self.context: dict = {}

    def __enter__(self):
        if self.enabled:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self.progress.start()
        ACTIVE["renderer"] = self
        return self

    def __exit__(self, *exc):
        ACTIVE["renderer"] = None
        if self.progress is not None:
            self.progress.stop()
        return False

    def print(self, text: str) -> bool:
        """Print a line above the live bars (so it never overwrites them); False when there
        are no live bars (the caller prints it itself)."""
        if self.progress is None:
            return False
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
        return True

    def status(self, text: Optional[str]) -> None:
        """A line saying what is happening before any solver event (e.g. loading the prior);
        None removes it."""
        if self.progress is None:
            return
        if "status" in self.tasks:
            self.progress.remove_task(self.tasks.pop("status"))
        if text is not None:
            self.tasks["status"] = self.progress.add_task(text, total=None, loss="")

    def overall(self, total: int) -> None:
        """An overall bar over a batch's ``total`` images (with its ETA), advanced by ``advance``."""
        if self.progress is not None:
            self.tasks["images"] = self.progress.add_task("images", total=total, loss="")

    def advance(self) -> None:
        """One more image of the batch is done."""
        if self.progress is not None and "images" in self.tasks:
            self.progress.advance(self.tasks["images"])

    def __call__(self, event: Event) -> None:
        if self.log_json:
            self.stream.write(strict_dumps({"event": "progress", **self.context, **event.to_dict()}) + "\n")
            self.stream.flush()
            return
        if self.progress is None:
            return
        self.status(None)
        loss = "loss -" if event.loss is None else f"loss {event.loss:.4g}"
        if event.phase not in self.tasks:
            self.tasks[event.phase] = self.progress.add_task(event.phase, total=event.total, loss=loss)
        elif (event.step or 0) < self.steps.get(event.phase, 0):
            self.progress.reset(self.tasks[event.phase], total=event.total)  # the next image's solve
        self.steps[event.phase] = event.step or 0
        self.progress.update(self.tasks[event.phase], completed=event.step, loss=loss)


def metrics_table(metrics: dict, title: str = "metrics") -> Table:
    """A rich table of the headline numbers of a metrics.json dict."""
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("psnr", "ssim", "lpips", "mse", "residual"):
        v = metrics.get(k)
        if v is None:
            reason = metrics.get(f"{k}_reason")
            t.add_row(k, f"n/a ({reason})" if reason else "n/a")
        else:
            t.add_row(k, f"{v:.4f}")
    return t


def solve_line(record: dict) -> str:
    """One line on what the solve cost: method, preset, seconds, evaluations, why it stopped."""
    solve = record.get("solve") or {}
    parts = [f"{record['method']['name']} ({record['method'].get('preset', 'paper')} preset)",
             f"solve {record['wall_time']['solve']:.2f} s of {record['wall_time']['total']:.2f} s"]
    if solve.get("evaluations") is not None:
        low = f" ({solve['bf16_evaluations']} in bfloat16)" if solve.get("bf16_evaluations") else ""
        parts.append(f"{solve['evaluations']} evaluations{low}")
    if solve.get("stop"):
        parts.append(f"stopped: {solve['stop']}")
    return ", ".join(parts)


def print_summary(metrics: dict, paths: dict, quiet: bool = False, stream=None, record: Optional[dict] = None) -> None:
    """Print the metrics table, the solve line (when ``record`` is given) and the output paths on
    stderr (stdout is kept for --json)."""
    if quiet:
        return
    console = Console(file=stream or sys.stderr)
    console.print(metrics_table(metrics))
    # one line each, never wrapped by rich (logs are grepped; paths are copied)
    if record is not None:
        console.print(solve_line(record), soft_wrap=True)
    for k, p in paths.items():
        console.print(f"{k}: {p}", soft_wrap=True)
