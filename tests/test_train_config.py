"""swe-srl train: config loading, overrides, one-line errors, dry runs (no model loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from swe_srl.cli import app
from swe_srl.train.config import ConfigError, launch_command, load_settings, trl_kwargs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates(path):
    s = load_settings(path)
    assert s.method in ("srl", "sft", "rlvr")
    if s.method != "sft":
        kw = trl_kwargs(s, "transformers")
        # paper-fixed values explicit
        assert kw["beta"] == 0.0 and kw["max_grad_norm"] == 1.0 and kw["temperature"] == 1.0
        assert kw["loss_type"] == "grpo" and kw["scale_rewards"] == "group"
        assert kw["mask_truncated_completions"] is False
        assert kw["steps_per_generation"] == kw["gradient_accumulation_steps"]


def test_paper_batch_derivation():
    s = load_settings(ROOT / "configs/math_srl_qwen2.5_7b.yaml", num_processes=8)
    assert s.batch_prompts == 512 and s.trl["learning_rate"] == 5e-7
    # 512 groups x 8 rollouts over 8 processes x 8 per device -> 64 micro-steps, one generation per optimizer step
    assert s.derived == {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 64,
                         "steps_per_generation": 64}
    r = load_settings(ROOT / "configs/math_rlvr_qwen2.5_7b.yaml")
    assert r.batch_prompts == 128 and r.method == "rlvr"


def test_overrides_and_types():
    s = load_settings(ROOT / "configs/math_srl_cpu.yaml", ["learning_rate=1e-3", "ds_eps=0.01", "lora=true",
                                                          "max_steps=7"])
    assert s.trl["learning_rate"] == 1e-3 and s.ds_eps == 0.01 and s.lora is True and s.trl["max_steps"] == 7


@pytest.mark.parametrize("override,key", [
    ("no_such_key=1", "no_such_key"), ("learning_rate=fast", "learning_rate"), ("lora=maybe", "lora"),
    ("rollout=ray", "rollout"), ("gradient_accumulation_steps=4", "gradient_accumulation_steps"),
    ("method=ppo", "method"), ("per_device_train_batch_size=3", "per_device_train_batch_size"),
    ("bf16=1", "bf16"),
])
def test_bad_key_one_line_error(override, key):
    with pytest.raises(ConfigError) as e:
        load_settings(ROOT / "configs/math_srl_cpu.yaml", [override])
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_sft_refuses_grpo_keys():
    with pytest.raises(ConfigError, match="num_generations"):
        load_settings(ROOT / "configs/math_sft_cpu.yaml", ["num_generations=8"])


def test_cli_bad_key_and_dry_run(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "-c", str(ROOT / "configs/math_srl_cpu.yaml"), "--set", "bogus=1", "--dry-run"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bogus" in lines[0]
    r = runner.invoke(app, ["train", "-c", str(ROOT / "configs/swe_srl_qwen2.5_coder_7b.yaml"), "--dry-run",
                            "--num-processes", "8", "--accelerate-config",
                            str(ROOT / "configs/accelerate/deepspeed_zero3.yaml")])
    assert r.exit_code == 0, r.output
    assert "accelerate launch --num_processes 8 --config_file" in r.output
    assert "Qwen2.5-Coder-7B-Instruct" in r.output


def test_launch_command_single_process():
    s = load_settings(ROOT / "configs/math_srl_cpu.yaml")
    cmd = launch_command(s, "x.yaml")
    assert cmd[1:] == ["-m", "swe_srl.train.entry", "x.yaml"]


# swe-srl's keys before they became a dataclass: name -> (default, help). The dataclass must keep both.
SRL_KEYS_BEFORE = {
    "method": ("srl", "srl | sft | rlvr"),
    "model": (None, "hub id, local path or alias (smollm2-135m)"),
    "data": (None, "steps.jsonl (or a directory holding one); rlvr also takes {problem, answer} jsonl"),
    "eval_data": (None, "held-out steps.jsonl (optional)"),
    "max_samples": (None, "use only the first N records of data"),
    "rollout": ("auto", "auto | vllm-colocate | vllm-server | transformers"),
    "batch_prompts": (512, "prompt groups (step instances) per optimizer step; SFT: examples per step"),
    "dynamic_sampling": (True, "keep only groups with reward std > ds_eps, refill until the batch is full"),
    "ds_eps": (1e-4, "dynamic-sampling std threshold"),
    "ds_max_rounds": (8, "generation rounds per optimizer step before training on what there is"),
    "ds_warn_kept_fraction": (0.05, "warn loudly when the kept fraction falls below this"),
    "format_penalty": (-1.0, "reward of a completion that breaks the format"),
    "similarity_backend": ("exact", "difflib | cydifflib | fast | exact | indel"),
    "prefill_think": (False, "end every prompt with '<think>' (format warm-up without training)"),
    "sft_target": ("step", "sft only: step (prompt -> <think>..</think>+action) | full (whole solution)"),
    "sft_think": ("brief", "sft only: monologue text used when the record has none"),
    "lora": (False, "train a LoRA adapter instead of all weights"),
    "lora_r": (16, ""), "lora_alpha": (32, ""), "lora_dropout": (0.0, ""), "lora_target_modules": ("all-linear", ""),
    "init_from": (None, "start from this checkpoint (curriculum, e.g. SRL -> RLVR)"),
    "dtype": ("auto", "auto | bfloat16 | float32 (weights as loaded)"),
    "plots": (True, "write PNG curves into output_dir/plots as training goes"),
    "random_init": (False, "build the model from its config with random weights (benchmarks only)"),
}


def test_srl_dataclass_keeps_keys_defaults_and_help():
    import dataclasses

    from swe_srl.train.config import SRLArguments

    fields = {f.name: f for f in dataclasses.fields(SRLArguments)}
    assert list(fields) == list(SRL_KEYS_BEFORE)
    for name, (default, help_text) in SRL_KEYS_BEFORE.items():
        assert fields[name].default == default and fields[name].metadata["help"] == help_text, name


def test_values_are_converted_and_checked_by_the_hf_parser():
    from transformers import HfArgumentParser

    from swe_srl.train.config import SRLArguments, parser_for

    p = parser_for(SRLArguments)
    assert isinstance(p.parser, HfArgumentParser)
    assert set(p.actions["rollout"].choices) == {"auto", "vllm-colocate", "vllm-server", "transformers"}
    s = load_settings(ROOT / "configs/math_srl_cpu.yaml", ["learning_rate=3e-4", "max_steps=5", "ds_eps=0",
                                                          "lora_target_modules=[q_proj, v_proj]", "eval_data=null",
                                                          "sft_think=123", "save_strategy=\"no\""])
    assert s.trl["learning_rate"] == 3e-4 and isinstance(s.trl["learning_rate"], float)   # YAML read '3e-4' as str
    assert s.ds_eps == 0.0 and isinstance(s.ds_eps, float) and s.trl["max_steps"] == 5
    assert s.lora_target_modules == ["q_proj", "v_proj"] and s.eval_data is None and s.sft_think == "123"
    assert s.trl["save_strategy"] == "no"
    assert load_settings(ROOT / "configs/math_srl_cpu.yaml").lora_target_modules == "all-linear"   # PEFT's value


@pytest.mark.parametrize("override,words", [
    ("max_steps=1.5", ["max_steps", "invalid int value"]),
    ("lr_scheduler_type=sometimes", ["lr_scheduler_type", "invalid choice", "cosine"]),   # choices of TRL's enum
    ("similarity_backend=levenshtein", ["similarity_backend", "invalid choice"]),
    ("sft_target=half", ["sft_target", "invalid choice"]),
    ("save_strategy=no", ["save_strategy", "got bool", "quote"]),     # YAML 1.1 reads `no` as false
    ("model=true", ["model", "got bool"]),
    ("batch_prompts=0", ["batch_prompts", ">= 1"]),
    ("lora_r=[1, 2]", ["lora_r", "list"]),
])
def test_parser_errors_are_one_line_and_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_settings(ROOT / "configs/math_srl_cpu.yaml", [override])
    msg = str(e.value)
    assert all(w in msg for w in words) and "\n" not in msg, msg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_resolved_yaml_round_trips(path, tmp_path):
    s = load_settings(path)
    out = tmp_path / "config.resolved.yaml"
    out.write_text(s.to_yaml())
    again = load_settings(out)
    assert again.resolved() == s.resolved() and again.derived == s.derived


def test_sft_defaults_and_trl_config_object(tmp_path):
    s = load_settings(None, ["method=sft", "model=m", "data=d.jsonl", f"output_dir={tmp_path}", "batch_prompts=8",
                             "per_device_train_batch_size=4", "bf16=false"])
    assert s.trl["learning_rate"] == 5e-6 and s.trl["lr_scheduler_type"] == "cosine"
    assert s.trl["warmup_steps"] == 0.3 and s.trl["num_train_epochs"] == 3
    from trl import SFTConfig

    from swe_srl.train.config import trl_config

    cfg = trl_config(s, "transformers")
    assert isinstance(cfg, SFTConfig) and cfg.gradient_accumulation_steps == 2 and cfg.learning_rate == 5e-6
