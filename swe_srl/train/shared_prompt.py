"""Shared-prompt log-probs for GRPO: each distinct prompt of a micro-batch goes through the model once.

An SRL step instance is a long prompt and a short action, and GRPO scores G completions of the same prompt. TRL
pushes every (prompt + completion) row through the model on its own, so a group's prompt is computed G times forward
and G times backward. Here the rows that share a prompt are packed into ONE sequence (the Prefix Grouper layout,
arXiv 2506.05433)::

    [ prompt[:-1] | p_last c1[:-1] | p_last c2[:-1] | ... | p_last cG[:-1] ]

with a 4-D attention mask in which the prompt is causal, and each segment ``p_last ci[:-1]`` attends to the prompt
and causally to itself only (never to another completion). Every token keeps the position id it has in TRL's
left-padded row (column index), so RoPE and learned position embeddings see exactly what TRL's path sees. The last
prompt token is repeated at the head of each segment: its hidden state predicts the segment's first completion token.
The log-probs are scored by TRL's own fused LM head (``fused_lm_head=True`` with pre-shifted ``shift_labels``), so
temperature, logit scaling/soft-capping, fp32 casting and the entropies are TRL's code.

Attention only mixes a query with the keys it would see in TRL's row, so log-probs, entropies and gradients are the
same (up to float summation order): the prompt's activations are shared and their gradient is the sum over the G
segments, which is what G separate rows accumulate. It is ONE ordinary forward (no KV cache), so gradient
checkpointing (reentrant or not), PEFT/LoRA, DDP/FSDP wrappers and TRL's chunked LM head work unchanged.

Pure functions over a model and tensors; ``swe_srl.train.grpo.SRLGRPOTrainer`` decides when to use them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

IGNORE = -100
SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass
class Packed:
    """One packed row per prompt group (right-padded to a common length)."""

    input_ids: torch.Tensor        # (n_groups, L)
    attention_mask: torch.Tensor   # (n_groups, 1, L, L) bool (sdpa) or additive float (eager)
    position_ids: torch.Tensor     # (n_groups, L)
    shift_labels: torch.Tensor     # (n_groups, L): label predicted by the hidden state at each position, or -100
    row_group: torch.Tensor        # (B,): packed row holding batch row b
    row_start: torch.Tensor        # (B,): where row b's C scored positions start in its packed row
    completion_len: int

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


def find_prompt_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int) -> list[list[int]]:
    """Rows grouped by identical prompt (same tokens at the same unpadded columns), in order of first appearance."""
    p = input_ids.shape[1] - completion_len
    key = input_ids[:, :p].masked_fill(attention_mask[:, :p] == 0, -1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    groups: dict[int, list[int]] = {}
    for row, g in enumerate(inverse.tolist()):
        groups.setdefault(g, []).append(row)
    return list(groups.values())


def layout_problem(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int) -> str | None:
    """Why the batch cannot use the shared layout (None when it can)."""
    p = input_ids.shape[1] - completion_len
    if completion_len < 1 or p < 1:
        return f"prompt width {p} / completion width {completion_len}"
    if attention_mask.dim() != 2:
        return "attention mask is not 2-D"
    if not bool((attention_mask[:, p - 1] == 1).all()):
        return "prompts are not left-padded (last prompt column is padding)"
    return None


def _text_config(model: Any) -> Any:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def model_problem(model: Any) -> str | None:
    """Why ``model`` (unwrapped from DDP/accelerate, PEFT allowed) cannot use the shared layout (None when it can)."""
    peft_cfg = getattr(model, "active_peft_config", None)
    if peft_cfg is not None and getattr(peft_cfg, "is_prompt_learning", False):
        return "PEFT prompt learning adds virtual tokens"
    cfg = _text_config(model)
    if cfg is None:
        return "model has no config"
    impl = getattr(cfg, "_attn_implementation", None) or getattr(model.config, "_attn_implementation", None)
    if impl not in SUPPORTED_ATTENTION:
        return f"attention implementation {impl!r} takes no custom 4-D mask (shared layout needs one of " \
               f"{', '.join(SUPPORTED_ATTENTION)})"
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None:
        if any(t != "full_attention" for t in layer_types):
            return f"layer types {sorted(set(layer_types))} (sliding/chunked attention needs the model's own mask)"
    elif getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention needs the model's own mask"
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder model"
    return None


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int, groups: Sequence[Sequence[int]],
         *, float_mask_dtype: torch.dtype | None = None, pad_token_id: int = 0) -> Packed:
    """Build the packed batch for ``groups`` (every row of the batch in exactly one group; rows of a group share
    the prompt). ``float_mask_dtype`` set: additive float mask (eager attention); else a bool mask (sdpa)."""
    device = input_ids.device
    b, t = input_ids.shape
    c = completion_len
    p = t - c
    seg_cols = torch.arange(p - 1, p + c - 1, device=device)           # the columns of one segment
    rows_ids, rows_pos, rows_seg, rows_valid, rows_lab = [], [], [], [], []
    row_group = torch.empty(b, dtype=torch.long, device=device)
    row_start = torch.empty(b, dtype=torch.long, device=device)
    for gi, rows in enumerate(groups):
        r0 = rows[0]
        cols = torch.nonzero(attention_mask[r0, :p - 1], as_tuple=False).flatten()
        n = cols.numel()
        ids = [input_ids[r0, cols]]
        pos = [cols]
        seg = [torch.zeros(n, dtype=torch.long, device=device)]
        valid = [torch.ones(n, dtype=torch.bool, device=device)]
        lab = [torch.full((n,), IGNORE, dtype=torch.long, device=device)]
        for k, r in enumerate(rows):
            row_group[r] = gi
            row_start[r] = n + k * c
            ids.append(input_ids[r, p - 1:p + c - 1])
            pos.append(seg_cols)
            seg.append(torch.full((c,), k + 1, dtype=torch.long, device=device))
            valid.append(attention_mask[r, p - 1:p + c - 1] != 0)
            lab.append(input_ids[r, p:].masked_fill(attention_mask[r, p:] == 0, IGNORE))
        rows_ids.append(torch.cat(ids))
        rows_pos.append(torch.cat(pos))
        rows_seg.append(torch.cat(seg))
        rows_valid.append(torch.cat(valid))
        rows_lab.append(torch.cat(lab))
    width = max(x.numel() for x in rows_ids)

    def stack(xs: list[torch.Tensor], value: Any) -> torch.Tensor:
        return torch.stack([torch.cat([x, x.new_full((width - x.numel(),), value)]) for x in xs])

    ids_t = stack(rows_ids, pad_token_id)
    pos_t = stack(rows_pos, 0)
    seg_t = stack(rows_seg, -1)                     # -1: right padding of the packed row
    valid_t = stack(rows_valid, False)
    lab_t = stack(rows_lab, IGNORE)
    q = torch.arange(width, device=device)
    causal = q[None, :] <= q[:, None]                                             # (L, L): key <= query
    same = (seg_t[:, None, :] == 0) | (seg_t[:, None, :] == seg_t[:, :, None])    # key in prompt or in query's seg
    allowed = causal[None] & same & valid_t[:, None, :] & (seg_t[:, :, None] >= 0)
    pad_q = seg_t < 0                                 # padding queries attend to themselves (no empty softmax row)
    allowed |= torch.eye(width, dtype=torch.bool, device=device)[None] & pad_q[:, :, None]
    mask = allowed[:, None]
    if float_mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=float_mask_dtype, device=device).masked_fill(
            ~mask, torch.finfo(float_mask_dtype).min)
    return Packed(ids_t, mask, pos_t, lab_t, row_group, row_start, c)


def _attention_impl(model: Any) -> str | None:
    cfg = _text_config(model)
    return getattr(cfg, "_attn_implementation", None) if cfg is not None else None


def has_dropout(model: Any) -> bool:
    """Whether a forward in training mode is stochastic (a dropout module or attention dropout above 0)."""
    cfg = _text_config(model)
    if cfg is not None and float(getattr(cfg, "attention_dropout", 0.0) or 0.0) > 0:
        return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def param_dtype(model: Any) -> torch.dtype:
    for prm in model.parameters():
        if prm.is_floating_point():
            return prm.dtype
    return torch.float32


def shared_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 groups: Sequence[Sequence[int]], *, compute_entropy: bool = False, config_model: Any = None,
                 autocast: Callable[[], Any] = contextlib.nullcontext, pad_token_id: int = 0,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, logits_to_keep) and entropies of the completions, one packed row per prompt group.

    ``model`` is what TRL calls (possibly DDP/PEFT-wrapped; its causal LM carries TRL's fused LM head);
    ``config_model`` its unwrapped form (config, dtype). Same values as TRL's
    ``outputs.log_probs[:, -logits_to_keep:]`` / ``outputs.entropy[:, -logits_to_keep:]``.
    """
    inner = config_model if config_model is not None else model
    impl = _attention_impl(inner)
    float_dtype = param_dtype(inner) if impl == "eager" else None
    pk = pack(input_ids, attention_mask, logits_to_keep, groups, float_mask_dtype=float_dtype,
              pad_token_id=pad_token_id)
    with autocast():
        out = model(input_ids=pk.input_ids, attention_mask=pk.attention_mask, position_ids=pk.position_ids,
                    shift_labels=pk.shift_labels, fused_lm_head=True)
    cols = pk.row_start[:, None] + torch.arange(logits_to_keep, device=input_ids.device)[None]
    rows = pk.row_group[:, None].expand_as(cols)
    logps = out.log_probs[rows, cols]
    entropies = out.entropy[rows, cols] if compute_entropy else None
    return logps, entropies


def shuffle_groups(seq_dict: dict[str, Any]) -> dict[str, Any] | None:
    """Like TRL's ``shuffle_sequence_dict``, but rows with the same prompt (``prompt_ids``/``prompt_mask``) move
    together: groups are shuffled, and the rows of a group stay adjacent, so micro-batches split from the result hold
    whole groups. None when the dict has no ``prompt_ids``."""
    ids, mask = seq_dict.get("prompt_ids"), seq_dict.get("prompt_mask")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.ones_like(ids)
    groups = find_prompt_groups(ids, mask, 0)
    order = torch.randperm(len(groups)).tolist()
    perm = torch.tensor([r for gi in order for r in groups[gi]], dtype=torch.long)

    def permute(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, torch.Tensor):
            return v if v.ndim == 0 else v[perm.to(v.device)]
        return [v[i] for i in perm.tolist()]

    return {k: permute(v) for k, v in seq_dict.items()}


def self_check(model: Any, per_row: Callable[..., Any], *, config_model: Any = None,
               autocast: Callable[[], Any] = contextlib.nullcontext, seed: int = 0) -> float:
    """Max |log-prob difference| between the shared layout and ``per_row`` (TRL's path: a callable
    ``(model, input_ids, attention_mask, logits_to_keep) -> (logps, entropies, aux)``) on a small synthetic batch:
    two groups of two rows, left padding, right padding of completions. No gradient; run in eval mode (dropout
    off: with dropout the two paths draw different masks), the training mode is restored after."""
    inner = config_model if config_model is not None else model
    vocab = int(getattr(_text_config(inner), "vocab_size", 32) or 32)
    device = next(inner.parameters()).device
    g = torch.Generator().manual_seed(seed)
    p, c = 12, 6
    ids = torch.randint(0, vocab, (4, p + c), generator=g)
    ids[1, :p] = ids[0, :p]
    ids[3, :p] = ids[2, :p]
    mask = torch.ones(4, p + c, dtype=torch.long)
    mask[2:, :4] = 0                      # group 2: 4 columns of left padding
    mask[1, p + 3:] = 0                   # a short completion
    mask[3, p + 5:] = 0
    ids, mask = ids.to(device), mask.to(device)
    groups = find_prompt_groups(ids, mask, c)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            ref, _, _ = per_row(model, ids, mask, c)
            ours, _ = shared_logps(model, ids, mask, c, groups, config_model=config_model, autocast=autocast)
    finally:
        inner.train(was_training)
    valid = mask[:, p:].bool()
    return float((ref.float() - ours.float()).abs()[valid].max().item())
