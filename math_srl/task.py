"""The math task on the Task seam (``swe_srl.core.task``): training rows, reward functions and the grader.

srl   one row per step record (shared ``srl_rows``), step reward; ``srl_granularity: holistic`` (paper Table 3
      ablation "sequence-similarity reward, one-step"): one row per problem, [evaluation system prompt, problem]
      -> the whole expert solution as the target, same similarity reward
sft   steps (alias step): prompt -> "<think>MONOLOGUE</think>" + expert step (shared ``sft_step_rows``);
      outline (alias full): [problem] -> the whole expert solution ("SFT (R1 outline)");
      reasoning: [problem] -> "<think>TRACE</think>" + the solution ("SFT (R1 reasoning)";
      needs meta["reasoning_trace"], which collect copies from s1K-1.1's deepseek_thinking_trajectory)
rlvr  one row per problem: [evaluation system prompt, problem] + its answer, answer reward (math-verify).
      From step records carrying meta["answer"], or from a {problem|question, answer} jsonl such as MATH-500
grade answer equivalence of a completion's last \\boxed{} (``answer_reward``)

Every builder reads only the records of ``options.split`` (the trainer: "train"; validation: "val").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swe_srl.core.io import iter_jsonl
from swe_srl.core.reward_funcs import StepReward
from swe_srl.core.schema import StepRecord
from swe_srl.core.task import (RewardFunc, RewardOptions, RowOptions, TaskError, by_instance, is_step_file, meta_text,
                               no_split_rows, render_prompt_row, sft_step_rows, sft_target_kind, split_of, srl_rows,
                               task_records)

from .prompts import MATH_EVAL_SYSTEM_PROMPT, NEXT_STEP_TITLE_HEADER, PARTIAL_SOLUTION_HEADER
from .reward import AnswerReward, answer_reward, format_answer

PROBLEM_FIELDS = ("problem", "question")


class MathTask:
    name = "math"

    def rows(self, method: str, path: Path, options: RowOptions) -> list[dict[str, Any]]:
        if method == "rlvr":
            return rlvr_rows(path, options.split)
        if method not in ("srl", "sft"):
            raise TaskError(f"method {method!r}: the math task trains srl, sft or rlvr")
        target = sft_target_kind(options.sft_target)
        if options.srl_granularity not in ("step", "holistic"):
            raise TaskError(f"srl_granularity {options.srl_granularity!r}: expected step or holistic")
        per_step = (method == "srl" and options.srl_granularity == "step") or (method == "sft" and target == "steps")
        # per-problem rows need every step of a problem: max_samples then counts problems, not step records
        records = task_records(path, self.name, options.max_samples if per_step else None, options.split)
        if method == "srl":
            if per_step:
                return srl_rows(records, options)
            return _limit(holistic_rows(records, options), options.max_samples)
        if target == "steps":
            return sft_step_rows(records, options)
        if target == "outline":
            return _limit(sft_full_rows(records), options.max_samples)
        return _limit(sft_reasoning_rows(records, path), options.max_samples)

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


def _limit(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    return rows[:n] if n else rows


def problem_messages(problem: str) -> list[dict[str, str]]:
    """[evaluation system prompt (v3 B.2.2), problem]: the prompt of the problem-level RL rows (rlvr, holistic),
    as in the math evaluation."""
    return [{"role": "system", "content": MATH_EVAL_SYSTEM_PROMPT}, {"role": "user", "content": problem}]


def whole_solution(steps: list[StepRecord]) -> str:
    """The expert's whole solution of one problem: meta["solution"] when collect stored it, else rebuilt from the
    records: the last step's partial solution (steps 1..N-1, preamble included) + its title hint + its target."""
    for r in steps:
        v = r.meta.get("solution")
        if isinstance(v, str) and v.strip():
            return v.strip()
    last = steps[-1]
    if last.step_index == 0:
        return last.target.strip()
    user = [m["content"] for m in last.prompt if m["role"] == "user"]
    text = user[0] if user else last.prompt[-1]["content"]
    if PARTIAL_SOLUTION_HEADER not in text:
        return "\n\n".join(s.target for s in steps)
    partial = text.split(PARTIAL_SOLUTION_HEADER, 1)[1]
    hint = ""
    if NEXT_STEP_TITLE_HEADER in partial:
        partial, hint = partial.split(NEXT_STEP_TITLE_HEADER, 1)
        hint = hint.strip() + " "
    return (partial.strip() + "\n\n" + hint + last.target.strip()).strip()


def sft_problem_prompt(problem: str) -> list[dict[str, str]]:
    """The prompt of the problem-level SFT baselines: the problem as the only (user) message, as in s1K-style SFT
    data (no system prompt: the model's chat template supplies its default)."""
    return [{"role": "user", "content": problem}]


def sft_full_rows(records: list[StepRecord]) -> list[dict[str, Any]]:
    """One row per problem ("SFT (R1 outline)"): the problem -> the whole expert solution."""
    return [{"prompt": sft_problem_prompt(problem_of(steps[0])),
             "completion": [{"role": "assistant", "content": whole_solution(steps)}]}
            for steps in by_instance(records).values()]


REASONING_KEYS = ("reasoning_trace", "deepseek_thinking_trajectory")


def _trace(steps: list[StepRecord]) -> str | None:
    return meta_text(steps, REASONING_KEYS)


def sft_reasoning_rows(records: list[StepRecord], path: Path) -> list[dict[str, Any]]:
    """One row per problem ("SFT (R1 reasoning)"): [eval system prompt, problem] -> "<think>TRACE</think>" + the
    solution. Problems without a trace are left out; none with one is an error."""
    rows = []
    for steps in by_instance(records).values():
        trace = _trace(steps)
        if trace is not None:
            rows.append({"prompt": sft_problem_prompt(problem_of(steps[0])),
                         "completion": [{"role": "assistant",
                                         "content": f"<think>{trace}</think>\n{whole_solution(steps)}"}]})
    if not rows:
        raise TaskError(f"sft_target 'reasoning': data: {path}: no record carries meta['reasoning_trace'] (collect "
                        f"from s1K-1.1, whose deepseek_thinking_trajectory column holds the R1 trace); use "
                        f"sft_target: outline for the solutions alone")
    return rows


def holistic_rows(records: list[StepRecord], options: RowOptions) -> list[dict[str, Any]]:
    """Paper Table 3 ablation (one-step sequence-similarity reward): one SRL row per problem, prompt = [eval system
    prompt, problem], target = the whole expert solution, scored by the same step reward."""
    return [{"prompt": render_prompt_row(problem_messages(problem_of(steps[0])), options),
             "target": whole_solution(steps), "tool": "math", "step_id": f"{iid}/holistic"}
            for iid, steps in by_instance(records).items()]


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
    return {"prompt": problem_messages(problem), "answer": format_answer(answer), "tool": "math"}


def rlvr_rows(path: Path, split: str | None = "train") -> list[dict[str, Any]]:
    """One row per problem of ``split`` (step records: meta["split"]; a problems file: each row's ``split`` field,
    missing = train)."""
    if is_step_file(path):
        rows = [_rlvr_row(problem_of(steps[0]), steps[0].meta["answer"])
                for steps in by_instance(task_records(path, "math", split=split)).values()
                if steps[0].meta.get("answer") not in (None, "")]
        if not rows:
            raise TaskError(f"data: {path}: no step record carries meta['answer'] (needed for rlvr)")
        return rows
    rows = []
    counts: dict[str, int] = {}
    for i, d in iter_jsonl(path, label="data:", error=TaskError):
        q = next((d[k] for k in PROBLEM_FIELDS if isinstance(d, dict) and d.get(k)), None)
        if q is None or d.get("answer") is None:
            raise TaskError(f"data: {path}:{i}: expected fields problem (or question) and answer")
        row_split = split_of(d.get("split"))
        counts[row_split] = counts.get(row_split, 0) + 1
        if split is None or row_split == split:
            rows.append(_rlvr_row(q, d["answer"]))
    if split is not None and not rows:
        raise no_split_rows(path, split, counts)
    return rows
