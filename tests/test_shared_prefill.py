"""Shared prompt prefill (swe_srl.generation.shared_prefill_generate): the rows of a group prefill their prompt once
and generate exactly what the plain generate call does."""

import pytest
import torch

from swe_srl.generation import shared_prefill_generate
from tiny_model import build_tiny_model, build_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer()
    model = build_tiny_model(len(tok), seed=3).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = None     # run every row to max_new_tokens
    return model, tok


def _batch(tok, texts, reps):
    tok.padding_side = "left"
    flat = [t for t, r in zip(texts, reps) for _ in range(r)]
    return tok(flat, return_tensors="pt", padding=True, add_special_tokens=False)


class CountTokens:
    """Forward pre-hook on the backbone: tokens (batch x length) of every forward."""

    def __init__(self, model):
        self.calls = []
        self.h = model.model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls.append(tuple(ids.shape))


def test_greedy_same_tokens_and_prompt_prefilled_once(tiny):
    model, tok = tiny
    enc = _batch(tok, ["hello there, x = 1", "a much longer prompt: y = (2 + 3) * 4, z = y - 1", "q"], [4, 4, 1])
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        plain = model.generate(**enc, **kw)
        counter = CountTokens(model)
        try:
            shared = shared_prefill_generate(model, enc["input_ids"], enc["attention_mask"], **kw)
        finally:
            counter.h.remove()
    assert torch.equal(plain, shared)
    b, length = enc["input_ids"].shape
    # first forward: the 3 distinct prompts minus their last token; then generate feeds one token per row and step
    assert counter.calls[0] == (3, length - 1)
    assert all(c == (b, 1) for c in counter.calls[1:])
    assert len(counter.calls) == 1 + 12


def test_sampling_same_tokens_with_same_seed(tiny):
    model, tok = tiny
    enc = _batch(tok, ["sample me 1", "and me, a bit longer 2"], [3, 2])
    kw = dict(max_new_tokens=10, do_sample=True, temperature=1.0, top_p=1.0, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        torch.manual_seed(7)
        plain = model.generate(**enc, **kw)
        torch.manual_seed(7)
        shared = shared_prefill_generate(model, enc["input_ids"], enc["attention_mask"], **kw)
    assert torch.equal(plain, shared)


def test_no_repeats_is_the_plain_call(tiny):
    model, tok = tiny
    enc = _batch(tok, ["one", "two two"], [1, 1])
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    counter = CountTokens(model)
    try:
        with torch.no_grad():
            shared_prefill_generate(model, enc["input_ids"], enc["attention_mask"], **kw)
    finally:
        counter.h.remove()
    assert counter.calls[0] == tuple(enc["input_ids"].shape)     # generate's own prefill, all rows


def test_grpo_rollouts_share_prefill_and_match_trl(tiny, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    from swe_srl.train.grpo import SRLGRPOTrainer

    _, tok = tiny
    model = build_tiny_model(len(tok), seed=3)
    model.generation_config.pad_token_id = tok.pad_token_id
    cfg = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                     max_completion_length=6, report_to=[], use_cpu=True, seed=0, beta=0.0,
                     generation_kwargs={"do_sample": False})
    tr = SRLGRPOTrainer(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=cfg,
                        train_dataset=Dataset.from_list([{"prompt": "x"}] * 4), processing_class=tok,
                        dynamic_sampling=False)
    p1 = tok("first prompt = 1", add_special_tokens=False)["input_ids"]
    p2 = tok("second, longer prompt = 22", add_special_tokens=False)["input_ids"]
    prompt_ids = [p1] * 4 + [p2] * 4
    tr.shared_prefill = False
    plain, _ = tr._generate_single_turn(prompt_ids, None, {}, 4)
    assert tr.prefill_log == {"calls": 0, "rows": 0}
    tr.shared_prefill = True
    shared, _ = tr._generate_single_turn(prompt_ids, None, {}, 4)
    assert shared == plain
    assert tr.prefill_log == {"calls": 1, "rows": 8}
    assert "generate" not in vars(tr.accelerator.unwrap_model(tr.model_wrapped))   # the patch is gone
