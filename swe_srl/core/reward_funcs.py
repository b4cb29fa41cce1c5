"""The SRL step reward as a TRL reward function: ``f(prompts, completions, target, **columns) -> list[float]``.

Both tasks train SRL with it (math steps and SWE tool calls); it logs the format-error rate, the mean similarity and
per-tool means through TRL's ``log_metric`` hook.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from .reward import FORMAT_PENALTY, RewardResult, score_batch


def completion_text(c: Any) -> str:
    """A TRL completion as text: a string, or conversational ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in c)
    return str(c)


class StepReward:
    """Similarity of the completion's action to the expert step (``target`` column); ``format_penalty`` on a
    format violation. ``last`` holds the detailed results of the latest call."""

    __name__ = "srl_reward"   # TRL names the reward metrics after this

    def __init__(self, *, format_penalty: float = FORMAT_PENALTY, backend: str = "exact",
                 think_prefilled: bool = False) -> None:
        self.format_penalty = format_penalty
        self.backend = backend
        self.think_prefilled = think_prefilled
        self.last: list[RewardResult] = []

    def __call__(self, prompts: list, completions: list, target: list[str], tool: list[str] | None = None,
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        results = score_batch(texts, target, format_penalty=self.format_penalty, backend=self.backend,
                              think_prefilled=self.think_prefilled, processes=1)
        self.last = results
        if log_metric is not None:
            _log(results, tool, log_metric)
        return [r.reward for r in results]


def _log(results: list[RewardResult], tool: list[str] | None, log_metric: Callable[[str, float], None]) -> None:
    n = len(results)
    log_metric("srl/format_error_rate", sum(r.violation is not None for r in results) / max(n, 1))
    sims = [r.similarity for r in results if r.similarity is not None]
    if sims:
        log_metric("srl/similarity_mean", sum(sims) / len(sims))
    sim_by_tool: dict[str, list[float]] = defaultdict(list)
    reward_by_tool: dict[str, list[float]] = defaultdict(list)
    for r, t in zip(results, tool or ["?"] * n):
        reward_by_tool[str(t)].append(r.reward)
        if r.similarity is not None:
            sim_by_tool[str(t)].append(r.similarity)
    for t, v in reward_by_tool.items():
        log_metric(f"srl/reward/{t}", sum(v) / len(v))
    for t, v in sim_by_tool.items():
        log_metric(f"srl/similarity/{t}", sum(v) / len(v))
