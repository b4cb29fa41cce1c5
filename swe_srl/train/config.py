"""Training configuration: one flat YAML mapping + ``--set key=value`` overrides, parsed by transformers'
``HfArgumentParser`` into two dataclasses:

  * ``SRLArguments`` (below): swe-srl's own keys (method, model, data, rollout, dynamic sampling, LoRA, ...);
  * TRL's ``GRPOConfig`` (methods srl / rlvr) or ``SFTConfig`` (method sft): every other key.

The parser checks types and choices from the dataclass annotations; its errors become a one-line ``ConfigError``
naming the key. A key of neither dataclass is an error. The batch keys TRL derives from our ``batch_prompts``
(gradient_accumulation_steps, steps_per_generation, generation_batch_size) and the rollout keys (use_vllm,
vllm_mode) are set by us and refused when given. The RL methods start from the paper's values (``RL_EXPLICIT``),
SFT from the paper's SFT defaults (``SFT_DEFAULTS``); the config overrides both.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

import yaml

from ..core.sampling import DEFAULT_DS_EPS, DEFAULT_KEEP_RATE_PRIOR, DEFAULT_SKIP_FLAT_AFTER
from ..generation import vllm_usable
from ..core.errors import SweSrlError

Method = Literal["srl", "sft", "rlvr"]
Rollout = Literal["auto", "vllm-colocate", "vllm-server", "transformers"]
METHODS = get_args(Method)
ROLLOUTS = get_args(Rollout)


class ConfigError(SweSrlError, ValueError):
    """A bad configuration. The message is one line and names the key."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SRLArguments:
    """swe-srl's own training keys (everything that is not a TRL config field)."""

    method: Method = field(default="srl", metadata=_help("srl | sft | rlvr"))
    model: Optional[str] = field(default=None, metadata=_help("hub id, local path or alias (smollm2-135m)"))
    data: Optional[str] = field(default=None, metadata=_help(
        "steps.jsonl (or a directory holding one); rlvr also takes {problem, answer} jsonl"))
    eval_data: Optional[str] = field(default=None, metadata=_help("held-out steps.jsonl (optional)"))
    max_samples: Optional[int] = field(default=None, metadata=_help("use only the first N records of data"))
    rollout: Rollout = field(default="auto", metadata=_help("auto | vllm-colocate | vllm-server | transformers"))
    batch_prompts: int = field(default=512, metadata=_help(
        "prompt groups (step instances) per optimizer step; SFT: examples per step"))
    dynamic_sampling: bool = field(default=True, metadata=_help(
        "keep only groups with reward std > ds_eps, refill until the batch is full"))
    ds_eps: float = field(default=DEFAULT_DS_EPS, metadata=_help("dynamic-sampling std threshold"))
    ds_max_rounds: int = field(default=8, metadata=_help(
        "generation rounds per optimizer step before training on what there is"))
    ds_warn_kept_fraction: float = field(default=0.05, metadata=_help(
        "warn loudly when the kept fraction falls below this"))
    format_penalty: float = field(default=-1.0, metadata=_help("reward of a completion that breaks the format"))
    similarity_backend: Literal["difflib", "cydifflib", "fast", "exact", "indel"] = field(
        default="exact", metadata=_help("difflib | cydifflib | fast | exact | indel"))
    prefill_think: bool = field(default=False, metadata=_help(
        "end every prompt with '<think>' (format warm-up without training)"))
    sft_target: Literal["steps", "outline", "reasoning", "step", "full"] = field(default="step", metadata=_help(
        "sft only: step (prompt -> <think>..</think>+action) | full (whole solution)"))
    sft_think: str = field(default="brief", metadata=_help("sft only: monologue text used when the record has none"))
    lora: bool = field(default=False, metadata=_help("train a LoRA adapter instead of all weights"))
    lora_r: int = field(default=16, metadata=_help(""))
    lora_alpha: int = field(default=32, metadata=_help(""))
    lora_dropout: float = field(default=0.0, metadata=_help(""))
    lora_target_modules: Union[str, list[str]] = field(default="all-linear", metadata=_help(""))
    init_from: Optional[str] = field(default=None, metadata=_help(
        "start from this checkpoint (curriculum, e.g. SRL -> RLVR)"))
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = field(default="auto", metadata=_help(
        "auto | bfloat16 | float32 (weights as loaded)"))
    plots: bool = field(default=True, metadata=_help("write PNG curves into output_dir/plots as training goes"))
    random_init: bool = field(default=False, metadata=_help(
        "build the model from its config with random weights (benchmarks only)"))

    def __post_init__(self) -> None:
        # the parser reads a list key as a list; PEFT's special value is the plain string
        if self.lora_target_modules == ["all-linear"]:
            self.lora_target_modules = "all-linear"
        for key in ("batch_prompts", "ds_max_rounds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r}: must be >= 1")


@dataclass
class RunArguments:
    """swe-srl keys added with issues #11 and #17: baselines / ablations, validation during training, the
    shared-prompt GRPO path. ``sft_target`` (in
    SRLArguments) also takes steps | outline | reasoning (step / full are the earlier names of steps / outline)."""

    srl_granularity: Literal["step", "holistic"] = field(default="step", metadata=_help(
        "srl only: step (one row per step, the paper's SRL) | holistic (one row per problem: whole solution vs the "
        "whole expert solution, the paper's one-step ablation)"))
    validation: bool = field(default=True, metadata=_help(
        "score the validation rows every eval_steps and at the end; keep output_dir/best"))
    eval_max_rows: int = field(default=64, metadata=_help(
        "validation rows scored per evaluation (the first N of the val split, fixed for the run)"))
    eval_max_new_tokens: Optional[int] = field(default=None, metadata=_help(
        "validation completion length (default: max_completion_length; sft: 256)"))
    eval_sampled: bool = field(default=True, metadata=_help(
        "also score one sampled completion per validation row (rollout temperature)"))
    eval_on_start: bool = field(default=False, metadata=_help("also evaluate before the first step (step 0)"))
    eval_batch_size: int = field(default=8, metadata=_help("validation prompts per generate() call"))
    shared_prompt: bool = field(default=True, metadata=_help(
        "GRPO: compute each group's prompt once with its G completions packed behind it (exact same loss and "
        "gradients as TRL's per-sequence path; falls back to it, with a log line, where it does not apply)"))
    shared_prefill: bool = field(default=True, metadata=_help(
        "GRPO with transformers rollouts: prefill each group's prompt once and copy its KV cache to the G rows "
        "(swe_srl.generation.shared_prefill_generate; vLLM has its own prefix caching)"))
    lm_head_token_chunk: int = field(default=0, metadata=_help(
        "tokens per tile of TRL's chunked log-prob LM head; 0 = auto: 256 on CPU (TRL's torch fallback holds ~8 "
        "tile-sized temporaries; swe_srl/train/lm_head.py), TRL's own value elsewhere"))
    cpu_malloc_mmap_threshold_mb: int = field(default=4, metadata=_help(
        "CPU (glibc): during the training forward/backward, tensors of at least this many MB are mmapped, so their "
        "pages go back to the OS when freed (lower peak RSS, some page-fault time; swe_srl/train/cpu_malloc.py); "
        "0 = leave malloc alone"))
    lm_head_vocab_chunk: int = field(default=0, metadata=_help(
        "vocabulary columns per tile of that LM head; 0 = auto: 8192 on CPU, TRL's own value elsewhere"))
    best_metric: str = field(default="auto", metadata=_help(
        "validation metric that picks best/ (higher is better); auto: val/answer_accuracy for rlvr (ties: "
        "val/step_reward_greedy), else val/step_reward_greedy"))
    # dynamic sampling that generates what it keeps (issue #17; docs/train.md "Dynamic sampling")
    ds_keep_rate_prior: float = field(default=DEFAULT_KEEP_RATE_PRIOR, metadata=_help(
        "keep rate assumed before any group is scored; a refill round generates ceil(missing / keep rate) groups"))
    ds_max_groups_per_round: Optional[int] = field(default=None, metadata=_help(
        "cap on the groups one generation round makes per process (default: 4 x the step's groups per process)"))
    ds_carry_max_groups: Optional[int] = field(default=None, metadata=_help(
        "surplus kept groups carried into the next step, per process (default: one step's groups; 0: none)"))
    ds_skip_flat_after: int = field(default=DEFAULT_SKIP_FLAT_AFTER, metadata=_help(
        "skip (and count) a prompt whose groups were flat on its last K visits (0: never skip)"))
    merge_lora_at_end: bool = field(default=True, metadata=_help(
        "lora runs: at the end, merge the adapter of best/ (else final/) into its base model and write the plain "
        "model to output_dir/merged (what `swe-srl eval` and vLLM load; same as `swe-srl export --merge-lora`)"))

    def __post_init__(self) -> None:
        for key in ("eval_max_rows", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r}: must be >= 1")
        for key in ("lm_head_token_chunk", "lm_head_vocab_chunk", "cpu_malloc_mmap_threshold_mb"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r}: must be >= 0 (0 = auto)")
        if not 0.0 < self.ds_keep_rate_prior <= 1.0:
            raise ConfigError("config key 'ds_keep_rate_prior': must be in (0, 1]")
        for key in ("ds_carry_max_groups", "ds_skip_flat_after"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r}: must be >= 0")
        if self.ds_max_groups_per_round is not None and self.ds_max_groups_per_round < 1:
            raise ConfigError("config key 'ds_max_groups_per_round': must be >= 1")


@dataclass
class AllArguments(SRLArguments, RunArguments):
    """Every swe-srl key (the parser's dataclass)."""

    def __post_init__(self) -> None:
        SRLArguments.__post_init__(self)
        RunArguments.__post_init__(self)


SRL_KEYS = tuple(f.name for f in dataclasses.fields(SRLArguments)) + tuple(
    f.name for f in dataclasses.fields(RunArguments))

# TRL keys we derive; setting them is an error
DERIVED = {
    "gradient_accumulation_steps": "derived from batch_prompts",
    "steps_per_generation": "derived from batch_prompts",
    "generation_batch_size": "derived from batch_prompts",
    "use_vllm": "set by rollout",
    "vllm_mode": "set by rollout",
}

# Paper defaults that must be explicit for the RL methods (docs/paper-fidelity.md explains each).
RL_EXPLICIT = {
    "num_generations": 8,
    "temperature": 1.0,
    "top_p": 1.0,
    "learning_rate": 5e-7,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "max_grad_norm": 1.0,
    "loss_type": "grpo",
    "scale_rewards": "group",
    "epsilon": 0.2,
    "epsilon_high": 0.2,
    "importance_sampling_level": "token",
    "mask_truncated_completions": False,
    "vllm_importance_sampling_correction": True,
    "vllm_enable_sleep_mode": True,
    "num_iterations": 1,
    "weight_decay": 0.0,
}

# SFT defaults (paper Table 5)
SFT_DEFAULTS = {
    "learning_rate": 5e-6,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.3,        # a float < 1 is a ratio in transformers 5
    "num_train_epochs": 3,
}


@dataclass
class TrainSettings(AllArguments):
    """A parsed config: the SRL keys (the inherited ``SRLArguments`` fields, as the parser typed them) and ``trl``,
    the TRL config keywords as parsed (without the derived ones; ``trl_kwargs`` adds them)."""

    trl: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    source: Optional[str] = None
    num_processes: int = 1
    accelerate_config: Optional[str] = None

    def srl_values(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SRL_KEYS}

    def resolved(self) -> dict[str, Any]:
        return {**self.srl_values(), **self.trl}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


def trl_config_class(method: str) -> type:
    if method == "sft":
        from trl import SFTConfig

        return SFTConfig
    from trl import GRPOConfig

    return GRPOConfig


# ---- parsing through HfArgumentParser ----------------------------------------------------------------------------

class _Parser:
    """HfArgumentParser over one dataclass; a mapping goes in as ``--key=value`` arguments, so argparse converts and
    checks every value with the type / choices HfArgumentParser derived from the annotations."""

    def __init__(self, cls: type) -> None:
        from transformers import HfArgumentParser
        from transformers.hf_argparser import string_to_bool

        class Parser(HfArgumentParser):
            def error(self, message: str):  # argparse would print usage and exit
                raise ConfigError(f"config: {message}")

        self.cls = cls
        self.parser = Parser(cls, exit_on_error=False, allow_abbrev=False)
        self.actions: dict[str, argparse.Action] = {}
        for a in self.parser._actions:      # the first action of a key (HF adds a --no_KEY one after bools)
            if a.option_strings and a.dest != "help":
                self.actions.setdefault(a.dest, a)
        self.bool_keys = {k for k, a in self.actions.items() if a.type is string_to_bool}
        self.list_keys = {k for k, a in self.actions.items() if a.nargs == "+"}

    def default(self, key: str) -> Any:
        return self.parser.get_default(key)

    def argv(self, mapping: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for key, value in mapping.items():
            if value is None:
                continue                               # set after parsing (argparse has no "None" literal)
            if key in self.bool_keys:
                if not isinstance(value, bool):
                    raise ConfigError(f"config key {key!r}: expected true or false, got {type(value).__name__} "
                                      f"{value!r}")
                out.append(f"--{key}={str(value).lower()}")
            elif isinstance(value, bool):
                raise ConfigError(f"config key {key!r}: expected {self._type_name(key)}, got bool {value!r} "
                                  f"(YAML reads yes/no/on/off as booleans: quote the value)")
            elif key in self.list_keys:
                items = value if isinstance(value, list) else [value]
                out += [f"--{key}", *(str(v) for v in items)]
            elif isinstance(value, list):
                raise ConfigError(f"config key {key!r}: expected {self._type_name(key)}, got a list")
            elif isinstance(value, dict):
                out.append(f"--{key}={json.dumps(value)}")
            else:
                out.append(f"--{key}={value}")
        return out

    def _type_name(self, key: str) -> str:
        a = self.actions[key]
        if a.choices:
            return "one of " + "|".join(map(str, a.choices))
        return getattr(a.type, "__name__", "a value")

    def parse(self, mapping: dict[str, Any]) -> dict[str, Any]:
        """Every field of the dataclass as argparse sees it: ``mapping`` converted and checked, the parser's defaults
        for the rest (HfArgumentParser has none for a str|list field: use the given keys and the dataclass default)."""
        try:
            ns, rest = self.parser.parse_known_args(self.argv(mapping))
        except argparse.ArgumentError as e:
            key = (e.argument_name or "").split("/")[0].lstrip("-").replace("-", "_")
            raise ConfigError(f"config key {key!r}: {e.message}" if key else f"config: {e.message}") from None
        if rest:
            raise ConfigError(f"config: could not read {' '.join(rest)!r}")
        values = vars(ns)
        values.update({k: None for k, v in mapping.items() if v is None})
        return values


@functools.lru_cache(maxsize=None)
def parser_for(cls: type) -> _Parser:
    return _Parser(cls)


# ---- loading -----------------------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: no such file {str(p)!r}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config: {p}: expected a mapping of key: value")
    return loaded


def load_settings(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                  extra: dict[str, Any] | None = None, *, num_processes: int | None = None,
                  accelerate_config: str | None = None) -> TrainSettings:
    """Read a YAML config, apply ``key=value`` overrides (then ``extra``), parse, check, fill defaults."""
    raw: dict[str, Any] = _read_yaml(path) if path is not None else {}
    for o in overrides:
        k, v = parse_override(o)
        raw[k] = v
    raw.update({k: v for k, v in (extra or {}).items() if v is not None})

    method = raw.get("method", "srl")
    if method not in METHODS:
        raise ConfigError(f"config key 'method': expected one of {'|'.join(METHODS)}, got {method!r}")
    trl_cls = trl_config_class(method)
    trl_parser = parser_for(trl_cls)
    srl_raw: dict[str, Any] = {}
    trl_raw: dict[str, Any] = dict(SFT_DEFAULTS if method == "sft" else RL_EXPLICIT)
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r}: keys must be strings")
        if key in SRL_KEYS:
            srl_raw[key] = value
        elif key in DERIVED:
            raise ConfigError(f"config key {key!r}: {DERIVED[key]}; do not set it")
        elif key in trl_parser.actions:
            trl_raw[key] = value
        else:
            raise ConfigError(f"config key {key!r}: unknown (neither a swe-srl key nor a TRL {trl_cls.__name__} "
                              f"field)")

    srl_values = parser_for(AllArguments).parse(srl_raw)
    trl_values = trl_parser.parse(trl_raw)
    srl = {k: srl_values[k] for k in srl_raw}          # the dataclass fills the defaults
    trl = {k: trl_values[k] for k in trl_raw}
    for key in ("model", "data"):
        if not srl.get(key):
            raise ConfigError(f"config key {key!r}: required")
    if not trl.get("output_dir"):
        raise ConfigError("config key 'output_dir': required")

    s = TrainSettings(**srl, trl=trl, source=str(path) if path else None,
                      num_processes=num_processes or int(os.environ.get("WORLD_SIZE", "1")),
                      accelerate_config=accelerate_config)
    s.derived = derive_batch(s, trl_values)
    return s


def derive_batch(s: TrainSettings, trl_values: dict[str, Any]) -> dict[str, Any]:
    """batch_prompts (groups per optimizer step) -> TRL's per-device micro-batches and accumulation.
    ``trl_values``: every TRL field as parsed (defaults included)."""
    nproc = s.num_processes
    per_dev = int(trl_values["per_device_train_batch_size"])
    if s.method == "sft":
        total = s.batch_prompts
        if total % (per_dev * nproc):
            raise ConfigError(f"config key 'batch_prompts': {total} is not a multiple of per_device_train_batch_size "
                              f"({per_dev}) x processes ({nproc})")
        return {"per_device_train_batch_size": per_dev, "gradient_accumulation_steps": total // (per_dev * nproc)}
    g = int(trl_values["num_generations"])
    if g < 2:
        raise ConfigError("config key 'num_generations': GRPO needs at least 2 rollouts per prompt")
    total = s.batch_prompts * g
    if total % (per_dev * nproc):
        raise ConfigError(f"config key 'per_device_train_batch_size': batch_prompts x num_generations = {total} is not "
                          f"a multiple of per_device_train_batch_size ({per_dev}) x processes ({nproc})")
    if s.batch_prompts % nproc:
        raise ConfigError(f"config key 'batch_prompts': {s.batch_prompts} groups do not split over {nproc} processes")
    accum = total // (per_dev * nproc)
    return {"per_device_train_batch_size": per_dev, "gradient_accumulation_steps": accum,
            "steps_per_generation": accum}


def resolve_rollout(rollout: str) -> str:
    if rollout != "auto":
        return rollout
    return "vllm-colocate" if vllm_usable() else "transformers"


def trl_kwargs(s: TrainSettings, rollout: str) -> dict[str, Any]:
    """Everything the TRL config constructor receives."""
    kw = dict(s.trl)
    kw.update(s.derived)
    if s.method != "sft":
        kw["use_vllm"] = rollout.startswith("vllm")
        if kw["use_vllm"]:
            kw["vllm_mode"] = "colocate" if rollout == "vllm-colocate" else "server"
        else:
            kw["vllm_mode"] = "colocate"  # unused without vLLM, pinned for the record
    kw.setdefault("report_to", [])
    kw.setdefault("logging_steps", 1)
    kw.setdefault("save_strategy", "steps")
    kw.setdefault("save_steps", 50)
    kw.setdefault("remove_unused_columns", False)
    kw.setdefault("logging_strategy", "steps")
    return kw


def trl_config(s: TrainSettings, rollout: str):
    """The TRL config object (GRPOConfig / SFTConfig) of a run; built only when training (it checks the device)."""
    return trl_config_class(s.method)(**trl_kwargs(s, rollout))


def launch_command(s: TrainSettings, resolved_path: str) -> list[str]:
    """The command that runs this config: accelerate launch for several processes, else this interpreter."""
    entry = ["-m", "swe_srl.train.entry", resolved_path]
    if s.num_processes > 1:
        cmd = ["accelerate", "launch", "--num_processes", str(s.num_processes)]
        if s.accelerate_config:
            cmd += ["--config_file", s.accelerate_config]
        else:   # torchrun-style launcher (one process per rank; on a CPU machine gloo), on a free local port
            cmd += ["--multi_gpu", "--main_process_port", "0"]
        return cmd + entry
    return [sys.executable] + entry


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def describe(s: TrainSettings, rollout: str) -> str:
    """Human-readable resolved configuration (for --dry-run), with the validation schedule."""
    out = {"swe_srl": s.srl_values(), "rollout_resolved": rollout, "derived": s.derived, "trl": s.trl,
           "validation": schedule(s)}
    return json.dumps(out, indent=2, default=str)


# ---- validation schedule (swe_srl.train.validation runs it) --------------------------------------------------------

VAL_METRICS = ("val/step_reward_greedy", "val/step_reward_sampled", "val/format_rate_greedy",
               "val/similarity_wellformed_greedy", "val/similarity/<tool>_greedy", "val/answer_accuracy")


def best_metric_name(s: AllArguments) -> str:
    if s.best_metric != "auto":
        return s.best_metric
    return "val/answer_accuracy" if s.method == "rlvr" else "val/step_reward_greedy"


def eval_every(s: TrainSettings) -> Any:
    """The validation cadence: TRL/transformers' ``eval_steps`` (an int, or a float < 1 = a fraction of the
    run's steps), else ``save_steps``; transformers' own evaluation loop stays off (eval_strategy "no")."""
    every = s.trl.get("eval_steps")
    return every if every is not None else s.trl.get("save_steps", 50)


def eval_new_tokens(s: TrainSettings) -> int:
    if s.eval_max_new_tokens:
        return int(s.eval_max_new_tokens)
    if s.method == "sft":
        return 256
    return int(s.trl.get("max_completion_length") or 256)


def schedule(s: TrainSettings) -> dict[str, Any]:
    """What validation will do (printed by --dry-run, recorded in the manifest)."""
    if not s.validation:
        return {"enabled": False}
    return {
        "enabled": True,
        "rows": (f"eval_data {s.eval_data}: its val rows (all rows if it has none)" if s.eval_data
                 else f"the val split of data (meta.split == 'val')") + f", first {s.eval_max_rows}",
        "every_steps": eval_every(s), "at_end": True, "at_start": s.eval_on_start,
        "generations": ["greedy"] + (["sampled (T=%s, 1 per row)" % s.trl.get("temperature", 1.0)]
                                     if s.eval_sampled else []),
        "max_new_tokens": eval_new_tokens(s),
        "metrics": [m for m in VAL_METRICS if s.method == "rlvr" or m != "val/answer_accuracy"],
        "best_metric": best_metric_name(s) + (" (ties: val/step_reward_greedy)"
                                              if best_metric_name(s) == "val/answer_accuracy" else ""),
        "best_dir": str(Path(s.trl["output_dir"]) / "best"),
        "log": str(Path(s.trl["output_dir"]) / "metrics.jsonl") + " (val/* rows) and validation.jsonl",
    }
