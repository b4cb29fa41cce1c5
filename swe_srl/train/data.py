"""Training rows through the Task seam: the task of the data file builds them, the trainer only wraps them.

srl   one row per step: prompt (chat messages, or rendered text + "<think>" with prefill_think), target, tool
      (srl_granularity: holistic — one row per problem, whole solution as the target: the paper's ablation)
sft   steps: prompt -> assistant "<think>MONOLOGUE</think>" + expert action; outline (math): problem -> whole
      solution; reasoning (math): problem -> "<think>R1 trace</think>" + solution
rlvr  one row per problem + its answer (math only)

Only the train split reaches the trainer (``RowOptions.split = "train"``); a file without train rows is refused.
Validation rows (``validation_rows``) are the val split of ``data`` or of ``eval_data``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..core.task import RewardOptions, RowOptions, Task, TaskError, data_file
from .config import TrainSettings


def render(tokenizer: Any, messages: list[dict[str, str]], prefill: str = "") -> str:
    """A prompt as the model sees it (chat template + generation prompt), with ``prefill`` appended."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill


def row_options(s: TrainSettings, tokenizer: Any = None, split: str | None = "train") -> RowOptions:
    return RowOptions(render=(lambda m, prefill: render(tokenizer, m, prefill)) if tokenizer is not None else None,
                      prefill_think=s.prefill_think, sft_target=s.sft_target, sft_think=s.sft_think,
                      srl_granularity=s.srl_granularity, max_samples=s.max_samples, split=split)


def reward_options(s: TrainSettings) -> RewardOptions:
    return RewardOptions(format_penalty=s.format_penalty, similarity_backend=s.similarity_backend,
                         think_prefilled=s.prefill_think)


def build_dataset(task: Task, method: str, data: str, options: RowOptions):
    """The ``datasets.Dataset`` of a run: ``task``'s rows of ``method`` from the train split of ``data`` (first
    ``max_samples``)."""
    from datasets import Dataset

    path = data_file(data)
    if options.split != "train":
        raise TaskError(f"data: {path}: the trainer reads the train split only (asked for {options.split!r})")
    rows = task.rows(method, path, options)
    if options.max_samples:
        rows = rows[:options.max_samples]
    if not rows:
        raise TaskError(f"data: {path}: no training rows")
    return Dataset.from_list(rows)


def validation_rows(task: Task, s: TrainSettings, tokenizer: Any = None) -> tuple[list[dict], list[dict], str]:
    """(step rows, answer rows, source) for validation: the val split of ``eval_data`` (every row of it when it has
    no val split) or of ``data``; at most ``eval_max_rows`` each. Step rows are the task's SRL rows (prompt, target,
    tool) at the run's granularity; answer rows (prompt, answer) only for rlvr. Either may be empty."""
    path: Path = data_file(s.eval_data or s.data)
    base = dataclasses.replace(row_options(s, tokenizer, "val"), max_samples=None)
    step_method = "srl"
    if s.method == "sft" or s.method == "rlvr":
        base = dataclasses.replace(base, srl_granularity="step")

    def get(method: str) -> list[dict]:
        for split in (("val", None) if s.eval_data else ("val",)):
            try:
                return task.rows(method, path, dataclasses.replace(base, split=split))[:s.eval_max_rows]
            except TaskError:
                continue
        return []

    steps = get(step_method)
    answers = get("rlvr") if s.method == "rlvr" else []
    return steps, answers, str(path)
