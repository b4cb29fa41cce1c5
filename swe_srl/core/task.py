"""The Task seam: what a task (math, SWE) hands the trainer and the evaluators.

The trainer and the evaluators never name a task. They receive a ``Task`` (a small Protocol) and ask it for:

  rows(method, path, options)   the training rows of ``method`` ("srl" | "sft" | "rlvr") from a data file
  reward_funcs(method, options) TRL-signature reward callables ``f(prompts, completions, **columns) -> [float]``
                                (an empty list for sft)
  grade(completion, reference)  the task's own per-sample grader (math: answer equivalence; SWE: step reward)

A request a task cannot serve (rlvr on SWE data, a file of another task) raises ``TaskError`` with one line.

Implementations live in the middle layer (``math_srl.task.MathTask``, ``environments.task.SWETask``); the top layer
(``swe_srl.tasks``) maps a data file or a task name to one of them. The pieces both tasks share — SRL rows and
step-SFT rows from step records — are here, so neither task copies them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from .reward import FORMAT_PENALTY
from .schema import StepRecord, read_steps

METHODS = ("srl", "sft", "rlvr")

# TRL's reward function signature
RewardFunc = Callable[..., list[float]]


class TaskError(ValueError):
    """The task cannot serve this request (method not supported, data lacks a field). One line."""


@dataclass
class RowOptions:
    """How a task turns its data into training rows (filled by the trainer from its config)."""

    render: Callable[[list[dict[str, str]], str], str] | None = None  # (messages, prefill) -> text; tokenizer's
    prefill_think: bool = False          # SRL: render the prompt as text and end it with "<think>"
    sft_target: str = "step"             # SFT: "step" (prompt -> <think>..</think> + action) | "full" (whole solution)
    sft_think: str = "brief"             # SFT: monologue used when a record carries none
    max_samples: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardOptions:
    """How the step reward scores (filled by the trainer from its config)."""

    format_penalty: float = FORMAT_PENALTY
    similarity_backend: str = "exact"
    think_prefilled: bool = False        # prompts end with "<think>": the completion continues the monologue


@runtime_checkable
class Task(Protocol):
    name: str

    def rows(self, method: str, path: Path, options: RowOptions) -> list[dict[str, Any]]: ...

    def reward_funcs(self, method: str, options: RewardOptions) -> list[RewardFunc]: ...

    def grade(self, completion: str, reference: Any) -> float: ...


# ---- data files ----------------------------------------------------------------------------------------------------

STEPS_FILE = "steps.jsonl"


def data_file(data: str | Path) -> Path:
    """A training data file: the path itself, or ``steps.jsonl`` inside a directory."""
    p = Path(data)
    if p.is_dir():
        p = p / STEPS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"data: no such file {str(p)!r}")
    return p


def is_step_file(path: str | Path) -> bool:
    """Whether the first record of a JSONL file is a step record (has schema_version and target)."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(d, dict) and "schema_version" in d and "target" in d
    return False


def task_records(path: str | Path, task: str, max_samples: int | None = None) -> list[StepRecord]:
    """The step records of ``path`` (the first ``max_samples``), refusing records of another task."""
    if not is_step_file(path):
        raise TaskError(f"data: {path}: not a step file (steps.jsonl records with schema_version and target)")
    records = read_steps(path)
    other = sorted({r.task for r in records if r.task != task})
    if other:
        raise TaskError(f"data: {path}: holds {'/'.join(other)} step records, not {task}")
    return records[:max_samples] if max_samples else records


# ---- shared row builders (both tasks) ----------------------------------------------------------------------------

MONOLOGUE_KEYS = ("expert_thought", "thought", "reasoning", "monologue")


def monologue(record: StepRecord, default: str) -> str:
    """The expert's reasoning before this action, when the record carries one (collectors write expert_thought)."""
    for k in MONOLOGUE_KEYS:
        v = record.meta.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return default


def srl_rows(records: list[StepRecord], options: RowOptions) -> list[dict[str, Any]]:
    """One GRPO row per step: prompt (messages, or rendered text + "<think>"), target, tool, step id."""
    rows = []
    for r in records:
        prompt: Any = r.prompt
        if options.prefill_think:
            if options.render is None:
                raise TaskError("prefill_think: needs the tokenizer to render the prompt")
            prompt = options.render(r.prompt, "<think>")
        rows.append({"prompt": prompt, "target": r.target, "tool": r.tool or r.task, "step_id": r.id})
    return rows


def sft_step_rows(records: list[StepRecord], options: RowOptions) -> list[dict[str, Any]]:
    """One SFT row per step: the step prompt -> "<think>MONOLOGUE</think>" + the expert action."""
    return [{"prompt": r.prompt,
             "completion": [{"role": "assistant",
                             "content": f"<think>{monologue(r, options.sft_think)}</think>{r.target}"}]}
            for r in records]


def by_instance(records: list[StepRecord]) -> dict[str, list[StepRecord]]:
    """Records grouped by instance (first-seen order), each group sorted by step index."""
    out: dict[str, list[StepRecord]] = {}
    for r in records:
        out.setdefault(r.instance_id, []).append(r)
    for steps in out.values():
        steps.sort(key=lambda r: r.step_index)
    return out
