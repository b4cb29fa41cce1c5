"""Which task serves a data file or a name: the lookup the trainer and the evaluators use (Task seam).

  step file (steps.jsonl)         the records' ``task`` field ("math" | "swe"; one task per file)
  {problem, answer} jsonl          math (RLVR on MATH-500-style files)
"""

from __future__ import annotations

from pathlib import Path

from environments.task import SWETask
from math_srl.task import MathTask
from swe_srl.core.io import iter_jsonl
from swe_srl.core.task import Task, TaskError, data_file, is_step_file

TASKS: dict[str, type] = {"math": MathTask, "swe": SWETask}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise TaskError(f"task {name!r}: unknown (known: {', '.join(TASKS)})") from None


def step_file_tasks(path: Path) -> set[str]:
    """The ``task`` values of a step file's records."""
    found: set[str] = set()
    for i, d in iter_jsonl(path, label="data:", error=TaskError):
        if not isinstance(d, dict) or "task" not in d:
            raise TaskError(f"data: {path}:{i}: not a step record")
        found.add(d["task"])
    return found


def task_for_data(data: str | Path) -> Task:
    """The task of a training data file (or a directory holding steps.jsonl)."""
    path = data_file(data)
    if not is_step_file(path):
        return get_task("math")
    names = step_file_tasks(path)
    if len(names) != 1:
        raise TaskError(f"data: {path}: expected the step records of one task, found {sorted(names) or 'none'}")
    return get_task(names.pop())
