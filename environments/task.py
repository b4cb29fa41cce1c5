"""The SWE task on the Task seam (``swe_srl.core.task``): step rows, the step reward, the step grader.

srl   one row per agent step (shared ``srl_rows``), step reward on the tool call
sft   prompt -> "<think>EXPERT THOUGHT</think>" + the expert tool call (shared ``sft_step_rows``; the collector
      stores the thought in meta["expert_thought"])
rlvr  refused: a step has no verifiable final answer (resolving an issue is graded by swe_eval, not per rollout)

Rows come from ``options.split`` only (the trainer: "train"; validation: "val"; environments.splits assigns them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swe_srl.core.reward import srl_reward
from swe_srl.core.reward_funcs import StepReward
from swe_srl.core.task import (RewardFunc, RewardOptions, RowOptions, TaskError, sft_step_rows, sft_target_kind,
                               srl_rows, task_records)

RLVR_REFUSED = "method 'rlvr': SWE step data has no verifiable answer; train SWE with method srl or sft"


class SWETask:
    name = "swe"

    def rows(self, method: str, path: Path, options: RowOptions) -> list[dict[str, Any]]:
        if method == "rlvr":
            raise TaskError(RLVR_REFUSED)
        if method == "sft" and sft_target_kind(options.sft_target) != "steps":
            raise TaskError(f"sft_target {options.sft_target!r}: SWE SFT trains on steps (sft_target: steps)")
        if method not in ("srl", "sft"):
            raise TaskError(f"method {method!r}: the SWE task trains srl or sft")
        if method == "srl" and options.srl_granularity != "step":
            raise TaskError(f"srl_granularity {options.srl_granularity!r}: the SWE task has step rows only "
                            f"(srl_granularity: step)")
        records = task_records(path, self.name, options.max_samples, options.split)
        return srl_rows(records, options) if method == "srl" else sft_step_rows(records, options)

    def reward_funcs(self, method: str, options: RewardOptions) -> list[RewardFunc]:
        if method == "srl":
            return [StepReward(format_penalty=options.format_penalty, backend=options.similarity_backend,
                               think_prefilled=options.think_prefilled)]
        if method == "sft":
            return []
        if method == "rlvr":
            raise TaskError(RLVR_REFUSED)
        raise TaskError(f"method {method!r}: the SWE task trains srl or sft")

    def grade(self, completion: str, reference: Any) -> float:
        """Step reward of a completion against the expert action."""
        return srl_reward(completion, str(reference))
