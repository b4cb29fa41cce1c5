"""The math task on the Task seam (``swe_srl.core.task``): training rows, reward functions and the grader.

srl   one row per step record (shared ``srl_rows``), step reward
sft   step: prompt -> "<think>MONOLOGUE</think>" + expert step (shared ``sft_step_rows``);
      full: the problem (first step's prompt) -> the whole expert solution, steps joined by blank lines
rlvr  one row per problem: [evaluation system prompt, problem] + its answer, answer reward (math-verify).
      From step records carrying meta["answer"], or from a {problem|question, answer} jsonl such as MATH-500
grade answer equivalence of a completion's last \\boxed{} (``answer_reward``)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swe_srl.core.reward_funcs import StepReward
from swe_srl.core.schema import StepRecord
from swe_srl.core.task import (RewardFunc, RewardOptions, RowOptions, TaskError, by_instance, is_step_file,
                               sft_step_rows, srl_rows, task_records)

from .prompts import MATH_EVAL_SYSTEM_PROMPT, NEXT_STEP_TITLE_HEADER, PARTIAL_SOLUTION_HEADER
from .reward import AnswerReward, answer_reward, format_answer

PROBLEM_FIELDS = ("problem", "question")


class MathTask:
    name = "math"

    def rows(self, method: str, path: Path, options: RowOptions) -> list[dict[str, Any]]:
        if method == "rlvr":
            return rlvr_rows(path)
        records = task_records(path, self.name, options.max_samples)
        if method == "srl":
            return srl_rows(records, options)
        if method == "sft":
            return sft_step_rows(records, options) if options.sft_target == "step" else sft_full_rows(records)
        raise TaskError(f"method {method!r}: the math task trains srl, sft or rlvr")

    def reward_funcs(self, method: str, options: RewardOptions) -> list[RewardFunc]:
        if method == "srl":
            return [StepReward(format_penalty=options.format_penalty, backend=options.similarity_backend,
                               think_prefilled=options.think_prefilled)]
        if method == "rlvr":
            return [AnswerReward()]
        if method == "sft":
            return []
        raise TaskError(f"method {method!r}: the math task trains srl, sft or rlvr")

    def grade(self, completion: str, reference: Any) -> float:
        return answer_reward(completion, reference)


def sft_full_rows(records: list[StepRecord]) -> list[dict[str, Any]]:
    """One row per problem: the first step's prompt -> every expert step in order."""
    return [{"prompt": steps[0].prompt,
             "completion": [{"role": "assistant", "content": "\n\n".join(s.target for s in steps)}]}
            for steps in by_instance(records).values()]


def problem_of(record: StepRecord) -> str:
    """The problem statement of a step record: meta["question"]/["problem"], else the user message up to the
    partial solution (``prompts.step_user_message`` lays it out)."""
    for k in ("question", "problem"):
        v = record.meta.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    user = [m["content"] for m in record.prompt if m["role"] == "user"]
    text = user[0] if user else record.prompt[-1]["content"]
    for header in (PARTIAL_SOLUTION_HEADER, NEXT_STEP_TITLE_HEADER):
        text = text.split(header, 1)[0]
    return text.strip()


def _rlvr_row(problem: str, answer: Any) -> dict[str, Any]:
    return {"prompt": [{"role": "system", "content": MATH_EVAL_SYSTEM_PROMPT}, {"role": "user", "content": problem}],
            "answer": format_answer(answer), "tool": "math"}


def rlvr_rows(path: Path) -> list[dict[str, Any]]:
    if is_step_file(path):
        rows = [_rlvr_row(problem_of(steps[0]), steps[0].meta["answer"])
                for steps in by_instance(task_records(path, "math")).values()
                if steps[0].meta.get("answer") not in (None, "")]
        if not rows:
            raise TaskError(f"data: {path}: no step record carries meta['answer'] (needed for rlvr)")
        return rows
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise TaskError(f"data: {path}:{i}: not valid JSON") from None
            q = next((d[k] for k in PROBLEM_FIELDS if isinstance(d, dict) and d.get(k)), None)
            if q is None or d.get("answer") is None:
                raise TaskError(f"data: {path}:{i}: expected fields problem (or question) and answer")
            rows.append(_rlvr_row(q, d["answer"]))
    return rows
