"""Build model, data, rewards and trainer from TrainSettings; run; write the run manifest.

The data file names its task (``swe_srl.tasks.task_for_data``); the task supplies the training rows and the reward
functions, so nothing here knows math or SWE. Only the train split is trained on; the val split is scored during
training (``validation.ValidationCallback``) and picks ``output_dir/best``; ``final/`` is the last step.
"""

from __future__ import annotations

import contextlib
import json
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

from ..core.errors import SweSrlError, first_line
from ..core.io import OutputLock, file_sha256, versions, write_json_atomic
from ..core.task import Task, TaskError, data_file
from ..models import resolve_model
from ..tasks import task_for_data
from .callbacks import MetricsCallback
from .config import (TrainSettings, best_metric_name, eval_every, eval_new_tokens, load_settings, resolve_rollout,
                     schedule, trl_config)
from .data import build_dataset, reward_options, row_options, validation_rows
from . import lm_head
from .cpu_malloc import MallocPolicy, policy_callback
from .export import merge_lora, merged_dir
from .grpo import SRLGRPOTrainer
from .preflight import check_inputs
from .validation import ValidationCallback
from .vllm_cpu import VLLMSRLGRPOTrainer


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
        "validation": schedule(s),
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
    metrics_cb = MetricsCallback(args.output_dir, plots=s.plots)
    cbs = [metrics_cb, *(callbacks or [])]
    val_cb = validation_callback(s, task, tokenizer, args.output_dir)
    if val_cb is not None:
        val_cb.metrics_log = metrics_cb
        cbs.insert(0, val_cb)           # before MetricsCallback: its end-of-run row lands before the log closes
    if s.method == "sft":
        tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                        peft_config=peft_config(s), callbacks=cbs)
        lm_head.set_tiles(tr.accelerator.device.type, s.lm_head_token_chunk, s.lm_head_vocab_chunk)   # CPU tiles
        policy = MallocPolicy(s.cpu_malloc_mmap_threshold_mb, tr.accelerator.device.type)
        if policy.active:     # training steps mmap their tensors; validation generates under the heap policy
            tr.callback_handler.callbacks.insert(0, policy_callback(policy, sft=True))
        if len(tr.train_dataset) == 0:      # TRL drops rows whose completion max_length truncated away
            raise TaskError(f"config key 'max_length': {s.trl.get('max_length')} tokens leave no completion token "
                            f"in any of the {len(ds)} sft rows; raise it")
        return tr
    # vLLM rollouts: TRL's integration + the CPU / one-sync-per-step workarounds (swe_srl/train/vllm_cpu.py)
    trainer_cls = VLLMSRLGRPOTrainer if rollout.startswith("vllm") else SRLGRPOTrainer
    tr = trainer_cls(model=model, reward_funcs=rewards, args=args, train_dataset=ds,
                     processing_class=tokenizer, peft_config=peft_config(s), callbacks=cbs,
                     dynamic_sampling=s.dynamic_sampling, ds_eps=float(s.ds_eps), ds_max_rounds=s.ds_max_rounds,
                     ds_warn_kept_fraction=float(s.ds_warn_kept_fraction), shared_prompt=s.shared_prompt,
                     ds_keep_rate_prior=float(s.ds_keep_rate_prior),
                     ds_max_groups_per_round=s.ds_max_groups_per_round,
                     ds_carry_max_groups=s.ds_carry_max_groups, ds_skip_flat_after=s.ds_skip_flat_after,
                     lm_head_token_chunk=s.lm_head_token_chunk, lm_head_vocab_chunk=s.lm_head_vocab_chunk,
                     shared_prefill=s.shared_prefill, cpu_malloc_mmap_threshold_mb=s.cpu_malloc_mmap_threshold_mb)
    if tr.malloc_policy.active:     # validation (at the end of a step) generates under the heap policy
        tr.callback_handler.callbacks.insert(0, policy_callback(tr.malloc_policy, sft=False))
    return tr


def validation_callback(s: TrainSettings, task: Task, tokenizer, output_dir: str) -> ValidationCallback | None:
    """The run's validation (None when off or when there are no validation rows: said once on stderr)."""
    if not s.validation:
        return None
    steps, answers, source = validation_rows(task, s, tokenizer)
    if not (steps or answers):
        print(f"[swe-srl] validation: {source} has no val rows; no validation, no best/ (final/ only)",
              file=sys.stderr)
        return None
    return ValidationCallback(task, steps, answers, output_dir, every=eval_every(s), max_new_tokens=eval_new_tokens(s),
                              sampled=s.eval_sampled, temperature=float(s.trl.get("temperature", 1.0)),
                              top_p=float(s.trl.get("top_p", 1.0)), batch_size=s.eval_batch_size,
                              think_prefilled=s.prefill_think, format_penalty=s.format_penalty,
                              backend=s.similarity_backend, best_metric=best_metric_name(s),
                              on_start=s.eval_on_start, seed=int(s.trl.get("seed", 42)), source=source)


def last_checkpoint(output_dir: str | Path) -> str | None:
    d = Path(output_dir)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def run(s: TrainSettings, *, resume: bool = False, model=None, tokenizer=None):
    """Train; returns the trainer. resume=True continues from the last checkpoint in output_dir."""
    main = int(os.environ.get("RANK", "0")) == 0     # one writer per output_dir: the main process holds the lock
    with OutputLock(s.trl["output_dir"], what="output_dir") if main else contextlib.nullcontext():
        check_inputs(s, model=model is None)   # one-line errors on a bad model path / data line, before any load
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
        if trainer.accelerator.is_main_process:
            record_best(Path(s.trl["output_dir"]))
            if s.lora and s.merge_lora_at_end:
                merge_at_end(Path(s.trl["output_dir"]))
        return trainer


def merge_at_end(out: Path) -> Path | None:
    """LoRA run: best/ (else final/) merged into its base model at ``out/merged``; recorded in the manifest. A failed
    merge is reported on stderr and leaves the run's adapters as they are (``swe-srl export --merge-lora`` redoes it)."""
    found = merged_dir(out)
    if found is None:
        return None
    adapter, target = found
    try:
        path = merge_lora(adapter, target, overwrite=True)
    except (SweSrlError, OSError) as e:
        print(f"[swe-srl] merge_lora_at_end: {adapter}: not merged ({first_line(str(e))}); run `swe-srl export "
              f"--merge-lora {adapter} OUT` by hand", file=sys.stderr)
        return None
    man_path = out / "manifest.json"
    if man_path.exists():
        man = json.loads(man_path.read_text())
        man["merged"] = {"path": "merged", "from": adapter.name}
        write_json_atomic(man_path, man)
    print(f"[swe-srl] merged the LoRA adapter of {adapter} into {path}", file=sys.stderr)
    return path


def record_best(out: Path) -> dict[str, Any] | None:
    """Copy best/best.json (the step and metric that picked best/) into the manifest."""
    best_file = out / "best" / "best.json"
    man_path = out / "manifest.json"
    if not best_file.exists() or not man_path.exists():
        return None
    best = json.loads(best_file.read_text())
    man = json.loads(man_path.read_text())
    man["best"] = {"path": "best", "step": best["step"], "metric": best["metric"], "value": best["value"],
                   "tie_break": best.get("tie_break")}
    man["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(man_path, man)
    return man["best"]


def main_entry(resolved_yaml: str) -> None:
    """Entry used by ``accelerate launch -m swe_srl.train.entry``."""
    resume = os.environ.get("SWE_SRL_RESUME") == "1"
    run(load_settings(resolved_yaml), resume=resume)
