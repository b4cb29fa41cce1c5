"""Training rows through the Task seam: the task of the data file builds them, the trainer only wraps them.

srl   one row per step: prompt (chat messages, or rendered text + "<think>" with prefill_think), target, tool
sft   step: prompt -> assistant "<think>MONOLOGUE</think>" + expert action; full (math): problem -> whole solution
rlvr  one row per problem + its answer (math only)
"""

from __future__ import annotations

from typing import Any

from ..core.task import RewardOptions, RowOptions, Task, TaskError, data_file
from .config import TrainSettings


def render(tokenizer: Any, messages: list[dict[str, str]], prefill: str = "") -> str:
    """A prompt as the model sees it (chat template + generation prompt), with ``prefill`` appended."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill


def row_options(s: TrainSettings, tokenizer: Any = None) -> RowOptions:
    return RowOptions(render=(lambda m, prefill: render(tokenizer, m, prefill)) if tokenizer is not None else None,
                      prefill_think=s.prefill_think, sft_target=s.sft_target, sft_think=s.sft_think,
                      max_samples=s.max_samples)


def reward_options(s: TrainSettings) -> RewardOptions:
    return RewardOptions(format_penalty=s.format_penalty, similarity_backend=s.similarity_backend,
                         think_prefilled=s.prefill_think)


def build_dataset(task: Task, method: str, data: str, options: RowOptions):
    """The ``datasets.Dataset`` of a run: ``task``'s rows of ``method`` from ``data`` (first ``max_samples``)."""
    from datasets import Dataset

    path = data_file(data)
    rows = task.rows(method, path, options)
    if options.max_samples:
        rows = rows[:options.max_samples]
    if not rows:
        raise TaskError(f"data: {path}: no training rows")
    return Dataset.from_list(rows)
