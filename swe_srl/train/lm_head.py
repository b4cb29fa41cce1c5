"""Tile sizes of TRL's chunked log-prob LM head (``trl.kernels.chunked_logprob``) on CPU.

TRL's fused LM head (``fused_lm_head=True``: SFT, GRPO, our shared-prompt path) never materializes the
``[tokens, vocab]`` logits: it projects tiles of ``TOKEN_CHUNK_SIZE`` (4,096) tokens x ``_CHUNKED_LOGPROB_CHUNK_SIZE``
(32,768) vocabulary columns. On CUDA a Triton kernel folds each tile in place. Elsewhere (CPU) TRL folds a tile with
plain torch ops, and each op makes a tile-sized float temporary (the backward about eight: ``z``, ``log_p``, ``p``,
the gradient, the target mask and the products): a backward over 1,024 tokens holds over 1 GB of them. Tile sizes
change only where the sums are split (each token's log-sum-exp still runs over the whole vocabulary, online; values
agree up to fp32 summation order), so on
CPU we use 256 tokens x 8,192 columns: the temporaries shrink ~16x and the GEMMs stay large enough (256 x 576 @
576 x 8,192 for SmolLM2). Measured: ``benchmarks/lm_head_tiles.py`` (the head alone, per tile size) and
``benchmarks/train_step.py`` (a GRPO step; its ``trl_cpu_tuned`` variant is plain TRL with these tiles).

Config keys ``lm_head_token_chunk`` / ``lm_head_vocab_chunk``: 0 = auto (the CPU values below on CPU, TRL's own
elsewhere), N = N tokens / columns.
"""

from __future__ import annotations

import sys

#: tiles on devices without Triton (CPU); see the module docstring
CPU_TOKEN_CHUNK = 256
CPU_VOCAB_CHUNK = 8192

try:  # TRL >= 1.16 (the tested set); an older TRL has no fused head to tune
    from trl.kernels import chunked_logprob as _kernel
    from trl.trainer import utils as _head
except ImportError:  # pragma: no cover - depends on the installed TRL
    _kernel = _head = None

TRL_TOKEN_CHUNK = getattr(_kernel, "TOKEN_CHUNK_SIZE", None)
TRL_VOCAB_CHUNK = getattr(_head, "_CHUNKED_LOGPROB_CHUNK_SIZE", None)


def resolve(value: int, cpu_default: int, device_type: str, key: str) -> int | None:
    """The tile size ``value`` (0 = auto) means on ``device_type``; None where TRL's own value stays."""
    if value < 0:
        raise ValueError(f"{key}: {value} (must be >= 0; 0 = auto)")
    if value:
        return value
    return cpu_default if device_type == "cpu" else None


def set_tiles(device_type: str, tokens: int = 0, vocab: int = 0) -> tuple[int, int] | None:
    """Set TRL's LM-head tiles for this process (module constants TRL reads at every forward and backward).
    Returns the (tokens, vocab) tile in force, or None when this TRL has no chunked head (nothing changes)."""
    if TRL_TOKEN_CHUNK is None or TRL_VOCAB_CHUNK is None:
        if tokens or vocab:
            print("[swe-srl] lm_head_token_chunk / lm_head_vocab_chunk: this TRL has no chunked log-prob LM head; "
                  "ignored", file=sys.stderr)
        return None
    t = resolve(tokens, CPU_TOKEN_CHUNK, device_type, "lm_head_token_chunk")
    v = resolve(vocab, CPU_VOCAB_CHUNK, device_type, "lm_head_vocab_chunk")
    _kernel.TOKEN_CHUNK_SIZE = TRL_TOKEN_CHUNK if t is None else t
    _head._CHUNKED_LOGPROB_CHUNK_SIZE = TRL_VOCAB_CHUNK if v is None else v
    return current_tiles()


def current_tiles() -> tuple[int, int] | None:
    if _kernel is None or _head is None:
        return None
    return _kernel.TOKEN_CHUNK_SIZE, _head._CHUNKED_LOGPROB_CHUNK_SIZE
