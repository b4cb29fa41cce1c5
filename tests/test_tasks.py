"""The Task seam: which task serves a data file, the rows and reward functions each task hands the trainer, and the
refusals (rlvr on SWE data, rlvr without math-verify) as one-line errors. No model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from environments.task import SWETask
from math_srl.prompts import MATH_EVAL_SYSTEM_PROMPT, MATH_SRL_SYSTEM_PROMPT, PARTIAL_SOLUTION_HEADER
from math_srl.reward import AnswerReward
from math_srl.task import MathTask
from swe_srl.core.reward_funcs import StepReward
from swe_srl.core.schema import StepRecord, read_steps, write_steps
from swe_srl.core.task import RewardOptions, RowOptions, Task, TaskError, monologue
from swe_srl.tasks import get_task, task_for_data

ROOT = Path(__file__).resolve().parents[1]
MATH = ROOT / "configs" / "data" / "math_steps_sample.jsonl"
SWE = ROOT / "configs" / "data" / "swe_steps_sample.jsonl"


def test_data_file_names_its_task(tmp_path):
    assert isinstance(task_for_data(MATH), MathTask) and isinstance(task_for_data(SWE), SWETask)
    assert isinstance(task_for_data(MATH), Task) and isinstance(get_task("swe"), Task)
    d = tmp_path / "run"
    d.mkdir()
    (d / "steps.jsonl").write_text(SWE.read_text())
    assert isinstance(task_for_data(d), SWETask)                       # a directory holding steps.jsonl
    problems = tmp_path / "math500.jsonl"
    problems.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    assert isinstance(task_for_data(problems), MathTask)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(MATH.read_text() + SWE.read_text())
    with pytest.raises(TaskError, match="one task"):
        task_for_data(mixed)
    with pytest.raises(TaskError, match="unknown"):
        get_task("chess")
    with pytest.raises(FileNotFoundError):
        task_for_data(tmp_path / "nope.jsonl")


def test_math_srl_and_sft_rows():
    records = read_steps(MATH)
    task = MathTask()
    srl = task.rows("srl", MATH, RowOptions())
    assert [r["step_id"] for r in srl] == [r.id for r in records]
    assert srl[0]["prompt"] == records[0].prompt and srl[0]["target"] == records[0].target
    assert srl[0]["tool"] == "math"
    rendered = task.rows("srl", MATH, RowOptions(render=lambda m, prefill: m[-1]["content"] + "|" + prefill,
                                                 prefill_think=True))
    assert rendered[1]["prompt"] == records[1].prompt[-1]["content"] + "|<think>"
    step = task.rows("sft", MATH, RowOptions(sft_think="brief"))
    assert step[0]["completion"][0]["content"] == f"<think>brief</think>{records[0].target}"
    full = task.rows("sft", MATH, RowOptions(sft_target="full"))
    first = [r for r in records if r.instance_id == records[0].instance_id]
    assert len(full) == len({r.instance_id for r in records})
    # issue #11: the outline baseline is problem -> whole expert solution (not the step-2 prompt with step 1 given)
    from math_srl.task import problem_of

    assert full[0]["prompt"] == [{"role": "user", "content": problem_of(first[0])}]
    whole = full[0]["completion"][0]["content"]
    last_user = first[-1].prompt[-1]["content"]
    assert whole == (last_user.split(PARTIAL_SOLUTION_HEADER, 1)[1].strip() + "\n\n" + first[-1].target)
    assert first[0].step_index == 0 and whole.startswith(first[0].target)
    assert all(r.target in whole for r in first) and PARTIAL_SOLUTION_HEADER not in whole
    assert len(task.rows("srl", MATH, RowOptions(max_samples=3))) == 3


def test_math_rlvr_rows_from_steps_and_from_problems(tmp_path):
    rows = MathTask().rows("rlvr", MATH, RowOptions())
    records = read_steps(MATH)
    assert len(rows) == len({r.instance_id for r in records})
    assert rows[0]["prompt"][0] == {"role": "system", "content": MATH_EVAL_SYSTEM_PROMPT}
    problem = rows[0]["prompt"][1]["content"]
    assert problem == "Find the sum of all positive divisors of $72$." and PARTIAL_SOLUTION_HEADER not in problem
    assert rows[0]["answer"] == "195"
    # meta["question"] wins over the prompt; a float answer is written the way the grader reads it
    rec = StepRecord(instance_id="q", step_index=1, num_steps=2, task="math", tool=None,
                     prompt=[{"role": "system", "content": MATH_SRL_SYSTEM_PROMPT},
                             {"role": "user", "content": f"garbled\n\n{PARTIAL_SOLUTION_HEADER}\n1. x"}],
                     target="2. y", meta={"question": "What is 3*9?", "answer": 27.0})
    write_steps(tmp_path / "steps.jsonl", [rec])
    (row,) = MathTask().rows("rlvr", tmp_path / "steps.jsonl", RowOptions())
    assert row["prompt"][1]["content"] == "What is 3*9?" and row["answer"] == "27"
    problems = tmp_path / "math500.jsonl"
    problems.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n\n"
                        + json.dumps({"question": "2+2?", "answer": 4}) + "\n")
    rows = MathTask().rows("rlvr", problems, RowOptions())
    assert [(r["prompt"][1]["content"], r["answer"]) for r in rows] == [("1+1?", "2"), ("2+2?", "4")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "1+1?"}) + "\n")
    with pytest.raises(TaskError, match=r"bad.jsonl:1: expected fields problem"):
        MathTask().rows("rlvr", bad, RowOptions())
    no_answer = tmp_path / "no_answer.jsonl"
    write_steps(no_answer, [StepRecord(instance_id="q", step_index=0, num_steps=1, task="math", tool=None,
                                       prompt=rec.prompt, target="x")])
    with pytest.raises(TaskError, match="meta\\['answer'\\]"):
        MathTask().rows("rlvr", no_answer, RowOptions())
    with pytest.raises(TaskError, match="not a step file"):
        MathTask().rows("srl", problems, RowOptions())


def test_math_reward_funcs_and_grade():
    task = MathTask()
    (srl,) = task.reward_funcs("srl", RewardOptions(format_penalty=-2.0))
    assert isinstance(srl, StepReward)
    assert srl(None, ["<think>a</think>x = 2", "no think"], ["x = 2", "x = 2"]) == [1.0, -2.0]
    (rlvr,) = task.reward_funcs("rlvr", RewardOptions())
    assert isinstance(rlvr, AnswerReward)
    logged = {}
    assert rlvr(None, ["so \\boxed{\\frac{1}{2}}", [{"role": "assistant", "content": "\\boxed{3}"}], "none"],
                ["0.5", "4", "4"], log_metric=logged.__setitem__) == [1.0, 0.0, 0.0]
    assert logged == {"rlvr/accuracy": pytest.approx(1 / 3)}
    assert task.reward_funcs("sft", RewardOptions()) == []
    assert task.grade("the answer is \\boxed{195}", "195") == 1.0 and task.grade("\\boxed{194}", "195") == 0.0


def test_swe_rows_reward_and_sft_uses_the_expert_thought():
    records = read_steps(SWE)
    task = SWETask()
    srl = task.rows("srl", SWE, RowOptions())
    assert [r["tool"] for r in srl] == [r.tool for r in records] and srl[0]["target"] == records[0].target
    sft = task.rows("sft", SWE, RowOptions(sft_think="brief"))
    thought = records[0].meta["expert_thought"].strip()
    assert thought and sft[0]["completion"][0]["content"] == f"<think>{thought}</think>{records[0].target}"
    assert monologue(records[0], "brief") == thought
    (reward,) = task.reward_funcs("srl", RewardOptions())
    assert isinstance(reward, StepReward)
    assert reward(None, [f"<think>t</think>{records[0].target}"], [records[0].target]) == [1.0]
    assert task.grade(f"<think>t</think>{records[0].target}", records[0].target) == 1.0
    assert task.grade("no format", records[0].target) == -1.0
    with pytest.raises(TaskError, match="holds swe step records, not math"):
        MathTask().rows("srl", SWE, RowOptions())


@pytest.mark.parametrize("call", ["rows", "reward_funcs"])
def test_rlvr_refuses_swe_data_in_one_line(call):
    task = task_for_data(SWE)
    with pytest.raises(TaskError) as e:
        task.rows("rlvr", SWE, RowOptions()) if call == "rows" else task.reward_funcs("rlvr", RewardOptions())
    assert "rlvr" in str(e.value) and "\n" not in str(e.value)


def test_cli_rlvr_on_swe_data_fails_before_loading_a_model(tmp_path):
    from typer.testing import CliRunner

    from swe_srl.cli import app

    r = CliRunner().invoke(app, ["train", "--method", "rlvr", "--data", str(SWE), "--model", "no/such-model",
                                 "-o", str(tmp_path / "run"), "--rollout", "transformers"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("[swe-srl]")]
    assert len(lines) == 1 and "rlvr" in lines[0] and "SWE" in lines[0], r.output


def test_rlvr_without_math_verify_fails_loudly(tmp_path):
    code = f"""
import sys
sys.modules["math_verify"] = None          # math-verify cannot be imported
from swe_srl.cli import app
app(["train", "--method", "rlvr", "--data", {str(MATH)!r}, "--model", "no/such-model",
     "-o", {str(tmp_path / "run")!r}, "--rollout", "transformers"])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "math-verify" in err[0], r.stderr[-2000:]
    assert not (tmp_path / "run" / "manifest.json").exists()
