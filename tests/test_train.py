"""swe-srl train on CPU with a tiny random Llama + a character tokenizer built here (no hub, no cache)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from swe_srl.core.schema import StepRecord, write_steps
from swe_srl.train.config import load_settings
from tiny_model import save_tiny

SYSTEM = "continue the solution with the next step. think first."


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices: threads only add overhead on the shared 2 cores
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _steps(path: Path, n: int = 8, with_answer: bool = False, flat_every: int = 0) -> Path:
    recs = []
    for i in range(n):
        target = f"flat {i}" if flat_every and i % flat_every == 0 else f"x = {i} + {i}"
        meta = {"answer": str(2 * i)} if with_answer else {}
        recs.append(StepRecord(instance_id=f"p{i // 2}", step_index=i % 2, num_steps=2, task="math", tool=None,
                               prompt=[{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": f"solve {i} + {i}"}],
                               target=target, meta=meta))
    write_steps(path, recs)
    return path


def _settings(tiny_dir, tmp_path, *overrides, method="srl", data=None):
    data = data or _steps(tmp_path / "steps.jsonl")
    base = [f"method={method}", f"model={tiny_dir}", f"data={data}", f"output_dir={tmp_path / 'run'}",
            "rollout=transformers", "bf16=false", "per_device_train_batch_size=4", "logging_steps=1",
            "save_steps=100", "seed=0", "plots=false"]
    if method != "sft":
        base += ["num_generations=4", "batch_prompts=2", "max_completion_length=10", "learning_rate=0.01",
                 "prefill_think=true"]
    else:
        base += ["batch_prompts=4", "learning_rate=0.01", "max_length=128"]
    return load_settings(None, base + list(overrides))


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_srl_step_changes_weights_and_writes_outputs(tiny_dir, tmp_path):
    from swe_srl.train.runner import run

    s = _settings(tiny_dir, tmp_path, "max_steps=1", "plots=true", "save_steps=1")
    from swe_srl.train.runner import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(s)
    before = _params(model)
    trainer = run(s, model=model, tokenizer=tok)
    after = _params(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    out = Path(s.trl["output_dir"])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and "reward" in rows[0] and "ds/kept_fraction" in rows[0] and "srl/format_error_rate" in rows[0]
    assert any(k.startswith("srl/reward/") for k in rows[0])
    man = json.loads((out / "manifest.json").read_text())
    assert {"torch", "transformers", "trl"} <= set(man["versions"]) and len(man["data"]["sha256"]) == 64
    assert (out / "plots" / "curves.png").exists() and (out / "checkpoint-1").is_dir() and (out / "final").is_dir()


def _trainer(s, reward=None):
    from swe_srl.core.reward_funcs import StepReward
    from swe_srl.tasks import task_for_data
    from swe_srl.train.config import trl_config
    from swe_srl.train.data import build_dataset, row_options
    from swe_srl.train.grpo import SRLGRPOTrainer
    from swe_srl.train.runner import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(s)
    ds = build_dataset(task_for_data(s.data), "srl", s.data, row_options(s, tok))
    reward = reward or StepReward(think_prefilled=s.prefill_think)
    return SRLGRPOTrainer(model=model, reward_funcs=[reward], args=trl_config(s, "transformers"),
                          train_dataset=ds, processing_class=tok, dynamic_sampling=s.dynamic_sampling,
                          ds_eps=s.ds_eps, ds_max_rounds=s.ds_max_rounds)


def test_dynamic_sampling_drops_flat_groups_and_refills(tiny_dir, tmp_path):
    data = _steps(tmp_path / "steps.jsonl", n=8, flat_every=2)   # half the prompts give flat groups
    rng = random.Random(0)

    def reward(prompts, completions, target, **kw):
        return [0.5 if t.startswith("flat") else rng.random() for t in target]

    s = _settings(tiny_dir, tmp_path, "max_steps=1", "batch_prompts=4", "ds_max_rounds=10", data=data)
    tr = _trainer(s, reward)
    tr.model.train()
    rows = [dict(tr.train_dataset[i]) for i in (0, 2, 4, 6)]   # only the batch's size is used: prompts come from
    batch = [r for r in rows for _ in range(4)]                  # the trainer's seeded epoch order (half are flat)
    out = tr._generate_and_score_completions(batch)
    st = tr.ds_log[-1]
    assert st["rounds"] >= 2 and st["groups_kept"] >= 4 and st["shortfall_groups"] == 0
    assert st["kept_fraction"] < 1.0
    adv = out["advantages"].view(-1, 4)
    assert adv.shape[0] == 4 and bool((adv.abs().sum(1) > 0).all())        # every kept group carries signal
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())


def test_all_flat_hits_cap_and_warns_loudly(tiny_dir, tmp_path, capsys):
    s = _settings(tiny_dir, tmp_path, "ds_max_rounds=2")
    tr = _trainer(s, lambda prompts, completions, **kw: [0.0] * len(completions))
    tr.model.train()
    batch = [dict(tr.train_dataset[i]) for i in (0, 1) for _ in range(4)]
    out = tr._generate_and_score_completions(batch)
    st = tr.ds_log[-1]
    assert st["rounds"] == 2 and st["groups_kept"] == 0 and st["shortfall_groups"] == 2
    assert int(out["completion_mask"].sum()) == 0 and out["advantages"].shape[0] == 8
    assert "KEPT FRACTION" in capsys.readouterr().err


def test_format_penalty_reaches_the_loss(tiny_dir, tmp_path):
    from swe_srl.core.reward_funcs import StepReward

    s = _settings(tiny_dir, tmp_path, "dynamic_sampling=false", "prefill_think=false")
    # prompts render to text ending with '<think>' but the reward does NOT treat it as prefilled: completions that
    # close the think block are still scored, the rest get -1; we force a mix by scoring fixed completions.
    reward = StepReward()
    comp = ["<think>a</think>x = 1 + 1", "no think at all", "<think>b</think>x = 2", "<think>unclosed"]
    res = reward(None, comp, ["x = 1 + 1"] * 4)
    assert res[1] == -1.0 and res[3] == -1.0 and res[0] == 1.0

    tr = _trainer(s, lambda prompts, completions, **kw: reward(prompts, completions, kw["target"]))
    tr.model.train()
    batch = [dict(tr.train_dataset[i]) for i in (0, 1) for _ in range(4)]
    out = tr._generate_and_score_completions(batch)
    rewards = torch.tensor(tr._round_local_rewards).view(-1, 4)
    adv = out["advantages"].view(-1, 4)
    # random tiny model: mostly violations (-1); where a group mixes, the -1 rollouts get negative advantages
    assert bool((rewards == -1.0).any())
    mixed = rewards.std(1) > 0
    if mixed.any():
        assert bool((adv[mixed][rewards[mixed] == -1.0] < 0).all())
    # and the loss / gradient see the advantages: synthesise a mixed batch to be sure
    out["advantages"] = torch.tensor([1.0, -1.0, 1.0, -1.0] * 2)
    tr.current_gradient_accumulation_steps = 1
    loss = tr.compute_loss(tr.model, out)
    loss.backward()
    g = sum(p.grad.abs().sum() for p in tr.model.parameters() if p.grad is not None)
    assert float(g) > 0


def test_resume_gives_same_metrics(tiny_dir, tmp_path):
    import shutil

    from swe_srl.train.runner import run

    data = _steps(tmp_path / "steps.jsonl")
    a = _settings(tiny_dir, tmp_path / "a", "max_steps=2", "save_steps=1", data=data)
    run(a)
    b = _settings(tiny_dir, tmp_path / "b", "max_steps=2", "save_steps=1", data=data)
    out_a, out_b = Path(a.trl["output_dir"]), Path(b.trl["output_dir"])
    shutil.copytree(out_a / "checkpoint-1", out_b / "checkpoint-1")
    rows_a = [json.loads(x) for x in (out_a / "metrics.jsonl").read_text().splitlines()]
    (out_b / "metrics.jsonl").write_text(json.dumps(rows_a[0]) + "\n" + json.dumps({"step": 2, "stale": 1}) + "\n")
    run(b, resume=True)
    rows_b = [json.loads(x) for x in (out_b / "metrics.jsonl").read_text().splitlines()]
    la = [r for r in rows_a if "reward" in r]
    lb = [r for r in rows_b if "reward" in r]
    assert [r["step"] for r in lb] == [1, 2] and not any("stale" in r for r in rows_b)
    for x, y in zip(la, lb):
        assert x["reward"] == pytest.approx(y["reward"]) and x["loss"] == pytest.approx(y["loss"], abs=1e-6)
        assert x["ds/generated_per_kept"] == y["ds/generated_per_kept"] and x["ds/epoch"] == y["ds/epoch"]
    from transformers import AutoModelForCausalLM

    ma = AutoModelForCausalLM.from_pretrained(out_a / "final")
    mb = AutoModelForCausalLM.from_pretrained(out_b / "final")
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_lora_trains_adapter_only(tiny_dir, tmp_path):
    from swe_srl.train.runner import build_trainer

    s = _settings(tiny_dir, tmp_path, "max_steps=1", "lora=true", "lora_r=4", "lora_alpha=8",
                  "lora_target_modules=[q_proj, v_proj]")
    tr = build_trainer(s, rollout="transformers")
    before = _params(tr.model)
    tr.train()
    after = _params(tr.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("lora" in k for k in changed)


@pytest.mark.parametrize("target", ["step", "full"])
def test_sft_paths(tiny_dir, tmp_path, target):
    from swe_srl.tasks import task_for_data
    from swe_srl.train.data import build_dataset, row_options
    from swe_srl.train.runner import build_trainer

    s = _settings(tiny_dir, tmp_path, "max_steps=2", f"sft_target={target}", method="sft")
    ds = build_dataset(task_for_data(s.data), "sft", s.data, row_options(s))
    first = ds[0]["completion"][0]["content"]
    assert first.startswith("<think>brief</think>x = 0") if target == "step" else "\n\n" in first
    tr = build_trainer(s, rollout="transformers")
    before = _params(tr.model)
    res = tr.train()
    assert res.training_loss == res.training_loss  # not NaN
    assert any(not torch.equal(before[k], v) for k, v in _params(tr.model).items())


def test_rlvr_path_and_reward(tiny_dir, tmp_path):
    from math_srl.reward import AnswerReward
    from swe_srl.train.runner import run

    r = AnswerReward()
    assert r(None, ["so \\boxed{4}", "\\boxed{5}", "none"], ["4", "4", "4"]) == [1.0, 0.0, 0.0]
    data = _steps(tmp_path / "steps.jsonl", with_answer=True)
    s = _settings(tiny_dir, tmp_path, "max_steps=1", "ds_max_rounds=2", method="rlvr", data=data)
    tr = run(s)
    assert tr.ds_log and tr.ds_log[0]["groups_generated"] >= 2   # same DS machinery (all-wrong groups are dropped)
    ds = tr.train_dataset
    assert "answer" in ds.column_names and ds[0]["prompt"][0]["role"] == "system"
