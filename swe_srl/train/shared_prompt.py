"""Shared-prompt log-probs for GRPO: each distinct prompt of a micro-batch goes through the model once.

An SRL step instance is a long prompt and a short action, and GRPO scores G completions of the same prompt. TRL
pushes every (prompt + completion) row through the model on its own, so a group's prompt is computed G times forward
and G times backward. Here the rows that share a prompt are packed into ONE sequence (the Prefix Grouper layout,
arXiv 2506.05433)::

    [ prompt[:-1] | p_last c1[:-1] | p_last c2[:-1] | ... | p_last cG[:-1] ]

in which the prompt is causal, and each segment ``p_last ci[:-1]`` attends to the prompt and causally to itself only
(never to another completion). Every token keeps the position id it has in TRL's left-padded row (column index), so
RoPE and learned position embeddings see exactly what TRL's path sees. The last prompt token is repeated at the head of
each segment: its hidden state predicts the segment's first completion token. The log-probs are scored by TRL's own
fused LM head (``fused_lm_head=True`` with pre-shifted ``shift_labels``), so temperature, logit scaling/soft-capping,
fp32 casting and the entropies are TRL's code.

Two attention layouts compute that pattern:

* ``sdpa`` models (the default): the model is switched to the attention function ``swe_srl_shared_prompt``
  (registered in transformers' ``AttentionInterface``; without our ``srl_layout`` keyword it IS transformers'
  ``sdpa_attention_forward``, so generation and TRL's own calls are unchanged). Given the layout of a packed group it
  runs two SDPA calls per layer: the prompt causally (``is_causal``, the same kernel TRL's rows use), and the G
  segments as a batch of G, each attending to the prompt's keys/values (expanded) plus its own causal part under a
  small ``[C, n + C]`` mask. No ``L x L`` tensor exists. The LM head only sees the G x C segment positions (a forward
  hook drops the prompt's hidden states before TRL's head). The layout travels as a forward keyword, so gradient
  checkpointing's recompute (which replays the layer's keywords) sees it too. One packed forward per group.
* ``eager`` models: one packed forward per micro-batch with a dense ``[L, L]`` 4-D additive mask (small models and
  tests only: the mask and the eager attention weights are quadratic in the packed length).

Attention only mixes a query with the keys it would see in TRL's row, so log-probs, entropies and gradients are the
same (up to float summation order): the prompt's activations are shared and their gradient is the sum over the G
segments, which is what G separate rows accumulate. It is an ordinary forward (no KV cache), so gradient
checkpointing (reentrant or not), PEFT/LoRA, DDP/FSDP wrappers and TRL's chunked LM head work unchanged.

Pure functions over a model and tensors; ``swe_srl.train.grpo.SRLGRPOTrainer`` decides when to use them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward, use_gqa_in_sdpa
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

IGNORE = -100
ATTN_IMPL = "swe_srl_shared_prompt"
SUPPORTED_ATTENTION = ("sdpa", ATTN_IMPL, "eager")


def shared_prompt_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            is_causal: bool | None = None, srl_layout: "GroupLayout | None" = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention function: ``sdpa_attention_forward`` itself, unless ``srl_layout = (n, G, C)`` says
    the (single) row is a packed group ``[n prompt tokens | G segments of C tokens]``; then the prompt attends causally
    to itself and each segment to the prompt plus causally to itself, in two SDPA calls (no ``L x L`` mask)."""
    if srl_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    n, g, c = srl_layout.prompt_len, srl_layout.n_segments, srl_layout.segment_len
    b, hq, length, d = query.shape
    hkv = key.shape[1]
    if b != 1 or length != n + g * c:
        raise ValueError(f"shared-prompt attention: query {tuple(query.shape)} does not match layout {srl_layout}")
    sdpa = torch.nn.functional.scaled_dot_product_attention
    outs = []
    if n:   # the prompt: plain causal attention over its own n tokens (flash kernel, like TRL's rows)
        gqa = {"enable_gqa": True} if hq != hkv else {}
        outs.append(sdpa(query[:, :, :n], key[:, :, :n], value[:, :, :n], dropout_p=dropout, is_causal=True,
                         scale=scaling, **gqa))
    # the segments as a batch of G: [G, heads, C, d]
    qs = query[0, :, n:].reshape(hq, g, c, d).transpose(0, 1)
    ks = key[0, :, n:].reshape(hkv, g, c, d).transpose(0, 1)
    vs = value[0, :, n:].reshape(hkv, g, c, d).transpose(0, 1)
    if n:
        ks = torch.cat([key[:, :, :n].expand(g, -1, -1, -1), ks], dim=2)
        vs = torch.cat([value[:, :, :n].expand(g, -1, -1, -1), vs], dim=2)
    mask = _segment_mask(n, c, srl_layout.segment_valid, query.device)
    gqa = {}
    if hq != hkv:
        if use_gqa_in_sdpa(mask, ks, vs):
            gqa = {"enable_gqa": True}
        else:
            ks, vs = repeat_kv(ks, hq // hkv), repeat_kv(vs, hq // hkv)
    seg = sdpa(qs, ks, vs, attn_mask=mask, dropout_p=dropout, is_causal=mask is None, scale=scaling, **gqa)
    outs.append(seg.transpose(0, 1).reshape(1, hq, g * c, d))
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


@dataclass(frozen=True)
class GroupLayout:
    """A packed group row: ``prompt_len`` shared prompt tokens, then ``n_segments`` segments of ``segment_len``.
    ``segment_valid`` (n_segments, segment_len): which segment keys are real, None when every segment's real tokens
    are a prefix (then the causal pattern alone hides the padding from every real query)."""

    prompt_len: int
    n_segments: int
    segment_len: int
    segment_valid: torch.Tensor | None = None


def _segment_mask(n: int, c: int, valid: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Keys a segment query sees: the n prompt keys and its own segment causally; (C, n + C), or (G, 1, C, n + C)
    with padded keys hidden; None for the plain causal case (no prompt, no inner padding)."""
    if n == 0 and valid is None:
        return None
    mask = torch.ones(c, n + c, dtype=torch.bool, device=device).tril(diagonal=n)
    if valid is None:
        return mask
    keys = torch.cat([valid.new_ones(valid.shape[0], n), valid], dim=1)       # (G, n + C)
    return mask[None, None] & keys[:, None, None, :]


ALL_ATTENTION_FUNCTIONS.register(ATTN_IMPL, shared_prompt_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPL, sdpa_mask)   # the sdpa masks when no layout is passed


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


def _causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_shared_attention(model: Any) -> bool:
    """Switch an ``sdpa`` model (unwrapped; PEFT allowed) to :data:`ATTN_IMPL` (idempotent; the switch is not saved
    with the model: transformers does not serialize the attention implementation). True when it now uses it."""
    lm = _causal_lm(model)
    impl = _attention_impl(lm)
    if impl == "sdpa":
        lm.set_attn_implementation(ATTN_IMPL)
        impl = _attention_impl(lm)
    return impl == ATTN_IMPL


@contextlib.contextmanager
def _hidden_states_from(backbone: Any, start: int):
    """While active, the backbone returns its last hidden states from position ``start`` on (TRL's fused LM head
    then projects only those: the G x C segment positions, not the prompt's)."""
    if start == 0:
        yield
        return

    def hook(module: Any, args: Any, output: Any) -> Any:
        output.last_hidden_state = output.last_hidden_state[:, start:]
        return output

    handle = backbone.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _group_forward(model: Any, backbone: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, c: int,
                   rows: Sequence[int], autocast: Callable[[], Any]) -> Any:
    """One packed forward of a group (rows sharing a prompt) through the two-call attention: (G, C) outputs."""
    device = input_ids.device
    p = input_ids.shape[1] - c
    g = len(rows)
    r0 = rows[0]
    cols = torch.nonzero(attention_mask[r0, :p - 1], as_tuple=False).flatten()
    n = cols.numel()
    seg_ids = input_ids[list(rows), p - 1:p + c - 1]                                  # (G, C): p_last c[:-1]
    seg_valid = attention_mask[list(rows), p - 1:p + c - 1] != 0
    labels = input_ids[list(rows), p:].masked_fill(attention_mask[list(rows), p:] == 0, IGNORE)
    ids = torch.cat([input_ids[r0, cols], seg_ids.reshape(-1)])[None]
    pos = torch.cat([cols, torch.arange(p - 1, p + c - 1, device=device).repeat(g)])[None]
    prefix = bool((seg_valid.cummin(dim=1).values == seg_valid).all())   # real tokens first, then padding
    layout = GroupLayout(n, g, c, None if prefix else seg_valid)
    with _hidden_states_from(backbone, n), autocast():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos,
                    shift_labels=labels.reshape(1, -1), fused_lm_head=True, srl_layout=layout)
    return out


def shared_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 groups: Sequence[Sequence[int]], *, compute_entropy: bool = False, config_model: Any = None,
                 autocast: Callable[[], Any] = contextlib.nullcontext, pad_token_id: int = 0,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, logits_to_keep) and entropies of the completions, each prompt group's prompt once.

    ``model`` is what TRL calls (possibly DDP/PEFT-wrapped; its causal LM carries TRL's fused LM head);
    ``config_model`` its unwrapped form (config, dtype). Same values as TRL's
    ``outputs.log_probs[:, -logits_to_keep:]`` / ``outputs.entropy[:, -logits_to_keep:]``.
    ``sdpa`` models: one forward per group with the two-call attention (the model is switched to
    :data:`ATTN_IMPL`, see :func:`use_shared_attention`); ``eager`` models: one packed forward with a dense mask.
    """
    inner = config_model if config_model is not None else model
    impl = _attention_impl(inner)
    c = logits_to_keep
    if impl != "eager" and use_shared_attention(inner):
        backbone = _causal_lm(inner).base_model
        order = [r for rows in groups for r in rows]
        logps, entropies = [], []
        for rows in groups:
            out = _group_forward(model, backbone, input_ids, attention_mask, c, rows, autocast)
            logps.append(out.log_probs.view(len(rows), c))
            if compute_entropy:
                entropies.append(out.entropy.view(len(rows), c))
        inverse = torch.empty(len(order), dtype=torch.long, device=input_ids.device)
        inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(len(order), device=input_ids.device)
        lp = torch.cat(logps)[inverse]
        ent = torch.cat(entropies)[inverse] if compute_entropy else None
        return lp, ent
    float_dtype = param_dtype(inner) if impl == "eager" else None
    pk = pack(input_ids, attention_mask, c, groups, float_mask_dtype=float_dtype, pad_token_id=pad_token_id)
    with autocast():
        out = model(input_ids=pk.input_ids, attention_mask=pk.attention_mask, position_ids=pk.position_ids,
                    shift_labels=pk.shift_labels, fused_lm_head=True)
    cols = pk.row_start[:, None] + torch.arange(c, device=input_ids.device)[None]
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
