"""Progress of a long command: a live bar on a terminal, plain lines when output is redirected.

Rich draws nothing when its console is not a terminal, so a study or a training run sent to a
log file or a CI job stayed silent for minutes. Off a terminal, each step here prints a line
when its description changes, every ``interval_s`` seconds while it runs, and when it ends.
A step that reports an ``outcome`` (``progress.update(task, outcome="train loss 0.41, ...")``,
as each training epoch does) leaves its line on a terminal too, above the bar.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, Task, TaskID,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

INTERVAL_S = 10.0


class CommandProgress(Progress):
    """A Rich ``Progress`` that code drives as usual (add_task, advance, update, remove_task)."""

    def __init__(self, console: Console, interval_s: float = INTERVAL_S) -> None:
        self.plain = not console.is_terminal
        self.interval_s = interval_s
        self._last_line: dict[TaskID, float] = {}
        super().__init__(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                         MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                         console=console, transient=True, disable=self.plain)

    def update(self, task_id: TaskID, **changes: Any) -> None:
        before = self._task(task_id).description
        super().update(task_id, **changes)
        renamed = changes.get("description") not in (None, before)
        self._running_line(task_id, now=renamed)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._running_line(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        self._end_line(self._task(task_id))
        super().remove_task(task_id)
        self._last_line.pop(task_id, None)

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        super().__exit__(exc_type, exc_val, exc_tb)
        if exc_type is None:  # steps nobody removed ended with the command
            for task in self.tasks:
                self._end_line(task)

    def _task(self, task_id: TaskID) -> Task:
        with self._lock:
            return self._tasks[task_id]

    def _running_line(self, task_id: TaskID, now: bool = False) -> None:
        task = self._task(task_id)
        if not self.plain or not task.visible:
            return
        clock = self.get_time()
        since = self._last_line.get(task_id, task.start_time or clock)
        if now or clock - since >= self.interval_s:
            self._last_line[task_id] = clock
            counts = [] if not task.total else [_counted(task), f"{task.percentage:.0f}%"]
            so_far = f"{task.elapsed or 0:.0f} s so far"
            self._print(f"{task.description} ({', '.join([*counts, so_far])})")

    def _end_line(self, task: Task) -> None:
        outcome = task.fields.get("outcome")
        if task.visible and (self.plain or outcome):
            text = task.description + (f": {outcome}" if outcome else "")
            counted = f" {_counted(task)}" if task.total else ""
            self._print(f"{text} (done{counted} in {task.elapsed or 0:.0f} s)")

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _counted(task: Task) -> str:
    return f"{task.completed:.0f}/{task.total:.0f}"
