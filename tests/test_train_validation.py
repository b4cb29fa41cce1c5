"""Splits reach the trainer as they should (train only; val scored during training, test never), validation every
eval_steps + at the end, best/ matching the best logged validation metric, and the baseline row builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from swe_srl.core.schema import StepRecord, write_steps
from swe_srl.core.task import RowOptions, TaskError
from swe_srl.train.config import load_settings
from tiny_model import save_tiny

SYSTEM = "continue the solution with the next step. think first."


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def split_steps(path: Path, n_problems: int = 6, splits=("train", "train", "train", "val", "val", "test"),
                trace: bool = False) -> Path:
    recs = []
    for p in range(n_problems):
        split = splits[p % len(splits)]
        for k in range(1, 3):
            meta = {"split": split, "answer": str(p)}
            if trace and k == 1:
                meta["reasoning_trace"] = f"think about {p}"
            prev = "" if k == 1 else f"\n\nPartial solution so far:\nstep {p}.1"
            recs.append(StepRecord(instance_id=f"{split}-q{p}", step_index=k, num_steps=3, task="math", tool=None,
                                   prompt=[{"role": "system", "content": SYSTEM},
                                           {"role": "user", "content": f"problem {split} {p}" + prev}],
                                   target=f"step {p}.{k + 1}", meta=meta))
    write_steps(path, recs)
    return path


def _settings(tiny_dir, tmp_path, data, *overrides, method="srl"):
    base = [f"method={method}", f"model={tiny_dir}", f"data={data}", f"output_dir={tmp_path / 'run'}",
            "rollout=transformers", "bf16=false", "per_device_train_batch_size=4", "logging_steps=1",
            "save_steps=100", "seed=0", "plots=false", "eval_max_new_tokens=8"]
    if method != "sft":
        base += ["num_generations=4", "batch_prompts=2", "max_completion_length=8", "learning_rate=0.01",
                 "prefill_think=true"]
    else:
        base += ["batch_prompts=4", "learning_rate=0.01", "max_length=600"]
    return load_settings(None, base + list(overrides))


def _prompt_texts(ds, tok) -> list[str]:
    if "prompt" not in ds.column_names:                       # SFTTrainer keeps the tokenized rows only
        return [tok.decode(ids) for ids in ds["input_ids"]]
    out = []
    for p in ds["prompt"]:
        out.append(p if isinstance(p, str) else "\n".join(m["content"] for m in p))
    return out


@pytest.mark.parametrize("method,extra", [("srl", []), ("srl", ["srl_granularity=holistic"]),
                                          ("sft", ["sft_target=steps"]), ("sft", ["sft_target=outline"]),
                                          ("sft", ["sft_target=reasoning"]), ("rlvr", [])])
def test_no_validation_or_test_row_reaches_the_trainer(tiny_dir, tmp_path, method, extra):
    from swe_srl.train.runner import build_trainer

    data = split_steps(tmp_path / "steps.jsonl", trace=True)
    s = _settings(tiny_dir, tmp_path, data, "max_steps=1", *extra, method=method)
    tr = build_trainer(s, rollout="transformers")
    texts = _prompt_texts(tr.train_dataset, tr.processing_class)
    assert texts and all("problem train" in t for t in texts)
    assert not any("problem val" in t or "problem test" in t for t in texts)
    if "step_id" in tr.train_dataset.column_names:
        assert all(i.startswith("train-") for i in tr.train_dataset["step_id"])
    val = next(c for c in tr.callback_handler.callbacks if type(c).__name__ == "ValidationCallback")
    vtexts = [r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"]
              for r in val.step_rows + val.answer_rows]
    assert vtexts and all("problem val" in t for t in vtexts)


def test_train_refuses_data_without_a_train_split(tiny_dir, tmp_path):
    from swe_srl.train.runner import build_trainer

    data = split_steps(tmp_path / "steps.jsonl", splits=("val", "test"))
    for method in ("srl", "sft", "rlvr"):
        with pytest.raises(TaskError, match="no train rows"):
            build_trainer(_settings(tiny_dir, tmp_path, data, method=method), rollout="transformers")


def test_validation_logs_and_best_matches_the_best_logged_metric(tiny_dir, tmp_path):
    from swe_srl.train.runner import run

    data = split_steps(tmp_path / "steps.jsonl")
    s = _settings(tiny_dir, tmp_path, data, "max_steps=3", "eval_steps=2", "eval_on_start=true", "plots=true")
    run(s)
    out = Path(s.trl["output_dir"])
    val = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in val] == [0, 2, 3]              # start, every eval_steps, the end
    for r in val:
        assert {"val/step_reward_greedy", "val/step_reward_sampled", "val/format_rate_greedy"} <= set(r)
        assert r["val/rows"] == 4                              # 2 val problems x 2 steps
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics if "val/step_reward_greedy" in r] == [0, 2, 3]
    best = json.loads((out / "best" / "best.json").read_text())
    values = [r["val/step_reward_greedy"] for r in val]
    first_best = values.index(max(values))
    assert best["step"] == val[first_best]["step"] and best["value"] == pytest.approx(max(values))
    man = json.loads((out / "manifest.json").read_text())
    assert man["best"]["step"] == best["step"] and man["best"]["metric"] == "val/step_reward_greedy"
    assert man["validation"]["every_steps"] == 2
    assert (out / "best" / "config.json").exists() and (out / "final").is_dir()
    assert (out / "plots" / "curves.png").exists()
    # best/ holds the weights that produced the logged value: re-measuring it gives the same number
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swe_srl.train.data import validation_rows
    from swe_srl.train.runner import validation_callback
    from swe_srl.tasks import task_for_data

    tok = AutoTokenizer.from_pretrained(out / "best")
    cb = validation_callback(s, task_for_data(data), tok, str(tmp_path / "again"))
    again = cb.measure(AutoModelForCausalLM.from_pretrained(out / "best"), tok)
    assert again["val/step_reward_greedy"] == pytest.approx(best["value"], abs=1e-6)
    assert validation_rows(task_for_data(data), s, tok)[0] == cb.step_rows


def test_rlvr_validation_has_answer_accuracy_and_dry_run_shows_the_schedule(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from swe_srl.cli import app
    from swe_srl.train.runner import run

    data = split_steps(tmp_path / "steps.jsonl")
    s = _settings(tiny_dir, tmp_path, data, "max_steps=1", "ds_max_rounds=1", "eval_sampled=false", method="rlvr")
    run(s)
    out = Path(s.trl["output_dir"])
    val = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert val[-1]["step"] == 1 and "val/answer_accuracy" in val[-1] and "val/step_reward_sampled" not in val[-1]
    assert json.loads((out / "manifest.json").read_text())["best"]["metric"] == "val/answer_accuracy"
    r = CliRunner().invoke(app, ["train", "-c", "configs/math_srl_qwen2.5_7b.yaml", "--dry-run"])
    assert r.exit_code == 0, r.output
    sched = json.loads(r.output.split("\n# resolved")[0])["validation"]
    assert sched["enabled"] and sched["best_metric"] == "val/step_reward_greedy" and "every_steps" in sched


def test_baseline_rows_as_the_paper_defines_them(tmp_path):
    from math_srl.prompts import MATH_EVAL_SYSTEM_PROMPT
    from math_srl.task import MathTask

    data = split_steps(tmp_path / "steps.jsonl", trace=True)
    t = MathTask()
    outline = t.rows("sft", data, RowOptions(sft_target="outline"))
    assert len(outline) == 3                                   # one per train problem
    assert outline[0]["prompt"] == [{"role": "user", "content": "problem train 0"}]   # no step given
    assert outline[0]["completion"][0]["content"] == "step 0.1\n\nstep 0.3"    # rebuilt: step 1 + ... + last
    assert t.rows("sft", data, RowOptions(sft_target="full")) == outline      # the earlier name
    reasoning = t.rows("sft", data, RowOptions(sft_target="reasoning"))
    assert reasoning[0]["completion"][0]["content"] == "<think>think about 0</think>\nstep 0.1\n\nstep 0.3"
    plain = split_steps(tmp_path / "plain.jsonl")
    with pytest.raises(TaskError, match="deepseek_thinking_trajectory"):
        t.rows("sft", plain, RowOptions(sft_target="reasoning"))
    hol = t.rows("srl", data, RowOptions(srl_granularity="holistic"))
    assert len(hol) == 3 and hol[0]["target"] == "step 0.1\n\nstep 0.3" and hol[0]["step_id"].endswith("/holistic")
    assert hol[0]["prompt"][0]["content"] == MATH_EVAL_SYSTEM_PROMPT
    assert len(t.rows("srl", data, RowOptions(split="val"))) == 4
    assert len(t.rows("srl", data, RowOptions(split=None))) == 12
