"""The SWE collector: native trajectory files -> step records (``steps.jsonl``) + ``manifest.json`` + stats PNG.

One StepStore unit = one trajectory (a JSON file, or one row of a jsonl file); a file that cannot be read at all
is one skipped unit. Rerunning into the same directory skips finished units (crash-safe via StepStore); the
options that change the records are kept in ``options.json`` and a resume with other ones is refused.
Middle layer: the caller passes the tokenizer for token budgets (swe_srl.commands.collect loads it).
Per-unit statistics live in the StepStore ledger, so the manifest is rebuilt from the ledger on every run and
always describes the whole directory (this run and earlier ones).

Dataset inputs (``.parquet`` / ``.arrow`` / ``.jsonl`` / ``.json`` arrays, ``hf://`` specs from ``--dataset``) are one
unit per row and are streamed (``iter_units``): neither a file's rows nor its records are ever held together.
Filters, each a named skip reason counted in the manifest: the success filter (``--only-resolved``, on by default
for dataset inputs, honouring each dataset's success field), ``--ids-file``, ``--model-filter``, ``--exclude-eval``
(eval-set decontamination) and ``--future-leak`` (steps reading git history after the base commit).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swe_srl.core.io import (OutputLock, ResumeGuard, ResumeMismatch, deferred_interrupts, init_pool_worker,
                             reraise_interrupted, stopping, versions)
from swe_srl.core.schema import SCHEMA_VERSION, StepRecord
from swe_srl.core.store import StepStore, length_stats, read_ledger

from .prompting import build_messages, system_prompt_for_trajectory
from .fidelity import histogram as fidelity_histogram
from .fidelity import merge_histograms, shares, status_of
from .replay import replay_trajectory
from .splits import SplitOptions, apply_swe_splits, finish_pending_swap
from .sandbox import close_live_sandboxes, prune_orphans_once
from .sandbox.images import instance_image_name
from .trajectories import FORMAT_CHOICES, HUB_PREFIX, TrajectoryFormatError, discover, iter_file
from .trajectories import DatasetUnavailable, RowOptions
from .trajectories.datasets import is_row_file
from .trajectories.hazards import EvalSetError, EvalSets, future_leak_steps, load_eval_sets
from .trajectory import Trajectory
from swe_srl.core.errors import SweSrlError
from swe_srl.core.io import file_sha256

REPLAY_CHOICES = ("none", "docker", "local")
DIVERGENCE_CHOICES = ("keep", "drop", "stop")
#: --on-diverged: which observation of a diverged step the training rows show (see _finish_replay)
ON_DIVERGED_CHOICES = ("keep-recorded", "use-replayed", "drop")
FUTURE_LEAK_CHOICES = ("drop-trajectory", "drop-steps", "keep")
#: prompts longer than this many tokens (estimated as chars / EST_CHARS_PER_TOKEN without a tokenizer) are warned
#: about: a 32k-context model cannot train on them
WARN_PROMPT_TOKENS = 32768
EST_CHARS_PER_TOKEN = 3.5
#: files streamed in the main process even with --workers (their per-file result list would not fit in memory)
STREAM_BYTES = 64 * 1024 * 1024
STATS_PNG = "stats.png"
OPTIONS_FILE = "options.json"
#: options that change the step records; a resume with different values is refused
BUILD_OPTIONS = ("fmt", "history_k", "obs_max_chars", "obs_max_tokens", "max_prompt_tokens", "tokenizer",
                 "only_resolved", "replay", "on_divergence", "sandbox_map", "success_field", "model_filter",
                 "ids_file", "exclude_eval", "future_leak", "on_diverged", "sandbox_network")


class CollectError(SweSrlError, RuntimeError):
    """A usage error of the collector (one line, names the option/file)."""


@dataclass
class CollectOptions:
    fmt: str = "auto"
    history_k: int | None = None
    obs_max_chars: int | None = None
    obs_max_tokens: int | None = None
    max_prompt_tokens: int | None = None
    tokenizer: str | None = None
    #: True/False, or None = on for dataset inputs (dataset files, --dataset, rows with a success column), off for
    #: native agent logs
    only_resolved: bool | None = None
    success_field: str = "auto"        # auto | COLUMN | !COLUMN (inverted) | all | none (datasets.row_success)
    model_filter: str | None = None    # regex searched in the row's model / model_name / run_id
    ids_file: str | None = None        # keep only these instance ids (one per line, or a JSON list)
    exclude_eval: str | None = None    # "verified,lite" and/or files: drop trajectories of eval-set instances
    future_leak: str = "drop-trajectory"
    replay: str = "none"
    sandbox_map: str | None = None
    on_divergence: str = "keep"
    #: diverged steps in training rows: keep-recorded (default) | use-replayed | drop (see _finish_replay)
    on_diverged: str = "keep-recorded"
    #: per-command replay timeout; None = the trajectory's recorded one, else environments.replay.DEFAULT_TIMEOUT
    replay_timeout: float | None = None
    #: replay containers reach the package index only (off: no network at all)
    sandbox_network: bool = False
    workers: int = 1
    limit: int | None = None

    def validate(self) -> None:
        if self.fmt not in FORMAT_CHOICES:
            raise CollectError(f"--format: unknown format {self.fmt!r} (choose from {', '.join(FORMAT_CHOICES)})")
        if self.replay not in REPLAY_CHOICES:
            raise CollectError(f"--replay: expected one of {REPLAY_CHOICES}, got {self.replay!r}")
        if self.on_divergence not in DIVERGENCE_CHOICES:
            raise CollectError(f"--on-divergence: expected one of {DIVERGENCE_CHOICES}, got {self.on_divergence!r}")
        if self.on_diverged not in ON_DIVERGED_CHOICES:
            raise CollectError(f"--on-diverged: expected one of {', '.join(ON_DIVERGED_CHOICES)}, got "
                               f"{self.on_diverged!r}")
        if self.replay_timeout is not None and not self.replay_timeout > 0:
            raise CollectError(f"--timeout: must be > 0 seconds, got {self.replay_timeout}")
        if self.sandbox_network and self.replay != "docker":
            raise CollectError("--sandbox-network: needs --replay docker (the local backend is not isolated)")
        for name in ("history_k", "obs_max_chars", "obs_max_tokens", "max_prompt_tokens", "limit"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise CollectError(f"--{name.replace('_', '-')}: must be >= 0, got {v}")
        if (self.max_prompt_tokens is not None or self.obs_max_tokens is not None) and not self.tokenizer:
            raise CollectError("--max-prompt-tokens / --obs-max-tokens need --tokenizer")
        if self.workers < 1:
            raise CollectError(f"--workers: must be >= 1, got {self.workers}")
        if self.future_leak not in FUTURE_LEAK_CHOICES:
            raise CollectError(f"--future-leak: expected one of {', '.join(FUTURE_LEAK_CHOICES)}, got "
                               f"{self.future_leak!r}")
        if self.model_filter is not None:
            try:
                re.compile(self.model_filter)
            except re.error as e:
                raise CollectError(f"--model-filter: invalid regex ({e})") from None
        if self.ids_file is not None and not Path(self.ids_file).is_file():
            raise CollectError(f"--ids-file {self.ids_file}: no such file")


# -- tokens -----------------------------------------------------------------------------------------------------
def prompt_token_count(prompt: list[dict[str, str]], tokenizer: Any) -> int:
    """Tokens of the prompt as the model sees it (chat template + generation prompt when the tokenizer has one)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return len(ids)
    return len(tokenizer.encode("\n".join(m["content"] for m in prompt), add_special_tokens=False))


# -- step building --------------------------------------------------------------------------------------------
def unit_tag(unit: str) -> str:
    return hashlib.sha1(unit.encode("utf-8")).hexdigest()[:8]


def build_steps(traj: Trajectory, *, unit: str | None = None, history_k: int | None = None,
                obs_max_chars: int | None = None, obs_max_tokens: int | None = None,
                max_prompt_tokens: int | None = None, tokenizer: Any = None,
                observations: list[str | None] | None = None) -> tuple[list[StepRecord], dict[str, Any]]:
    """N actions -> N step records (minus steps over the token budget). Returns (records, build info).

    Step i's prompt = system prompt, issue, then rounds (action_j, observation_j) for j < i (the last
    ``history_k`` of them); its target = action_i. ``observations`` overrides the recorded ones (replay).
    """
    unit = unit or f"{traj.source}#{traj.instance_id}"
    tag = unit_tag(unit)
    n = len(traj.steps)
    obs = observations if observations is not None else [s.observation for s in traj.steps]
    rounds = [(s.action, o) for s, o in zip(traj.steps, obs)]
    records: list[StepRecord] = []
    prompt_chars: list[int] = []
    prompt_tokens: list[int] = []
    dropped = 0
    base_meta = {"source": traj.source, "format": traj.format, "trajectory": unit, "repo": traj.repo,
                 "resolved": traj.resolved, "history_k": history_k}
    if traj.meta.get("dataset"):
        base_meta["dataset"] = traj.meta["dataset"]
    system_prompt = system_prompt_for_trajectory(traj)
    for i, st in enumerate(traj.steps):
        prompt = build_messages(traj.issue, rounds[:i], history_k=history_k, obs_max_chars=obs_max_chars,
                                obs_max_tokens=obs_max_tokens, tokenizer=tokenizer, system_prompt=system_prompt)
        if max_prompt_tokens is not None:
            ntok = prompt_token_count(prompt, tokenizer)
            if ntok > max_prompt_tokens:
                dropped += 1
                continue
            prompt_tokens.append(ntok)
        meta = dict(base_meta)
        meta["expert_thought"] = st.thought
        if "role" in st.meta:
            meta["role"] = st.meta["role"]
        if "query" in st.meta:
            meta["expert_query_messages"] = len(st.meta["query"])
        records.append(StepRecord(instance_id=traj.instance_id, step_index=i, num_steps=n, prompt=prompt,
                                  target=st.action, task="swe", tool=st.tool, meta=meta,
                                  id=f"{traj.instance_id}@{tag}/{i}"))
        prompt_chars.append(sum(len(m["content"]) for m in prompt))
    info: dict[str, Any] = {"n_actions": n, "dropped_over_budget": dropped,
                            "excluded_actions": dict(traj.meta.get("excluded_actions") or {}),
                            "tools": dict(Counter(r.tool for r in records)),
                            "prompt_chars": prompt_chars, "target_chars": [len(r.target) for r in records]}
    if max_prompt_tokens is not None:
        info["prompt_tokens"] = prompt_tokens
    return records, info


# -- per-file work (runs in worker processes when --workers > 1; replays run in threads, see _CollectRun) --
@dataclass
class UnitResult:
    unit: str
    status: str                       # "ok" | "skipped"
    info: dict[str, Any] = field(default_factory=dict)
    records: list[StepRecord] = field(default_factory=list)
    trajectory: Trajectory | None = None   # kept only when a replay follows


class _Filters:
    """The loaded filter inputs of one option set (ids file, eval sets, model regex); cached per process."""

    _cache: dict[tuple[Any, ...], "_Filters"] = {}

    def __init__(self, opts: CollectOptions) -> None:
        self.model = re.compile(opts.model_filter) if opts.model_filter else None
        self.ids: frozenset[str] | None = None
        if opts.ids_file:
            text = Path(opts.ids_file).read_text(encoding="utf-8")
            if text.lstrip().startswith("["):
                self.ids = frozenset(str(x) for x in json.loads(text))
            else:
                self.ids = frozenset(x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#"))
        self.eval: EvalSets | None = None
        if opts.exclude_eval:
            try:
                self.eval = load_eval_sets(opts.exclude_eval)
            except EvalSetError as e:
                raise CollectError(str(e)) from None

    @classmethod
    def of(cls, opts: CollectOptions) -> "_Filters":
        stamp = None
        if opts.ids_file:
            st = Path(opts.ids_file).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        key = (opts.model_filter, opts.ids_file, stamp, opts.exclude_eval)
        if key not in cls._cache:
            cls._cache[key] = cls(opts)
        return cls._cache[key]


def only_resolved_applies(traj: Trajectory, opts: CollectOptions) -> bool:
    """--only-resolved as set, or (unset) on for dataset inputs: dataset files, --dataset rows, rows with a success
    column."""
    if opts.only_resolved is not None:
        return opts.only_resolved
    return bool(traj.meta.get("dataset_file") or traj.meta.get("has_success_column"))


def _filter_reason(traj: Trajectory, opts: CollectOptions) -> str | None:
    """Why a trajectory is not used (``category: detail``), None to use it. May drop future-leak steps in place
    (``--future-leak drop-steps``)."""
    if not traj.steps:
        return "no_actions: the trajectory has no agent actions"
    f = _Filters.of(opts)
    if f.ids is not None and not ({traj.instance_id, traj.meta.get("traj_id"), traj.meta.get("row_id")} & f.ids):
        return f"not_in_ids_file: {traj.instance_id} is not in --ids-file"
    if f.model is not None:
        model = traj.meta.get("model")
        if not isinstance(model, str):
            return "model_filtered: the row names no model (--model-filter)"
        if not f.model.search(model):
            return f"model_filtered: {model}"[:200]
    if f.eval is not None:
        hit = f.eval.match(traj.instance_id, traj.repo, traj.base_commit)
        if hit:
            return f"eval_contaminated: {traj.instance_id} is in {hit}"
    if only_resolved_applies(traj, opts) and traj.resolved is not True:
        if traj.resolved is False:
            return "not_resolved: resolved=false" + (f" ({traj.meta['success_field']})"
                                                     if traj.meta.get("success_field") else "")
        if traj.meta.get("dataset_file") or traj.meta.get("has_success_column"):
            return ("resolved_unknown: the row has no success field (pass --success-field all if the dataset is "
                    "documented as all successful, or --no-only-resolved)")
        return "resolved_unknown: no evaluation report found (--only-resolved)"
    leaks = future_leak_steps(traj.steps, traj.base_commit)      # found (and counted) under every policy
    if leaks:
        traj.meta["future_leak_steps"] = len(leaks)
        if opts.future_leak == "drop-trajectory":
            first = min(leaks)
            return f"future_leak: step {first} {leaks[first]} (--future-leak drop-trajectory)"[:300]
        if opts.future_leak == "drop-steps":
            # the leaking rounds go entirely (neither a target nor in any later prompt's history)
            traj.steps = [st for i, st in enumerate(traj.steps) if i not in leaks]
            traj.meta["future_leak_dropped_steps"] = len(leaks)
            if not traj.steps:
                return "future_leak: every step reads future history"
    return None


def iter_units(path: str, opts: CollectOptions, done: frozenset[str] | set[str] = frozenset(), build: bool = True,
               *, tokenizer: Any = None) -> Iterator[UnitResult]:
    """The units of one input (file or ``hf://`` dataset), streamed one at a time: filtered, and built into step
    records unless ``build`` is false (a replay follows). Units in ``done`` are not even parsed."""
    rows = RowOptions(success_field=opts.success_field)
    for unit, item in iter_file(path, opts.fmt, rows=rows, skip=done):
        if unit in done:
            continue
        if isinstance(item, TrajectoryFormatError):
            yield UnitResult(unit, "skipped", {"format": "unknown", "reason": f"malformed: {item}", "source": path})
            continue
        reason = _filter_reason(item, opts)
        base = {"format": item.format, "source": item.source, "instance_id": item.instance_id,
                "resolved": item.resolved, "n_actions": len(item.steps),
                "excluded_actions": dict(item.meta.get("excluded_actions") or {})}
        for k in ("dataset", "success_field", "future_leak_steps", "future_leak_dropped_steps"):
            if item.meta.get(k) is not None:
                base[k] = item.meta[k]
        if reason:
            yield UnitResult(unit, "skipped", {**base, "reason": reason})
            continue
        if not build:
            yield UnitResult(unit, "ok", base, trajectory=item)
            continue
        records, info = build_steps(item, unit=unit, history_k=opts.history_k, obs_max_chars=opts.obs_max_chars,
                                    obs_max_tokens=opts.obs_max_tokens, max_prompt_tokens=opts.max_prompt_tokens,
                                    tokenizer=tokenizer)
        if not records:
            yield UnitResult(unit, "skipped", {**base, **info, "reason":
                                               "over_budget: every step is over --max-prompt-tokens"})
            continue
        yield UnitResult(unit, "ok", {**base, **info}, records)


def process_file(path: str, opts: CollectOptions, done: frozenset[str] = frozenset(),
                 build: bool = True, *, tokenizer: Any = None) -> list[UnitResult]:
    """All units of one input file as a list (see iter_units; used by the worker processes for small files)."""
    return list(iter_units(path, opts, done, build, tokenizer=tokenizer))


# -- replay -----------------------------------------------------------------------------------------------------
def load_sandbox_map(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise CollectError(file=path, field="--sandbox-map", reason=e.strerror or str(e)) from None
    except UnicodeDecodeError as e:
        raise CollectError(file=path, field="--sandbox-map", reason=f"not UTF-8 text (byte {e.start}); expected a "
                                                                  "JSON object") from None
    except json.JSONDecodeError as e:
        raise CollectError(file=path, line=e.lineno, field="--sandbox-map", reason=f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise CollectError(f"--sandbox-map {path}: expected an object mapping instance id -> image or "
                           f"{{repo_path, commit}}")
    return obj


def sandbox_for(traj: Trajectory, sandbox_map: dict[str, Any], backend: str) -> dict[str, Any]:
    """image / repo_path / commit of an instance: user map first, then the recorded image, then the SWE-bench
    instance image name (environments.sandbox.images.instance_image_name, the name swebench gives it)."""
    entry = sandbox_map.get(traj.instance_id)
    if isinstance(entry, str):
        return {"image": entry, "repo_path": None, "commit": None}
    if isinstance(entry, dict):
        return {"image": entry.get("image"), "repo_path": entry.get("repo_path"),
                "commit": entry.get("commit") or traj.base_commit}
    image = traj.meta.get("image") or instance_image_name(traj.instance_id)
    return {"image": image if backend == "docker" else None, "repo_path": None, "commit": traj.base_commit}


def _run_replay(res: UnitResult, opts: CollectOptions, replay: Callable[..., Any],
                smap: dict[str, Any]) -> tuple[dict[str, Any], Any, BaseException | None]:
    """The sandbox part of a replay (thread-safe; runs in the replay thread pool): (sandbox spec, result, error)."""
    traj = res.trajectory
    assert traj is not None
    sb = sandbox_for(traj, smap, opts.replay)
    try:
        kw: dict[str, Any] = {"base_commit": sb["commit"]} if sb.get("commit") else {}
        if opts.sandbox_network:
            kw["network"] = "index"
        rr = replay(traj, backend=opts.replay, image=sb["image"], repo_path=sb["repo_path"],
                    timeout=opts.replay_timeout, **kw)
    except Exception as e:  # a replay failure skips this trajectory, never the run
        return sb, None, e
    return sb, rr, None


STATUS_CHARS = {"exact": "e", "near": "n", "diverged": "d", "skipped": "s"}


def _step_entries(rr: Any, n: int) -> list[dict[str, Any]]:
    """Per-step fidelity entries of a replay result (engines that give only ``step_fidelity`` get raw entries)."""
    steps = list(getattr(rr, "steps", None) or [])
    if len(steps) == n:
        return steps
    fids = list(rr.step_fidelity or []) + [None] * n
    out = []
    for i in range(n):
        f = fids[i]
        st = status_of(f)
        if i in set(rr.diverged_steps or []):
            st = "diverged"
        out.append({"kind": "unknown", "fidelity": f, "fidelity_raw": f, "status": st, "method": "raw"})
    return out


def _drop_rows(records: list[StepRecord], info: dict[str, Any], drop: set[int]) -> list[StepRecord]:
    """Remove the rows of the given step indices (and their entries in the per-row statistics of ``info``)."""
    keep = [k for k, r in enumerate(records) if r.step_index not in drop]
    for key in ("prompt_chars", "target_chars", "prompt_tokens"):
        if isinstance(info.get(key), list) and len(info[key]) == len(records):
            info[key] = [info[key][k] for k in keep]
    kept = [records[k] for k in keep]
    info["tools"] = dict(Counter(r.tool for r in kept))
    info["dropped_diverged_context"] = len(records) - len(kept)
    return kept


def _finish_replay(res: UnitResult, opts: CollectOptions, sb: dict[str, Any], rr: Any, err: BaseException | None,
                   tokenizer: Any) -> UnitResult:
    """Fidelity bookkeeping + step building from a replay result (main thread: the tokenizer is not shared).

    A replay that failed (sandbox start, base-commit checkout, a run that broke: ``rr.error``) skips the trajectory
    with ``replay_error: <stage>: <reason>``; its recorded observations are never written as replayed ones.
    Training rows get the replayed observation of every exact/near step; a *diverged* step's observation follows
    ``--on-diverged``: ``keep-recorded`` (default: the expert's next action answers what the expert saw, so the
    recorded text keeps prompt and target consistent), ``use-replayed``, or ``drop`` (rows whose prompt holds a
    diverged observation are not written). Each row's ``meta["replay"]`` holds its own action's fidelity entry
    (kind, fidelity, fidelity_raw, status, method) and which observation text the row's history used."""
    traj = res.trajectory
    assert traj is not None
    base = dict(res.info)
    if err is not None:
        return UnitResult(res.unit, "skipped", {**base, "reason": f"replay_error: {type(err).__name__}: {err}"[:300]})
    n = len(traj.steps)
    entries = _step_entries(rr, n)
    fid = [e.get("fidelity") for e in entries if e.get("fidelity") is not None]
    check = dict(getattr(rr, "patch_check", None) or {})
    rinfo: dict[str, Any] = {
        "mean_fidelity": round(sum(fid) / len(fid), 4) if fid else None, "patch_match": rr.patch_match,
        "diverged_steps": [i for i, e in enumerate(entries) if e.get("status") == "diverged"],
        "error": rr.error, "stage": getattr(rr, "stage", None), "sandbox": sb,
        "histogram": fidelity_histogram(entries),
        "statuses": "".join(STATUS_CHARS.get(str(e.get("status")), "s") for e in entries),
        "submission_match": check.get("submission_match"), "whole_tree_match": check.get("whole_tree_match"),
        "patch_files": {"submitted": check.get("submitted_files", 0), "matched": check.get("matched_files", 0),
                        "mismatched": check.get("mismatched_files", [])},
        "tree_extra_files": check.get("tree_extra_files", []),
        "exec": getattr(rr, "exec_spec", None) or {}, "seconds": getattr(rr, "seconds", None),
        "timed_out_steps": list(getattr(rr, "timed_out_steps", None) or []),
    }
    base["replay"] = rinfo
    if rr.error:
        stage = getattr(rr, "stage", None) or "run"
        return UnitResult(res.unit, "skipped", {**base, "reason": f"replay_error: {stage}: {rr.error}"[:300]})
    diverged = set(rinfo["diverged_steps"])
    observations = []
    used = []
    for i, s in enumerate(traj.steps):
        o = rr.observations[i] if i < len(rr.observations) else None
        if o is None or (i in diverged and opts.on_diverged == "keep-recorded"):
            observations.append(s.observation)
            used.append("recorded")
        else:
            observations.append(o)
            used.append("replayed")
    if diverged:
        if opts.on_divergence == "drop":
            return UnitResult(res.unit, "skipped", {**base, "reason": "replay_diverged: dropped (--on-divergence "
                                                    "drop)"})
        if opts.on_divergence == "stop":
            first = min(diverged)
            # keep steps whose context is still faithful: targets 0..first (the action at `first` was taken on a
            # faithful context; its observation diverged, so later contexts are not)
            traj = Trajectory(**{**traj.__dict__, "steps": traj.steps[:first + 1]})
            observations = observations[:first + 1]
    records, info = build_steps(traj, unit=res.unit, history_k=opts.history_k, obs_max_chars=opts.obs_max_chars,
                                obs_max_tokens=opts.obs_max_tokens, max_prompt_tokens=opts.max_prompt_tokens,
                                tokenizer=tokenizer, observations=observations)
    if diverged and opts.on_diverged == "drop":
        k = opts.history_k
        drop = {i for i in range(len(traj.steps))
                if any(j in diverged for j in range(0 if k is None else max(0, i - k), i))}
        records = _drop_rows(records, info, drop)
    for r in records:
        i = r.step_index
        r.meta["replay"] = {**entries[i], "observation_in_history": used[i]}
    if not records:
        why = ("every step's prompt holds a diverged observation (--on-diverged drop)" if diverged and
               opts.on_diverged == "drop" else "every step is over --max-prompt-tokens")
        cat = "replay_diverged" if "diverged" in why else "over_budget"
        return UnitResult(res.unit, "skipped", {**base, **info, "reason": f"{cat}: {why}"})
    return UnitResult(res.unit, "ok", {**base, **info}, records)


def _apply_replay(res: UnitResult, opts: CollectOptions, replay: Callable[..., Any], smap: dict[str, Any],
                  tokenizer: Any) -> UnitResult:
    return _finish_replay(res, opts, *_run_replay(res, opts, replay, smap), tokenizer)


# -- manifest -----------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), **versions(("swe-srl", "transformers", "tokenizers"))}


def build_manifest(out_dir: Path, *, inputs: list[str], opts: CollectOptions, discovered: dict[str, Any],
                   started: float, run_stats: dict[str, Any]) -> dict[str, Any]:
    ledger = list(read_ledger(out_dir).values())
    per_format: dict[str, dict[str, Any]] = {}
    fmt_prompt_chars: dict[str, list[int]] = {}
    fmt_prompt_tokens: dict[str, list[int]] = {}
    non_actions: Counter[str] = Counter()
    hazards: dict[str, Any] = {"eval_contaminated": {}, "future_leak": {"trajectories_with_leak": 0,
                                                                        "trajectories_dropped": 0,
                                                                        "steps_dropped": 0, "leak_steps": 0}}
    filtered: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    prompt_chars: list[int] = []
    target_chars: list[int] = []
    prompt_tokens: list[int] = []
    steps_per_traj: list[int] = []
    dropped = 0
    fidelity: dict[str, Any] = {}
    for e in ledger:
        fmt = e.get("format") or "unknown"
        pf = per_format.setdefault(fmt, {"read": 0, "used": 0, "skipped": 0, "skip_reasons": {}, "steps": 0,
                                         "actions": 0, "non_actions": {}})
        pf["read"] += 1
        pf["actions"] += int(e.get("n_actions") or 0)
        for k, v in (e.get("excluded_actions") or {}).items():
            pf["non_actions"][k] = pf["non_actions"].get(k, 0) + int(v)
            non_actions[k] += int(v)
        fl = hazards["future_leak"]
        if e.get("future_leak_steps"):
            fl["trajectories_with_leak"] += 1
            fl["leak_steps"] += int(e["future_leak_steps"])
        fl["steps_dropped"] += int(e.get("future_leak_dropped_steps") or 0)
        dropped += int(e.get("dropped_over_budget") or 0)
        if e.get("replay"):
            fidelity[e["unit"]] = e["replay"]
        if e.get("status") == "ok":
            pf["used"] += 1
            pf["steps"] += int(e.get("n_steps") or 0)
            steps_per_traj.append(int(e.get("n_steps") or 0))
            tools.update(e.get("tools") or {})
            prompt_chars += e.get("prompt_chars") or []
            target_chars += e.get("target_chars") or []
            prompt_tokens += e.get("prompt_tokens") or []
            fmt_prompt_chars.setdefault(fmt, []).extend(e.get("prompt_chars") or [])
            fmt_prompt_tokens.setdefault(fmt, []).extend(e.get("prompt_tokens") or [])
        else:
            pf["skipped"] += 1
            reason = str(e.get("reason", "unknown"))
            cat = reason.split(":", 1)[0]
            pf["skip_reasons"][cat] = pf["skip_reasons"].get(cat, 0) + 1
            if cat in FILTER_REASONS:
                filtered[cat] += 1
            if cat == "eval_contaminated":
                name = reason.rsplit(" is in ", 1)[-1]
                hazards["eval_contaminated"][name] = hazards["eval_contaminated"].get(name, 0) + 1
            if cat == "future_leak":
                hazards["future_leak"]["trajectories_dropped"] += 1
    totals = {k: sum(pf[k] for pf in per_format.values()) for k in ("read", "used", "skipped", "steps", "actions")}
    per_format_tokens, warnings = _prompt_token_stats(fmt_prompt_chars, fmt_prompt_tokens, opts)
    manifest: dict[str, Any] = {
        "task": "swe",
        "schema_version": SCHEMA_VERSION,
        "inputs": inputs,
        "options": _build_options(opts),
        "files": discovered,
        "trajectories": {**{k: totals[k] for k in ("read", "used", "skipped")}, "per_format": per_format},
        "steps": {"total": totals["steps"], "per_tool": dict(tools.most_common()),
                  "dropped_over_budget": dropped, "actions_in_used_and_skipped": totals["actions"],
                  "non_actions_not_steps": dict(non_actions.most_common())},
        "filters": dict(filtered.most_common()),
        "hazards": hazards,
        "prompt_tokens_per_format": per_format_tokens,
        "warnings": warnings,
        "lengths": {"prompt_chars": length_stats(prompt_chars), "target_chars": length_stats(target_chars),
                    "steps_per_trajectory": length_stats(steps_per_traj)},
        "this_run": run_stats,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    if prompt_tokens:
        manifest["lengths"]["prompt_tokens"] = length_stats(prompt_tokens)
    if fidelity:
        manifest["replay"] = fidelity
        manifest["replay_summary"] = replay_summary(ledger)
    manifest["_plot"] = {"steps_per_trajectory": steps_per_traj, "target_chars": target_chars,
                         "tools": dict(tools)}
    if fidelity:
        manifest["_plot"]["fidelity"] = manifest["replay_summary"]["all"]["histogram"]
    return manifest


def replay_summary(ledger: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Replay results per format and over all ("all"): trajectories replayed / failed (by stage), the per-step
    fidelity histogram by command kind with exact/near/diverged shares, and the final-patch check (as submitted,
    the replayed submission itself, whole tree, scratch files outside the submission)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in ledger:
        r = e.get("replay")
        if not r:
            continue
        groups.setdefault(e.get("format") or "unknown", []).append(e)
        groups.setdefault("all", []).append(e)
    out: dict[str, Any] = {}
    for fmt, entries in sorted(groups.items()):
        reps = [e["replay"] for e in entries]
        ok = [r for r in reps if not r.get("error")]
        failed: Counter[str] = Counter(str(r.get("stage") or "run") for r in reps if r.get("error"))
        hist = merge_histograms(r.get("histogram") or {} for r in ok)
        recorded = [r for r in ok if r.get("patch_match") is not None]
        resolved = [e["replay"] for e in entries if not e["replay"].get("error") and e.get("resolved") is True
                    and e["replay"].get("patch_match") is not None]
        out[fmt] = {
            "trajectories": len(reps), "replayed": len(ok), "failed": dict(failed),
            "histogram": hist, "shares": shares(hist["total"]),
            "patch": {"with_recorded_patch": len(recorded),
                      "match_as_submitted": sum(1 for r in recorded if r.get("patch_match")),
                      "submission_match": sum(1 for r in recorded if r.get("submission_match")),
                      "whole_tree_match": sum(1 for r in recorded if r.get("whole_tree_match")),
                      "with_tree_extra_files": sum(1 for r in recorded if r.get("tree_extra_files")),
                      "tree_extra_files": sum(len(r.get("tree_extra_files") or []) for r in recorded),
                      "resolved_with_patch": len(resolved),
                      "resolved_match_as_submitted": sum(1 for r in resolved if r.get("patch_match"))},
        }
    return out


#: skip categories that are filters (named by an option), not failures
FILTER_REASONS = ("not_resolved", "resolved_unknown", "not_in_ids_file", "model_filtered", "eval_contaminated",
                  "future_leak", "replay_diverged")


def estimated_tokens(chars: int) -> int:
    return math.ceil(chars / EST_CHARS_PER_TOKEN)


def _prompt_token_stats(chars: dict[str, list[int]], tokens: dict[str, list[int]], opts: CollectOptions
                        ) -> tuple[dict[str, Any], list[str]]:
    """Prompt-token percentiles per format (the tokenizer's counts with --max-prompt-tokens, else estimated from
    characters), and the loud warning when prompts exceed WARN_PROMPT_TOKENS."""
    out: dict[str, Any] = {}
    over = 0
    total = 0
    for fmt in sorted(set(chars) | set(tokens)):
        exact = tokens.get(fmt) or []
        vals = exact or [estimated_tokens(c) for c in chars.get(fmt) or []]
        if not vals:
            continue
        st = length_stats(vals)
        st["method"] = f"tokenizer {opts.tokenizer}" if exact else f"estimate: chars / {EST_CHARS_PER_TOKEN}"
        st["over_32k"] = sum(1 for v in vals if v > WARN_PROMPT_TOKENS)
        out[fmt] = st
        over += st["over_32k"]
        total += len(vals)
    warnings = []
    if over and opts.max_prompt_tokens is None:
        warnings.append(f"{over} of {total} step prompts ({100 * over / total:.1f}%) are longer than "
                        f"{WARN_PROMPT_TOKENS} tokens (estimated as chars / {EST_CHARS_PER_TOKEN}): a 32k-context model "
                        f"cannot train on them. Rerun with --max-prompt-tokens {WARN_PROMPT_TOKENS} --tokenizer "
                        f"<the training model> (and/or --history K / --obs-max-chars N).")
    return out, warnings


def write_stats_png(path: Path, plot: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    hist = plot.get("fidelity")
    fig, axes = plt.subplots(1, 4 if hist else 3, figsize=(20 if hist else 15, 4))
    axes[0].hist(plot["steps_per_trajectory"] or [0], bins=30, color="#4477aa")
    axes[0].set_title("steps per trajectory")
    axes[0].set_xlabel("steps")
    axes[1].hist([min(x, 5000) for x in plot["target_chars"]] or [0], bins=40, color="#228833")
    axes[1].set_title("action (target) length, chars (clipped at 5000)")
    tools = sorted(plot["tools"].items(), key=lambda kv: -kv[1])
    axes[2].barh([t for t, _ in tools][::-1], [c for _, c in tools][::-1], color="#cc6677")
    axes[2].set_title("tool mix (steps)")
    if hist:
        plot_fidelity_histogram(axes[3], hist)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


FIDELITY_COLORS = {"exact": "#228833", "near": "#ccbb44", "diverged": "#ee6677", "skipped": "#bbbbbb"}


def plot_fidelity_histogram(ax: Any, hist: dict[str, dict[str, int]], top: int = 14) -> None:
    """Stacked horizontal bars: replayed steps per command kind by fidelity status (the ``top`` largest kinds)."""
    kinds = [k for k in hist if k != "total"][:top][::-1]
    left = [0] * len(kinds)
    for st, color in FIDELITY_COLORS.items():
        vals = [hist[k].get(st, 0) for k in kinds]
        ax.barh(kinds, vals, left=left, color=color, label=st)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_title("replay fidelity by command kind (steps)")
    ax.legend(loc="lower right", fontsize=8)


# -- driver -------------------------------------------------------------------------------------------------
def _build_options(opts: CollectOptions) -> dict[str, Any]:
    return {k: v for k, v in asdict(opts).items() if k in BUILD_OPTIONS}


def _check_resume_options(store_dir: Path, opts: CollectOptions, resume: bool) -> None:
    """The options that change the records are kept in ``options.json``; a resume with others is refused."""
    guard = ResumeGuard(store_dir, OPTIONS_FILE, what="--out (or --no-resume)")
    if not resume:
        guard.path.unlink(missing_ok=True)
    try:
        guard.check(_build_options(opts))
    except ResumeMismatch as e:
        raise CollectError(str(e)) from None


def _init_worker(tokenizer: Any, parent_pid: int | None = None) -> None:
    """Process-pool initializer: the tokenizer is sent to each worker once, not with every file. The worker ignores
    SIGINT (the parent stops the pool; no worker traceback) and dies with its parent, even after ``kill -9`` of it
    (``swe_srl.core.io.init_pool_worker``: Linux parent-death signal)."""
    if parent_pid is not None:
        init_pool_worker(parent_pid)
    _WORKER_TOKENIZER[0] = tokenizer


def _process_star(args: tuple[str, CollectOptions, frozenset[str], bool]) -> list[UnitResult]:
    return process_file(*args, tokenizer=_WORKER_TOKENIZER[0])


_WORKER_TOKENIZER: list[Any] = [None]


class _CollectRun:
    """State of one collect_swe run: the store, the queue of units waiting to be committed, counters.

    Units are committed strictly in input order (deterministic ledger and steps.jsonl whatever the worker count).
    With a replay and ``workers`` N > 1, up to N replays run at once in a thread pool (the work happens in sandbox
    containers / subprocesses, the threads only wait on them), at most 2N are in flight, and finished replays wait
    for the ones before them. A crash loses only the in-flight units (redone on resume).
    On SIGINT/SIGTERM (``close(interrupted=True)``) the sandboxes of running replays are removed at once (their
    replays end), the queued units are dropped (redone on resume) and a commit under way is finished first
    (``deferred_interrupts``).
    """

    def __init__(self, store: StepStore, opts: CollectOptions, *, replay: Callable[..., Any] | None,
                 sandbox_map: dict[str, Any], tokenizer: Any, on_unit: Callable[[UnitResult], None] | None) -> None:
        self.store, self.opts, self.replay, self.smap = store, opts, replay, sandbox_map
        self.tokenizer, self.on_unit = tokenizer, on_unit
        self.counts: Counter[str] = Counter()
        self.seen_units = 0
        self.stopped = False
        self.pending: deque[tuple[UnitResult, Future | None]] = deque()
        self.pool = (ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="replay")
                     if replay is not None and opts.workers > 1 else None)

    @property
    def max_pending(self) -> int:
        return 2 * self.opts.workers if self.pool is not None else 0

    def commit(self, r: UnitResult) -> None:
        info = dict(r.info)
        with deferred_interrupts():          # a unit is committed whole: SIGINT/SIGTERM waits for the ledger line
            if r.status == "ok":
                self.store.commit(r.unit, r.records, **info)
                self.counts["units_ok"] += 1
                self.counts["steps_written"] += len(r.records)
            else:
                reason = info.pop("reason", "skipped")
                self.store.skip(r.unit, reason, **info)
                self.counts["units_skipped"] += 1
                if is_error_reason(reason):
                    self.counts["units_failed"] += 1    # an input that could not be read / replayed: errors.jsonl
        if self.on_unit is not None:
            self.on_unit(r)

    def drain(self, block_until: int) -> None:
        """Commit finished heads of the queue; block while more than ``block_until`` units are pending."""
        while self.pending:
            r, fut = self.pending[0]
            if fut is not None and not fut.done() and len(self.pending) <= block_until:
                return
            self.pending.popleft()
            if fut is not None:
                r = _finish_replay(r, self.opts, *fut.result(), self.tokenizer)
            self.commit(r)

    def add(self, r: UnitResult) -> None:
        """Queue one unit (replaying it first when asked) and commit what is ready."""
        fut = None
        if r.status == "ok" and self.replay is not None:
            if self.pool is None:
                r = _apply_replay(r, self.opts, self.replay, self.smap, self.tokenizer)
            else:
                fut = self.pool.submit(_run_replay, r, self.opts, self.replay, self.smap)
        self.pending.append((r, fut))
        self.drain(self.max_pending)

    def handle(self, results: Iterable[UnitResult]) -> None:
        """The units of one file; sets ``stopped`` once --limit units have been seen."""
        for r in results:
            if self.stopped:
                return
            if self.opts.limit is not None and self.seen_units >= self.opts.limit:
                self.stopped = True
                return
            self.seen_units += 1
            if self.store.is_done(r.unit):
                self.counts["units_already_done"] += 1
                continue
            self.add(r)

    def close(self, interrupted: bool = False) -> None:
        """Stop the replay threads; ``interrupted``: first remove every open sandbox (running replays then fail at
        their next call and end), and drop the units not yet committed (they are redone on resume)."""
        if not interrupted:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
            return
        with stopping():                 # no sandbox starts, no command runs until the threads are done
            close_live_sandboxes()
            self.pending.clear()
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
            close_live_sandboxes()       # one started while the others were being closed


def _streamed(p: str) -> bool:
    """Inputs read in the main process, one unit at a time, even with --workers: hub datasets, parquet/arrow files
    and any file over STREAM_BYTES (a worker would return all its units at once)."""
    if p.startswith(HUB_PREFIX):
        return True
    path = Path(p)
    if is_row_file(path):
        return True
    try:
        return path.stat().st_size > STREAM_BYTES
    except OSError:
        return False


def _file_results(todo: list[str], opts: CollectOptions, done: frozenset[str], build: bool,
                  tokenizer: Any) -> Iterator[Iterable[UnitResult]]:
    """Per-input unit results in input order: small files from a pool of ``opts.workers`` processes (at most
    2 x workers ahead), streamed inputs in this process."""
    if opts.workers > 1 and sum(1 for p in todo if not _streamed(p)) > 1:
        # workers ignore SIGINT and die with this process (_init_worker); on an interrupt (or any early exit) the
        # files not yet started are cancelled
        pool = ProcessPoolExecutor(max_workers=opts.workers, initializer=_init_worker,
                                   initargs=(tokenizer, os.getpid()))
        try:
            window: deque[tuple[str, Future | None]] = deque()
            it = iter(todo)

            def fill() -> None:
                while len(window) < 2 * opts.workers:
                    p = next(it, None)
                    if p is None:
                        return
                    window.append((p, None if _streamed(p) else pool.submit(_process_star, (p, opts, done, build))))

            fill()
            while window:
                p, fut = window.popleft()
                yield fut.result() if fut is not None else iter_units(p, opts, done, build, tokenizer=tokenizer)
                fill()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for p in todo:
            yield iter_units(p, opts, done, build, tokenizer=tokenizer)


# -- per-input errors, duplicates ----------------------------------------------------------------------------------
ERRORS_FILE = "errors.jsonl"
#: ledger skip reasons that are errors of an input (reported on screen and in errors.jsonl), not filter decisions
ERROR_REASONS = ("malformed:", "replay_error:")


def is_error_reason(reason: Any) -> bool:
    return str(reason).startswith(ERROR_REASONS)


def write_errors_file(out_dir: Path) -> dict[str, Any]:
    """``<out>/errors.jsonl``: one line per unit of the ledger whose skip reason is an error (a file that could not
    be parsed, a replay that failed), rebuilt from the ledger (atomic, so reruns and resumes never duplicate a
    line). Returns the manifest's ``errors`` entry: total count and the file name."""
    entries = [e for e in read_ledger(out_dir).values() if e.get("status") != "ok" and is_error_reason(e.get("reason"))]
    tmp = out_dir / (ERRORS_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps({"unit": e.get("unit"), "source": e.get("source"), "format": e.get("format"),
                                "reason": e.get("reason")}, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / ERRORS_FILE)
    return {"total": len(entries), "file": ERRORS_FILE}


def drop_duplicate_files(files: list[Any]) -> tuple[list[Any], list[dict[str, str]]]:
    """Input files whose bytes equal an earlier input's (sha256) are not read again: (kept, duplicates), each
    duplicate as ``{"path", "same_as"}``. Hub inputs are kept as they are."""
    kept: list[Any] = []
    dups: list[dict[str, str]] = []
    first: dict[str, str] = {}
    for f in files:
        if str(f.path).startswith(HUB_PREFIX):
            kept.append(f)
            continue
        try:
            digest = file_sha256(f.path)
        except OSError:                      # unreadable: kept, its unit reports the error
            kept.append(f)
            continue
        if digest in first:
            dups.append({"path": str(f.path), "same_as": first[digest]})
            continue
        first[digest] = str(f.path)
        kept.append(f)
    return kept, dups


def collect_swe(paths: list[str], out_dir: str | Path, opts: CollectOptions | None = None, *, resume: bool = True,
                progress: bool = True, on_unit: Callable[[UnitResult], None] | None = None, tokenizer: Any = None,
                replay: Callable[..., Any] = replay_trajectory,
                split: SplitOptions | None = None) -> dict[str, Any]:
    """Collect step data from trajectory files/directories into out_dir; returns the manifest.

    ``tokenizer`` (anything with ``encode``/``decode``, optionally ``apply_chat_template``) is required with the
    token budgets (--max-prompt-tokens, --obs-max-tokens); ``opts.tokenizer`` is only its name, recorded in the
    manifest. The caller loads it (swe_srl.commands.collect: swe_srl.models.resolve_model + AutoTokenizer).
    ``replay`` is the replay engine used with ``opts.replay`` != "none" (environments.replay.replay_trajectory).
    """
    opts = opts or CollectOptions()
    opts.validate()
    if (opts.max_prompt_tokens is not None or opts.obs_max_tokens is not None) and tokenizer is None:
        raise CollectError(f"--tokenizer {opts.tokenizer}: no tokenizer was passed to collect_swe(tokenizer=...)")
    started = time.time()
    out_dir = Path(out_dir)
    try:
        files, ignored = discover(paths)
    except FileNotFoundError as e:
        raise CollectError(f"--trajectories: {e}") from None
    files, duplicates = drop_duplicate_files(files)   # byte-identical inputs are read once (counted, listed)
    smap = load_sandbox_map(opts.sandbox_map)
    _Filters.of(opts)                 # a bad --ids-file / --exclude-eval is a usage error before anything is read
    with OutputLock(out_dir):         # one writer per --out: a second one fails at once (OutputLocked)
        finish_pending_swap(out_dir)      # a split swap cut short by a crash (environments.splits)
        _check_resume_options(out_dir, opts, resume)
        discovered = {"input_files": len(files), "ignored_files": ignored,
                      "superseded_llm_completions": sum(len(f.superseded) for f in files),
                      "duplicate_files": len(duplicates), "duplicates": duplicates[:100]}
        inputs = [str(p) if str(p).startswith(HUB_PREFIX) else str(Path(p).resolve()) for p in paths]
        use_replay = replay if opts.replay != "none" else None
        if opts.replay == "docker":
            prune_orphans_once()          # containers of dead earlier runs go first (environments.sandbox.lifecycle)
        with StepStore(out_dir, resume=resume) as store:
            run = _CollectRun(store, opts, replay=use_replay, sandbox_map=smap, tokenizer=tokenizer, on_unit=on_unit)
            try:
                store.write_manifest(build_manifest(out_dir, inputs=inputs, opts=opts, discovered=discovered,
                                                    started=started, run_stats={"status": "running"})
                                     | {"_plot": None, "status": "running"})
                todo = [str(f.path) for f in files if not store.is_done(str(f.path))]
                run.counts["files_already_done"] = len(files) - len(todo)
                # with a replay, steps are built after it (from the regenerated observations), not in the file workers
                results = _file_results(todo, opts, frozenset(store.ledger), use_replay is None, tokenizer)
                interrupted = False
                try:
                    with _progress(progress, len(todo)) as (advance, _):
                        for file_results in results:
                            run.handle(file_results)
                            advance()
                            if run.stopped:
                                break
                        run.drain(0)
                except DatasetUnavailable as e:
                    raise CollectError(str(e)) from None
                except KeyboardInterrupt:
                    interrupted = True
                    raise
                finally:
                    run.close(interrupted=interrupted)
                    results.close()
            except KeyboardInterrupt as e:    # Interrupted (SIGINT/SIGTERM) or a bare Ctrl-C: mark it, then re-raise
                _mark_interrupted(store, out_dir, inputs, opts, discovered, started, run)
                n = run.counts["units_ok"] + run.counts["units_skipped"]
                detail = (f"{n} trajectories committed by this run, {len(store.ledger)} in total in {out_dir} "
                          f"(manifest status: interrupted; the units in flight are redone on resume)")
                reraise_interrupted(e, detail)
            with deferred_interrupts():       # the final manifest is written whole
                stats: dict[str, Any] = dict(run.counts)
                stats["seconds"] = round(time.time() - started, 3)
                stats["status"] = "complete" if not run.stopped else f"stopped at --limit {opts.limit}"
                manifest = build_manifest(out_dir, inputs=inputs, opts=opts, discovered=discovered, started=started,
                                          run_stats=stats)
                plot = manifest.pop("_plot")
                png = write_stats_png(out_dir / STATS_PNG, plot)
                manifest["stats_png"] = png.name if png else None
                manifest["status"] = "complete" if not run.stopped else "stopped"
                manifest["errors"] = write_errors_file(out_dir)
                store.write_manifest(manifest)
        apply_swe_splits(out_dir, split, manifest)  # meta["split"] by instance (environments.splits); test ids dropped
        return manifest


def _mark_interrupted(store: StepStore, out_dir: Path, inputs: list[str], opts: CollectOptions,
                      discovered: dict[str, Any], started: float, run: _CollectRun) -> None:
    """The manifest of an interrupted run: what the ledger holds, ``status: interrupted`` (top level and this_run)."""
    with deferred_interrupts():
        stats: dict[str, Any] = {**run.counts, "seconds": round(time.time() - started, 3), "status": "interrupted"}
        manifest = build_manifest(out_dir, inputs=inputs, opts=opts, discovered=discovered, started=started,
                                  run_stats=stats)
        manifest.pop("_plot", None)
        manifest["status"] = "interrupted"
        manifest["errors"] = write_errors_file(out_dir)
        store.write_manifest(manifest)


class _progress:
    """rich progress bar over files (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._p: Progress | None = None

    def __enter__(self) -> tuple[Callable[[], None], Any]:
        if not self.enabled:
            return (lambda: None), None
        p = self._p = Progress(TextColumn("collect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                               transient=False, console=None)
        p.__enter__()
        task = p.add_task("files", total=self.total)
        return (lambda: p.advance(task)), p

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
