"""GRPOTrainer with TRUE dynamic sampling (SRL paper §4.2 / DAPO).

TRL generates one *generation batch* per optimizer step (``steps_per_generation == gradient_accumulation_steps``):
``batch_prompts`` groups of ``num_generations`` rollouts. This subclass wraps ``_generate_and_score_completions``
(docs/train.md, "Dynamic sampling"):

  carry:   kept groups left over from the previous step are used first (they bring their generating policy's
           ``old_per_token_logps``; fresh rows get the current policy's, TRL's on-policy value, in ``_compute_loss``)
  round k: while some process has fewer than its share of the batch and k <= ds_max_rounds, generate
           ceil(missing / keep rate) groups per process (core.sampling.round_size; the keep rate is a running
           estimate, core.sampling.KeepRate), prompts drawn from a seeded epoch order shared by all processes
           (core.sampling.PromptOrder; prompts flat on their last K visits are skipped and counted); keep groups whose
           reward std > ds_eps, decided on the rewards TRL gathers from every process, so every process decides alike
  then:    the batch is full; surplus kept groups are carried (bounded); only when the round cap stops us short are
           the remaining slots filled with dropped rollouts whose loss mask and advantage are zero ("train on what
           there is"), and the padding is logged. One small gather per step checks that the processes ran the same
           rounds.

Everything else (advantages, loss, vLLM, importance sampling) is TRL's. Advantages are computed per group inside each
round, so merging rounds does not change them (scale_rewards="group"). The prompt order, keep-rate estimate and
carried groups are saved with every checkpoint (ds_state.json, ds_carry_rank<R>.pt).

Shared-prompt log-probs (``shared_prompt=True``, the default; swe_srl/train/shared_prompt.py): the rows of a
micro-batch that share a prompt are scored as one packed sequence, so each prompt is pushed forward and back once
instead of G times (same log-probs, entropies and gradients as TRL's per-row path). For that to apply in training,
the generation batch is shuffled group-wise (whole groups move together) before TRL splits it into micro-batches;
with TRL's row shuffle a micro-batch would almost never hold two rollouts of the same prompt. TRL's path is used
(logged once per reason) when nothing in a micro-batch shares a prompt, for multimodal inputs, MoE aux loss,
attention implementations without custom 4-D masks (flash-attention), sliding-window models and prompt-learning PEFT.

Shared prompt prefill (``shared_prefill=True``, the default; swe_srl.generation.shared_prefill_generate): with
transformers rollouts the G rows of a group prefill their prompt once (one KV cache, copied to the G rows) and
``generate`` continues from there; vLLM keeps its own prefix caching. On CPU, TRL's chunked LM head runs in
256-token x 8,192-column tiles (``lm_head_token_chunk`` / ``lm_head_vocab_chunk``, swe_srl/train/lm_head.py), and
the training forward/backward mmaps its tensors (``cpu_malloc_mmap_threshold_mb``, swe_srl/train/cpu_malloc.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.utils import (shuffle_sequence_dict, split_pixel_values_by_grid, split_tensor_dict,
                               unsplit_pixel_values_by_grid)

from ..core.sampling import (DEFAULT_DS_EPS, DEFAULT_KEEP_RATE_PRIOR, DEFAULT_SKIP_FLAT_AFTER, KeepRate, PromptOrder,
                             keep_group, round_size)
from ..generation import shared_prefill_generate
from . import lm_head
from .cpu_malloc import MallocPolicy
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
                 ds_keep_rate_prior: float = DEFAULT_KEEP_RATE_PRIOR, ds_max_groups_per_round: int | None = None,
                 ds_carry_max_groups: int | None = None, ds_skip_flat_after: int = DEFAULT_SKIP_FLAT_AFTER,
                 lm_head_token_chunk: int = 0, lm_head_vocab_chunk: int = 0, shared_prefill: bool = True,
                 cpu_malloc_mmap_threshold_mb: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.malloc_policy = MallocPolicy(cpu_malloc_mmap_threshold_mb, self.accelerator.device.type)
        self.shared_prefill = shared_prefill      # transformers rollouts: a group's prompt prefilled once
        self.prefill_log = {"calls": 0, "rows": 0}
        # TRL's chunked LM head in smaller tiles on CPU (swe_srl/train/lm_head.py); 0 = auto
        self.lm_head_tiles = lm_head.set_tiles(self.accelerator.device.type, lm_head_token_chunk, lm_head_vocab_chunk)
        self.shared_prompt = shared_prompt
        self.sp_log: dict[str, int] = {"shared_chunks": 0, "fallback_chunks": 0, "rows": 0, "packed_tokens": 0,
                                       "trl_tokens": 0}
        self._sp_logged: set[str] = set()
        self._sp_checked: dict[int, bool] = {}
        self.dynamic_sampling = dynamic_sampling
        self.ds_eps = ds_eps
        self.ds_max_rounds = ds_max_rounds
        self.ds_warn_kept_fraction = ds_warn_kept_fraction
        self.ds_max_groups_per_round = ds_max_groups_per_round   # None: 4 x the per-process groups of a step
        self.ds_carry_max_groups = ds_carry_max_groups           # None: one step's per-process groups; 0: no carry
        self.ds_skip_flat_after = ds_skip_flat_after
        self._keep_rate = KeepRate(prior=ds_keep_rate_prior)
        self._order: PromptOrder | None = None
        self._pending_ds_state: dict[str, Any] | None = None
        self._carry: list[tuple[dict[str, Any], list[int]]] = []   # surplus kept groups, oldest first
        self._fill_old_logps: torch.Tensor | None = None
        self.ds_totals = {"generated": 0, "trained": 0}
        self._round_rewards: list[float] | None = None
        self._round_local_rewards: list[float] | None = None
        self.ds_log: list[dict[str, Any]] = []   # one entry per optimizer step (for tests and benchmarks)
        self._low_kept_streak = 0

    # TRL gathers the rewards of every process; we keep the gathered weighted sum (every process's groups, process
    # after process) so that keep / drop is decided on the same numbers on every process
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        total = (rewards_per_func * weights).nansum(dim=1)
        n = len(prompts)
        start = self.accelerator.process_index * n
        self._round_rewards = total.tolist()
        self._round_local_rewards = self._round_rewards[start:start + n]
        return rewards_per_func

    def _prompt_order(self) -> PromptOrder:
        if self._order is None:
            if not hasattr(self.train_dataset, "__len__"):
                raise ValueError("dynamic sampling needs an indexable train dataset (not an IterableDataset)")
            self._order = PromptOrder(len(self.train_dataset), seed=int(self.args.seed),
                                      skip_flat_after=self.ds_skip_flat_after)
            if self._pending_ds_state is not None:
                self._load_ds_state(self._pending_ds_state)
                self._pending_ds_state = None
        return self._order

    def _all_processes_max(self, value: int) -> int:
        if self.accelerator.num_processes == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max().item())

    def _merge(self, parts: list[tuple[dict[str, Any], list[int]]]) -> dict[str, Any]:
        """merge_rows, where carried groups bring ``old_per_token_logps`` and fresh ones do not: the fresh rows get
        NaN there, replaced in the loss by the current policy's detached log-probs (TRL's own value for them)."""
        if any("old_per_token_logps" in out for out, _ in parts) and not all(
                "old_per_token_logps" in out for out, _ in parts):
            fixed = []
            for out, rows in parts:
                if "old_per_token_logps" not in out:
                    out = dict(out, old_per_token_logps=torch.full(out["completion_ids"].shape, float("nan"),
                                                                   device=out["completion_ids"].device))
                fixed.append((out, rows))
            parts = fixed
        return merge_rows(parts, self._tokenizer.pad_token_id)

    def _old_logps(self, batch: dict[str, Any]) -> torch.Tensor:
        """Log-probs of the policy that generated ``batch`` (the current one), for carried groups."""
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        with torch.no_grad():
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, mask, batch["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size)
        return logps

    def _generate_and_score_completions(self, inputs):
        self.malloc_policy.generation()    # the KV cache grows by copies: keep them on the heap (cpu_malloc)
        if not self.dynamic_sampling or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        if len(inputs) % G:
            raise ValueError(f"dynamic sampling: local generation batch of {len(inputs)} is not whole groups of {G}")
        # The dataloader's batch only sets the size: prompts come from our own seeded epoch order (PromptOrder),
        # so that a refill round continues the same epoch instead of drawing at random.
        target = len(inputs) // G
        nproc, rank = self.accelerator.num_processes, self.accelerator.process_index
        order = self._prompt_order()
        cap = self.ds_max_groups_per_round or 4 * target
        carry_max = target if self.ds_carry_max_groups is None else self.ds_carry_max_groups
        t0 = time.perf_counter()
        skipped_before, resets_before = order.skipped, order.resets

        parts: list[tuple[dict[str, Any], list[int]]] = list(self._carry[:target])   # oldest carried groups first
        carried_in = len(parts)
        self._carry = self._carry[target:]
        have = carried_in
        surplus: list[tuple[dict[str, Any], list[int]]] = []
        rounds = generated = kept = 0
        completion_tokens = 0
        last_out: dict[str, Any] | None = None
        last_dropped: list[int] = []
        while True:
            need = self._all_processes_max(target - have)    # every process runs the same rounds of the same size
            if need <= 0 or rounds >= self.ds_max_rounds:
                break
            n = round_size(need, self._keep_rate.rate, cap)
            drawn = order.draw(n * nproc)                       # the same global draw on every process
            mine = drawn[rank * n:(rank + 1) * n]
            batch = [dict(self.train_dataset[i]) for i in mine for _ in range(G)]
            out = super()._generate_and_score_completions(batch)
            rounds += 1
            rewards = self._round_rewards
            assert rewards is not None and len(rewards) == n * nproc * G, "gathered rewards do not match the round"
            keep = [keep_group(rewards[j * G:(j + 1) * G], self.ds_eps) for j in range(n * nproc)]
            for pid, k in zip(drawn, keep):
                order.record(pid, flat=not k)
            kept += sum(keep)
            generated += n * nproc
            self._keep_rate.update(sum(keep), n * nproc)
            completion_tokens += int(out["completion_mask"].sum().item())
            dropped_rows: list[int] = []
            for gi, k in enumerate(keep[rank * n:(rank + 1) * n]):
                rows = list(range(gi * G, (gi + 1) * G))
                if not k:
                    dropped_rows += rows
                elif have < target:
                    parts.append((out, rows))
                    have += 1
                else:
                    surplus.append((out, rows))
            last_out, last_dropped = out, dropped_rows

        shortfall = target - have
        if shortfall > 0:  # round cap hit: zero-weight filler rows keep the batch shape ("train on what there is")
            assert last_out is not None
            pool = last_dropped or list(range(last_out["advantages"].shape[0]))
            filler = [pool[i % len(pool)] for i in range(shortfall * G)]
            fill = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in last_out.items()}
            fill["completion_mask"] = torch.zeros_like(fill["completion_mask"])
            fill["advantages"] = torch.zeros_like(fill["advantages"])
            parts.append((fill, filler))

        carried_out = discarded = 0
        if surplus and carry_max > 0:
            merged_surplus = self._merge(surplus)
            if "old_per_token_logps" not in merged_surplus:
                merged_surplus["old_per_token_logps"] = self._old_logps(merged_surplus)
            self._carry += [(merged_surplus, list(range(j * G, (j + 1) * G))) for j in range(len(surplus))]
            carried_out = len(surplus)
        else:
            discarded += len(surplus)
        if len(self._carry) > carry_max:
            discarded += len(self._carry) - carry_max
            self._carry = self._carry[len(self._carry) - carry_max:] if carry_max else []

        merged = self._merge(parts)
        mask = merged["completion_mask"] if "tool_mask" not in merged else merged["completion_mask"] * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()

        # one small gather: the step's per-process numbers, and the proof that every process ran the same rounds
        local = [rounds, generated, carried_in, carried_out, shortfall, discarded, len(self._carry)]
        if nproc > 1:
            table = self.accelerator.gather(torch.tensor([local], dtype=torch.long,
                                                         device=self.accelerator.device)).tolist()
        else:
            table = [local]
        if len({(r[0], r[1]) for r in table}) != 1:
            raise RuntimeError(f"dynamic sampling: processes out of lockstep (rounds, groups generated) = "
                               f"{[(r[0], r[1]) for r in table]}")
        g_carried_in, g_carried_out, g_padded, g_discarded, g_buffer = (sum(r[i] for r in table) for i in range(2, 7))
        trained = target * nproc - g_padded
        self.ds_totals["generated"] += generated
        self.ds_totals["trained"] += trained
        elapsed = time.perf_counter() - t0
        keep_rate = kept / generated if generated else float("nan")
        gen_per_kept = generated / max(trained, 1)
        stats = {"rounds": rounds, "groups_generated": generated, "groups_kept": kept, "kept_fraction": keep_rate,
                 "groups_trained": trained, "carried_in": g_carried_in, "carried_out": g_carried_out,
                 "carry_buffer": g_buffer, "discarded_groups": g_discarded, "padded_groups": g_padded,
                 "shortfall_groups": shortfall, "skipped_flat": order.skipped - skipped_before,
                 "skip_resets": order.resets - resets_before, "generated_per_kept": gen_per_kept,
                 "keep_rate_estimate": self._keep_rate.rate, "epoch": order.epoch + order.pos / order.n,
                 "filled_fraction": have / target, "completion_tokens": completion_tokens, "gen_seconds": elapsed}
        self.ds_log.append(stats)
        m = self._metrics["train"]
        if generated:
            m["ds/kept_fraction"].append(keep_rate)
        m["ds/rounds"].append(float(rounds))
        m["ds/filled_fraction"].append(trained / (target * nproc))
        m["ds/groups_generated"].append(float(generated))
        m["ds/generated_per_kept"].append(gen_per_kept)
        m["ds/generated_per_kept_total"].append(self.ds_totals["generated"] / max(self.ds_totals["trained"], 1))
        m["ds/carried_in"].append(float(g_carried_in))
        m["ds/carried_out"].append(float(g_carried_out))
        m["ds/discarded_groups"].append(float(g_discarded))
        m["ds/padded_groups"].append(float(g_padded))
        m["ds/skipped_flat"].append(float(stats["skipped_flat"]))
        m["ds/keep_rate_estimate"].append(self._keep_rate.rate)
        m["ds/epoch"].append(stats["epoch"])
        if elapsed > 0 and completion_tokens:
            m["perf/gen_tokens_per_s"].append(completion_tokens / elapsed)
        if stats["skip_resets"]:
            logger.warning("dynamic sampling: every prompt was flat on its last %d visits; flat history cleared",
                           self.ds_skip_flat_after)
        self._warn_if_flat(keep_rate if generated else 1.0, g_padded, target * nproc, rounds)
        return merged

    # carried groups bring the log-probs of the policy that generated them; fresh rows (NaN there) get the current
    # policy's detached log-probs, which is what TRL uses when it has no old log-probs
    def _compute_loss(self, model, inputs):
        self.malloc_policy.training()      # CPU: the step's tensors mmapped, freed pages back to the OS (cpu_malloc)
        old = inputs.get("old_per_token_logps")
        self._fill_old_logps = old if old is not None and bool(torch.isnan(old).any()) else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._fill_old_logps = None

    # ---- dynamic-sampling state in checkpoints: order + keep-rate estimate (ds_state.json, the same on every
    # process) and each process's carried groups (ds_carry_rank<R>.pt) ----

    def _ds_state(self) -> dict[str, Any]:
        return {"order": self._order.state_dict() if self._order is not None else None,
                "keep_rate": self._keep_rate.state_dict(), "totals": dict(self.ds_totals)}

    def _load_ds_state(self, state: dict[str, Any]) -> None:
        if state.get("order") is not None:
            self._order.load_state_dict(state["order"])
        self._keep_rate.load_state_dict(state["keep_rate"])
        self.ds_totals.update(state.get("totals", {}))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if not self.dynamic_sampling:
            return
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        if self.accelerator.is_main_process:
            tmp = os.path.join(folder, "ds_state.json.tmp")
            with open(tmp, "w") as f:
                json.dump(self._ds_state(), f)
            os.replace(tmp, os.path.join(folder, "ds_state.json"))
        carry_file = os.path.join(folder, f"ds_carry_rank{self.accelerator.process_index}.pt")
        if self._carry:
            merged = merge_rows(self._carry, self._tokenizer.pad_token_id)
            torch.save({"batch": {k: v.cpu() for k, v in merged.items()}, "groups": len(self._carry)}, carry_file)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not self.dynamic_sampling:
            return
        path = os.path.join(checkpoint, "ds_state.json")
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            if self._order is None:
                self._pending_ds_state = state
            else:
                self._load_ds_state(state)
        carry_file = os.path.join(checkpoint, f"ds_carry_rank{self.accelerator.process_index}.pt")
        self._carry = []
        if os.path.exists(carry_file):
            saved = torch.load(carry_file, map_location=self.accelerator.device)
            G = self.num_generations
            self._carry = [(saved["batch"], list(range(j * G, (j + 1) * G))) for j in range(int(saved["groups"]))]

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

    # ---- shared prompt prefill of the transformers rollouts (swe_srl.generation.shared_prefill_generate) ----

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's transformers rollout path, with the G rollouts of a group prefilling their prompt once (a KV cache
        copied to the G rows). vLLM, continuous batching and multimodal inputs go through TRL as they are."""
        args = (prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        plain = (not self.shared_prefill or self.use_vllm or getattr(self, "use_transformers_continuous_batching", False)
                 or bool(multimodal_fields) or (images is not None and any(i is not None for i in images)))
        if plain:
            return super()._generate_single_turn(*args)
        model = self.accelerator.unwrap_model(self.model_wrapped)
        plain_generate = model.generate

        def generate(input_ids=None, attention_mask=None, **kwargs):
            if input_ids is None or attention_mask is None or kwargs.keys() - {"generation_config"}:
                return plain_generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            self.prefill_log["calls"] += 1
            self.prefill_log["rows"] += int(input_ids.shape[0])
            return shared_prefill_generate(model, input_ids, attention_mask, **kwargs)

        model.generate = generate        # TRL calls unwrapped_model.generate(...) inside this call only
        try:
            return super()._generate_single_turn(*args)
        finally:
            del model.generate

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
                                           **kwargs):
        out = self._logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs)
        old = self._fill_old_logps
        if old is not None and torch.is_grad_enabled() and old.shape == out[0].shape:
            old.copy_(torch.where(torch.isnan(old), out[0].detach(), old))   # fresh rows: old = current (detached)
            self._fill_old_logps = None
        return out

    def _logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
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
