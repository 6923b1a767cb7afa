"""Progress bars for the CLI (library code only takes ``progress(done, total)`` callbacks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    TaskProgressColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``progress(done, total)`` callback that drives a rich progress bar on stderr."""
    if not enabled:
        yield lambda done, total: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def training_bar(description: str, *, enabled: bool = True
                 ) -> Iterator[Callable[[int, int, dict[str, float]], None]]:
    """Yield a ``progress(step, total, logs)`` callback (the training engine's) that drives a
    rich progress bar showing the latest training loss and validation loss."""
    if not enabled:
        yield lambda step, total, logs: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task(description, total=None, loss="-", val="-")

        def update(step: int, total: int, logs: dict[str, float]) -> None:
            fields: dict[str, str] = {}
            if "loss" in logs:
                fields["loss"] = f"{logs['loss']:.4g}"
            if "val_loss" in logs:
                fields["val"] = f"{logs['val_loss']:.4g}"
            bar.update(task, completed=step, total=total, **fields)

        yield update
