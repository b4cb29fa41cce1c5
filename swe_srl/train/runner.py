"""Build model, data, rewards and trainer from TrainSettings; run; write the run manifest.

The data file names its task (``swe_srl.tasks.task_for_data``); the task supplies the training rows and the reward
functions, so nothing here knows math or SWE.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from ..core.io import file_sha256, versions, write_json_atomic
from ..core.task import Task, data_file
from ..models import resolve_model
from ..tasks import task_for_data
from .callbacks import MetricsCallback
from .config import TrainSettings, load_settings, resolve_rollout, trl_config
from .data import build_dataset, reward_options, row_options
from .grpo import SRLGRPOTrainer


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=10).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return ""


def write_manifest(s: TrainSettings, rollout: str, extra: dict[str, Any] | None = None) -> Path:
    out = Path(s.trl["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    dpath = data_file(s.data)
    manifest = {
        "config": s.resolved(), "derived": s.derived, "rollout": rollout, "num_processes": s.num_processes,
        "config_file": s.source, "versions": versions(), "git_commit": git_commit(),
        "data": {"path": str(dpath), "sha256": file_sha256(dpath)},
        "python": platform.python_version(), "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    path = write_json_atomic(out / "manifest.json", manifest)
    (out / "config.resolved.yaml").write_text(s.to_yaml())
    return path


def _dtype(s: TrainSettings) -> torch.dtype:
    if s.dtype != "auto":
        return getattr(torch, s.dtype)
    if s.trl.get("bf16") and torch.cuda.is_available():
        return torch.bfloat16
    return torch.float32


def load_model_and_tokenizer(s: TrainSettings):
    base = resolve_model(s.model)
    src = s.init_from or base
    tok_src = src if (Path(src) / "tokenizer_config.json").exists() else base
    tok = AutoTokenizer.from_pretrained(tok_src)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = _dtype(s)
    if s.random_init:
        torch.manual_seed(int(s.trl.get("seed", 42)))
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base), dtype=dtype)
    elif s.init_from and (Path(s.init_from) / "adapter_config.json").exists():
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, s.init_from).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    return model, tok


def peft_config(s: TrainSettings):
    if not s.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                      target_modules=s.lora_target_modules, task_type="CAUSAL_LM")


def build_trainer(s: TrainSettings, *, model=None, tokenizer=None, rollout: str | None = None,
                  callbacks: list | None = None, task: Task | None = None):
    """The TRL trainer of a run. The task's reward functions are built first, so a run the task cannot serve
    (rlvr on SWE data, rlvr without math-verify) fails before any model is loaded."""
    rollout = rollout or resolve_rollout(s.rollout)
    task = task or task_for_data(s.data)
    rewards = task.reward_funcs(s.method, reward_options(s))
    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(s)
    ds = build_dataset(task, s.method, s.data, row_options(s, tokenizer))
    args = trl_config(s, rollout)
    cbs = [MetricsCallback(args.output_dir, plots=s.plots), *(callbacks or [])]
    if s.method == "sft":
        return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                          peft_config=peft_config(s), callbacks=cbs)
    return SRLGRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=ds,
                          processing_class=tokenizer, peft_config=peft_config(s), callbacks=cbs,
                          dynamic_sampling=s.dynamic_sampling, ds_eps=float(s.ds_eps), ds_max_rounds=s.ds_max_rounds,
                          ds_warn_kept_fraction=float(s.ds_warn_kept_fraction))


def last_checkpoint(output_dir: str | Path) -> str | None:
    d = Path(output_dir)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def run(s: TrainSettings, *, resume: bool = False, model=None, tokenizer=None):
    """Train; returns the trainer. resume=True continues from the last checkpoint in output_dir."""
    rollout = resolve_rollout(s.rollout)
    ckpt = None
    if resume:
        ckpt = last_checkpoint(s.trl["output_dir"])
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint-* directory in {s.trl['output_dir']}")
    trainer = build_trainer(s, model=model, tokenizer=tokenizer, rollout=rollout)
    if trainer.accelerator.is_main_process:
        write_manifest(s, rollout, {"resumed_from": ckpt})
    trainer.train(resume_from_checkpoint=ckpt)
    final = Path(s.trl["output_dir"]) / "final"
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process and trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(str(final))
    return trainer


def main_entry(resolved_yaml: str) -> None:
    """Entry used by ``accelerate launch -m swe_srl.train.entry``."""
    resume = os.environ.get("SWE_SRL_RESUME") == "1"
    run(load_settings(resolved_yaml), resume=resume)
