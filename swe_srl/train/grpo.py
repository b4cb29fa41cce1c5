"""GRPOTrainer with TRUE dynamic sampling (SRL paper §4.2 / DAPO).

TRL generates one *generation batch* per optimizer step (``steps_per_generation == gradient_accumulation_steps``):
``batch_prompts`` groups of ``num_generations`` rollouts. This subclass wraps ``_generate_and_score_completions``:

  round 1: TRL generates + scores the dataloader's groups; we keep groups whose reward std > ds_eps
  round k: while fewer than batch_prompts groups are kept (on any process) and k <= ds_max_rounds, draw fresh prompts
           (deterministic in (seed, process, global step, round), so a resumed run draws the same), generate, filter
  then:    the first batch_prompts kept groups form the batch; extra kept groups are dropped (counted); when the cap
           stops us short, the remaining slots are filled with dropped rollouts whose loss mask and advantage are zero
           ("train on what there is"), and the shortfall is logged.

Everything else (advantages, loss, vLLM, importance sampling) is TRL's. Advantages are computed per group inside each
round, so merging rounds does not change them (scale_rewards="group").

Shared-prompt log-probs (``shared_prompt=True``, the default; swe_srl/train/shared_prompt.py): the rows of a
micro-batch that share a prompt are scored as one packed sequence, so each prompt is pushed forward and back once
instead of G times (same log-probs, entropies and gradients as TRL's per-row path). For that to apply in training,
the generation batch is shuffled group-wise (whole groups move together) before TRL splits it into micro-batches;
with TRL's row shuffle a micro-batch would almost never hold two rollouts of the same prompt. TRL's path is used
(logged once per reason) when nothing in a micro-batch shares a prompt, for multimodal inputs, MoE aux loss,
attention implementations without custom 4-D masks (flash-attention), sliding-window models and prompt-learning PEFT.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import (shuffle_sequence_dict, split_pixel_values_by_grid, split_tensor_dict,
                               unsplit_pixel_values_by_grid)

from ..core.sampling import DEFAULT_DS_EPS, keep_group
from . import shared_prompt as sp

logger = logging.getLogger("swe_srl.train")

_LEFT_PADDED = ("prompt_ids", "prompt_mask")


def _pad_cat(tensors: list[torch.Tensor], left: bool, value: float) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    out = []
    for t in tensors:
        gap = width - t.shape[1]
        if gap:
            pad = t.new_full((t.shape[0], gap), value)
            t = torch.cat([pad, t], 1) if left else torch.cat([t, pad], 1)
        out.append(t)
    return torch.cat(out, 0)


def merge_rows(parts: list[tuple[dict[str, Any], list[int]]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate selected rows of several TRL generation outputs, re-padding to a common width."""
    keys = [k for k, v in parts[0][0].items() if v is not None]
    merged: dict[str, Any] = {}
    for key in keys:
        if key == "num_items_in_batch":
            continue
        pieces = []
        for out, rows in parts:
            t = out[key]
            if not isinstance(t, torch.Tensor):
                raise NotImplementedError(f"dynamic sampling: cannot merge non-tensor field {key!r}")
            idx = torch.tensor(rows, dtype=torch.long, device=t.device)
            pieces.append(t.index_select(0, idx))
        if pieces[0].dim() == 1 or all(p.shape[1:] == pieces[0].shape[1:] for p in pieces):
            merged[key] = torch.cat(pieces, 0)
        elif pieces[0].dim() == 2:
            left = key in _LEFT_PADDED
            value = pad_token_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
            merged[key] = _pad_cat(pieces, left, value)
        else:
            raise NotImplementedError(f"dynamic sampling: cannot merge field {key!r} of shape {tuple(pieces[0].shape)}")
    return merged


class SRLGRPOTrainer(GRPOTrainer):
    """TRL GRPOTrainer + dynamic sampling + shared-prompt log-probs.

    ``dynamic_sampling=False, shared_prompt=False`` makes it behave exactly like the parent."""

    def __init__(self, *args: Any, dynamic_sampling: bool = True, ds_eps: float = DEFAULT_DS_EPS,
                 ds_max_rounds: int = 8, ds_warn_kept_fraction: float = 0.05, shared_prompt: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_prompt = shared_prompt
        self.sp_log: dict[str, int] = {"shared_chunks": 0, "fallback_chunks": 0, "rows": 0, "packed_tokens": 0,
                                       "trl_tokens": 0}
        self._sp_logged: set[str] = set()
        self._sp_checked: dict[int, bool] = {}
        self.dynamic_sampling = dynamic_sampling
        self.ds_eps = ds_eps
        self.ds_max_rounds = ds_max_rounds
        self.ds_warn_kept_fraction = ds_warn_kept_fraction
        self._round_local_rewards: list[float] | None = None
        self.ds_log: list[dict[str, Any]] = []   # one entry per optimizer step (for tests and benchmarks)
        self._low_kept_streak = 0

    # TRL gathers the rewards of every process; we keep this process's slice of the weighted sum
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        total = (rewards_per_func * weights).nansum(dim=1)
        n = len(prompts)
        start = self.accelerator.process_index * n
        self._round_local_rewards = total[start:start + n].tolist()
        return rewards_per_func

    def _refill_inputs(self, n_groups: int, round_index: int) -> list[dict[str, Any]]:
        g = torch.Generator()
        g.manual_seed(int(self.args.seed) * 1_000_003 + self.accelerator.process_index * 7919
                      + int(self.state.global_step) * 101 + round_index)
        ds = self.train_dataset
        idx = torch.randperm(len(ds), generator=g)[:n_groups].tolist()
        while len(idx) < n_groups:  # tiny datasets: sample with replacement
            idx += torch.randint(len(ds), (n_groups - len(idx),), generator=g).tolist()
        rows = [ds[i] for i in idx]
        return [dict(r) for r in rows for _ in range(self.num_generations)]

    def _all_processes_min(self, value: int) -> int:
        if self.accelerator.num_processes == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).min().item())

    def _generate_and_score_completions(self, inputs):
        if not self.dynamic_sampling or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        if len(inputs) % G:
            raise ValueError(f"dynamic sampling: local generation batch of {len(inputs)} is not whole groups of {G}")
        target = len(inputs) // G
        t0 = time.perf_counter()
        parts: list[tuple[dict[str, Any], list[int]]] = []
        kept_total = generated = rounds = 0
        completion_tokens = 0
        last_out: dict[str, Any] | None = None
        last_dropped: list[int] = []
        batch = inputs
        while True:
            rounds += 1
            out = super()._generate_and_score_completions(batch)
            rewards = self._round_local_rewards
            assert rewards is not None and len(rewards) == len(batch)
            completion_tokens += int(out["completion_mask"].sum().item())
            kept_rows: list[int] = []
            dropped_rows: list[int] = []
            have_before = sum(len(r) for _, r in parts) // G
            for gi in range(len(batch) // G):
                rows = list(range(gi * G, (gi + 1) * G))
                generated += 1
                if keep_group(rewards[gi * G:(gi + 1) * G], self.ds_eps):
                    kept_total += 1
                    if have_before + len(kept_rows) // G < target:
                        kept_rows += rows
                else:
                    dropped_rows += rows
            if kept_rows:
                parts.append((out, kept_rows))
            last_out, last_dropped = out, dropped_rows
            have = sum(len(r) for _, r in parts) // G
            if self._all_processes_min(have) >= target or rounds >= self.ds_max_rounds:
                break
            batch = self._refill_inputs(target, rounds)
        have = sum(len(r) for _, r in parts) // G
        shortfall = target - have
        if shortfall > 0:  # train on what there is: zero-weight filler rows keep the batch shape
            assert last_out is not None
            pool = last_dropped or list(range(last_out["advantages"].shape[0]))
            filler = [pool[i % len(pool)] for i in range(shortfall * G)]
            fill = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in last_out.items()}
            fill["completion_mask"] = torch.zeros_like(fill["completion_mask"])
            fill["advantages"] = torch.zeros_like(fill["advantages"])
            parts.append((fill, filler))
        merged = merge_rows(parts, self._tokenizer.pad_token_id)
        mask = merged["completion_mask"] if "tool_mask" not in merged else merged["completion_mask"] * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()

        elapsed = time.perf_counter() - t0
        kept_fraction = kept_total / max(generated, 1)
        stats = {"rounds": rounds, "groups_generated": generated, "groups_kept": kept_total,
                 "kept_fraction": kept_fraction, "filled_fraction": have / target, "shortfall_groups": shortfall,
                 "overflow_groups": max(kept_total - have, 0), "extra_groups_generated": generated - target,
                 "completion_tokens": completion_tokens, "gen_seconds": elapsed}
        self.ds_log.append(stats)
        m = self._metrics["train"]
        m["ds/kept_fraction"].append(kept_fraction)
        m["ds/rounds"].append(float(rounds))
        m["ds/filled_fraction"].append(have / target)
        m["ds/groups_generated"].append(float(generated))
        m["ds/extra_groups_per_kept"].append((generated - target) / max(have, 1))
        m["perf/gen_tokens_per_s"].append(completion_tokens / max(elapsed, 1e-9))
        self._warn_if_flat(kept_fraction, shortfall, target, rounds)
        return merged

    def _warn_if_flat(self, kept_fraction: float, shortfall: int, target: int, rounds: int) -> None:
        if shortfall > 0:
            logger.warning("dynamic sampling: only %d/%d groups kept after %d rounds (cap ds_max_rounds); training "
                           "on what there is", target - shortfall, target, rounds)
        if kept_fraction < self.ds_warn_kept_fraction:
            self._low_kept_streak += 1
            if self.accelerator.is_main_process:
                bar = "!" * 100
                print(f"\n{bar}\n!! swe-srl: KEPT FRACTION {kept_fraction:.3f} < {self.ds_warn_kept_fraction} at step "
                      f"{self.state.global_step} ({self._low_kept_streak} step(s) in a row): almost every group has "
                      f"the same reward.\n!! Usually the model never produces '<think>...</think>ACTION', so every "
                      f"reward is the format penalty. Run the format warm-up first (docs/train.md: "
                      f"'Format warm-up'), or set prefill_think: true.\n{bar}", file=sys.stderr, flush=True)
        else:
            self._low_kept_streak = 0

    # ---- shared-prompt log-probs (swe_srl/train/shared_prompt.py) ----

    def _sp_note(self, message: str, warn: bool = True) -> None:
        if message not in self._sp_logged:
            self._sp_logged.add(message)
            (logger.warning if warn else logger.info)("shared-prompt log-probs: %s", message)

    def _sp_model_ok(self, model) -> bool:
        """Static checks, then (once per model object) the layout is compared with TRL's path on a tiny batch."""
        inner = self.accelerator.unwrap_model(model)
        key = id(inner)
        if key in self._sp_checked:
            return self._sp_checked[key]
        problem = sp.model_problem(inner)
        if problem is None:
            def trl_rows(m, ids, mask, c):
                return GRPOTrainer._get_per_token_logps_and_entropies(self, m, ids, mask, c)

            diff = sp.self_check(model, trl_rows, config_model=inner, autocast=self.accelerator.autocast)
            low_precision = (sp.param_dtype(inner) != torch.float32 or bool(self.args.bf16) or bool(self.args.fp16))
            tol = 0.1 if low_precision else 1e-3
            if not diff <= tol:   # also catches NaN
                problem = f"self-check against TRL's path failed (max |d logp| = {diff:.3g} > {tol})"
            else:
                self._sp_note(f"on for {type(inner).__name__} (self-check max |d logp| = {diff:.2e})", warn=False)
                if sp.has_dropout(inner):
                    self._sp_note("the model has dropout: a group's rows share one dropout draw on the prompt "
                                  "(TRL draws one per row); disable_dropout: true makes both paths deterministic")
        if problem is not None:
            self._sp_note(f"off for {type(inner).__name__}: {problem}; using TRL's per-row path")
        self._sp_checked[key] = problem is None
        return problem is None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, pixel_values=None,
                                           image_grid_thw=None, num_images=None, pixel_attention_mask=None,
                                           spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None,
                                           mm_token_type_ids=None, image_position_ids=None):
        extra = dict(pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_images=num_images,
                     pixel_attention_mask=pixel_attention_mask, spatial_shapes=spatial_shapes, num_tiles=num_tiles,
                     image_sizes=image_sizes, token_type_ids=token_type_ids, mm_token_type_ids=mm_token_type_ids,
                     image_position_ids=image_position_ids)

        def trl_path(ids, mask, bs):
            return super(SRLGRPOTrainer, self)._get_per_token_logps_and_entropies(
                model, ids, mask, logits_to_keep, batch_size=bs, compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss, **extra)

        problem = None
        if not self.shared_prompt:
            return trl_path(input_ids, attention_mask, batch_size)
        if any(v is not None for v in extra.values()):
            problem = "multimodal / token-type inputs"
        elif compute_aux_loss:
            problem = "MoE load-balancing loss counts every row's prompt tokens"
        else:
            problem = sp.layout_problem(input_ids, attention_mask, logits_to_keep)
        if problem is not None:
            self._sp_note(f"{problem}; using TRL's per-row path")
            return trl_path(input_ids, attention_mask, batch_size)
        if not self._sp_model_ok(model):
            return trl_path(input_ids, attention_mask, batch_size)

        n = input_ids.size(0)
        batch_size = batch_size or n
        all_logps, all_entropies = [], []
        pad_id = getattr(self._tokenizer, "pad_token_id", None) or 0
        packed_tokens = trl_tokens = 0
        for start in range(0, n, batch_size):
            ids, mask = input_ids[start:start + batch_size], attention_mask[start:start + batch_size]
            groups = sp.find_prompt_groups(ids, mask, logits_to_keep)
            trl_tokens += ids.numel()
            if len(groups) == ids.size(0):
                self._sp_note(f"a micro-batch of {ids.size(0)} rows has no two rows with the same prompt (split "
                              f"groups); TRL's per-row path for such micro-batches")
                self.sp_log["fallback_chunks"] += 1
                packed_tokens += ids.numel()
                logps, entropies, _ = trl_path(ids, mask, None)
            else:
                self.sp_log["shared_chunks"] += 1
                logps, entropies = sp.shared_logps(model, ids, mask, logits_to_keep, groups,
                                                   compute_entropy=compute_entropy,
                                                   config_model=self.accelerator.unwrap_model(model),
                                                   autocast=self.accelerator.autocast, pad_token_id=pad_id)
                p = ids.size(1) - logits_to_keep
                packed_tokens += sum(int(mask[g[0], :p - 1].sum()) + len(g) * logits_to_keep for g in groups)
            all_logps.append(logps)
            if compute_entropy:
                all_entropies.append(entropies)
        self.sp_log["rows"] += n
        self.sp_log["packed_tokens"] += packed_tokens
        self.sp_log["trl_tokens"] += trl_tokens
        # tokens pushed through the model / tokens TRL's per-row path would push (1.0 = no saving)
        self._metrics["train" if self.model.training else "eval"]["shared_prompt/token_fraction"].append(
            packed_tokens / max(trl_tokens, 1))
        return torch.cat(all_logps, 0), (torch.cat(all_entropies, 0) if compute_entropy else None), None

    def _prepare_inputs(self, generation_batch):
        """TRL's ``_prepare_inputs`` with a group-wise shuffle of the generation batch (shared_prompt on)."""
        if not (self.shared_prompt and self.model.training):
            return super()._prepare_inputs(generation_batch)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            batch = split_pixel_values_by_grid(batch)
            shuffled = sp.shuffle_groups(batch)
            if shuffled is None:
                self._sp_note("generation batch has no prompt_ids to group by; TRL's row shuffle")
                shuffled = shuffle_sequence_dict(batch)
            batches = split_tensor_dict(shuffled, self.args.steps_per_generation)
            self._buffered_inputs = [unsplit_pixel_values_by_grid(b) for b in batches]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]
