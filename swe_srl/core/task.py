"""The Task seam: what a task (math, SWE) hands the trainer and the evaluators.

The trainer and the evaluators never name a task. They receive a ``Task`` (a small Protocol) and ask it for:

  rows(method, path, options)   the training rows of ``method`` ("srl" | "sft" | "rlvr") from a data file
  reward_funcs(method, options) TRL-signature reward callables ``f(prompts, completions, **columns) -> [float]``
                                (an empty list for sft)
  grade(completion, reference)  the task's own per-sample grader (math: answer equivalence; SWE: step reward)

A request a task cannot serve (rlvr on SWE data, a file of another task) raises ``TaskError`` with one line.

Splits: every step record carries ``meta["split"]`` ("train" | "val" | "test"; a record without one is "train", the
layout of files written before splits existed). ``RowOptions.split`` picks the rows: the trainer asks for "train"
(and refuses a file without train rows), the validation callback for "val"; "test" rows never reach either.

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
from .errors import SweSrlError

METHODS = ("srl", "sft", "rlvr")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "heldout": "val"}

# SFT targets (paper §5.1 baselines): steps = step SFT (prompt -> <think>MONOLOGUE</think> + expert step);
# outline = problem -> whole expert solution ("SFT (R1 outline)"); reasoning = problem -> thinking trace + solution
# ("SFT (R1 reasoning)"). "step" and "full" are the earlier names of steps and outline.
SFT_TARGETS = {"steps": "steps", "step": "steps", "outline": "outline", "full": "outline", "reasoning": "reasoning"}

# TRL's reward function signature
RewardFunc = Callable[..., list[float]]


class TaskError(SweSrlError, ValueError):
    """The task cannot serve this request (method not supported, data lacks a field). One line."""


@dataclass
class RowOptions:
    """How a task turns its data into training rows (filled by the trainer from its config)."""

    render: Callable[[list[dict[str, str]], str], str] | None = None  # (messages, prefill) -> text; tokenizer's
    prefill_think: bool = False          # SRL: render the prompt as text and end it with "<think>"
    sft_target: str = "step"             # SFT: steps (alias step) | outline (alias full) | reasoning; see SFT_TARGETS
    srl_granularity: str = "step"        # SRL: "step" (one row per step) | "holistic" (one row per problem, ablation)
    split: str | None = "train"          # which split's records ("train" | "val" | "test"); None = every record
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


def split_of(value: Any) -> str:
    """The canonical split of a ``meta["split"]`` / row ``split`` value (missing -> "train")."""
    if value in (None, ""):
        return "train"
    v = SPLIT_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if v not in SPLITS:
        raise TaskError(f"split {value!r}: expected one of {'|'.join(SPLITS)}")
    return v


def record_split(record: StepRecord) -> str:
    return split_of(record.meta.get("split"))


def sft_target_kind(name: str) -> str:
    try:
        return SFT_TARGETS[name]
    except KeyError:
        raise TaskError(f"sft_target {name!r}: expected one of {'|'.join(SFT_TARGETS)}") from None


def no_split_rows(path: str | Path, split: str, counts: dict[str, int]) -> TaskError:
    have = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if v) or "none"
    return TaskError(f"data: {path}: no {split} rows (rows per split: {have}); training uses the train split only")


def task_records(path: str | Path, task: str, max_samples: int | None = None,
                 split: str | None = None) -> list[StepRecord]:
    """The step records of ``path`` in ``split`` (None: all; the first ``max_samples`` of them), refusing records
    of another task; a split with no records is a ``TaskError``."""
    if not is_step_file(path):
        raise TaskError(f"data: {path}: not a step file (steps.jsonl records with schema_version and target)")
    records = read_steps(path)
    other = sorted({r.task for r in records if r.task != task})
    if other:
        raise TaskError(f"data: {path}: holds {'/'.join(other)} step records, not {task}")
    if split is not None:
        counts: dict[str, int] = {}
        for r in records:
            counts[record_split(r)] = counts.get(record_split(r), 0) + 1
        records = [r for r in records if record_split(r) == split]
        if not records:
            raise no_split_rows(path, split, counts)
    return records[:max_samples] if max_samples else records


# ---- shared row builders (both tasks) ----------------------------------------------------------------------------

MONOLOGUE_KEYS = ("expert_thought", "thought", "reasoning", "monologue")


def meta_text(records: list[StepRecord], keys: tuple[str, ...]) -> str | None:
    """The first non-empty string found under one of ``keys`` in the records' meta (records in order)."""
    for r in records:
        for k in keys:
            v = r.meta.get(k)
            if isinstance(v, str) and v.strip():
                return v.strip()
    return None


def monologue(record: StepRecord, default: str) -> str:
    """The expert's reasoning before this action, when the record carries one (collectors write expert_thought)."""
    return meta_text([record], MONOLOGUE_KEYS) or default


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


def render_prompt_row(messages: list[dict[str, str]], options: RowOptions) -> Any:
    """A prompt as a row carries it: the messages, or the rendered text + "<think>" with prefill_think."""
    if not options.prefill_think:
        return messages
    if options.render is None:
        raise TaskError("prefill_think: needs the tokenizer to render the prompt")
    return options.render(messages, "<think>")


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
