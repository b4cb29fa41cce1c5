"""Shared-prompt log-probs (swe_srl/train/shared_prompt.py, SRLGRPOTrainer.shared_prompt) against TRL's per-row path.

Both paths run on the same SRLGRPOTrainer and tiny random Llama: ``trainer.shared_prompt = False`` is TRL's
``GRPOTrainer._get_per_token_logps_and_entropies`` itself (the override returns super()'s result untouched).
"""

from __future__ import annotations

import logging

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from swe_srl.train import shared_prompt as sp  # noqa: E402
from swe_srl.train.grpo import SRLGRPOTrainer  # noqa: E402

VOCAB, PAD, EOS = 64, 61, 62


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"t{i}": i for i in range(60)}
    vocab.update({"<unk>": 60, "<pad>": PAD, "<eos>": EOS})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def _model(attn: str = "sdpa", seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=PAD,
                      eos_token_id=EOS, bos_token_id=None, tie_word_embeddings=False, attn_implementation=attn)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():   # sharper distributions than the 0.02-std init, so errors show in the log-probs
        model.lm_head.weight.mul_(20.0)
    return model


def _reward(completions, **kwargs):
    return [0.0] * len(completions)


def _trainer(model=None, *, G: int = 4, per_device: int = 8, gradient_checkpointing: bool = False,
             reentrant: bool = False, peft_config=None, entropy_coef: float = 0.1, tmp_path=None) -> SRLGRPOTrainer:
    args = GRPOConfig(output_dir=str(tmp_path or "/tmp/test_shared_prompt"), per_device_train_batch_size=per_device,
                      num_generations=G, max_completion_length=8, report_to=[], use_cpu=True, bf16=False,
                      activation_checkpointing=gradient_checkpointing,
                      activation_checkpointing_kwargs={"use_reentrant": reentrant}, entropy_coef=entropy_coef,
                      temperature=0.7)
    ds = Dataset.from_list([{"prompt": "t1 t2 t3"}] * 4)
    tr = SRLGRPOTrainer(model=model if model is not None else _model(), reward_funcs=[_reward], args=args,
                        train_dataset=ds, processing_class=_tokenizer(), peft_config=peft_config)
    tr.current_gradient_accumulation_steps = 1
    if gradient_checkpointing:   # the HF Trainer does this when train() starts
        tr.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    tr.model.train()
    return tr


def _batch(group_rows: list[int], prompt_lens: list[int], C: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    """Groups of ``group_rows[i]`` rows sharing a prompt of ``prompt_lens[i]`` real tokens; left-padded prompts,
    right-padded completions of varied length (one fully masked row), random advantages."""
    g = torch.Generator().manual_seed(seed)
    P = max(prompt_lens)
    prompts, pmasks = [], []
    for n, plen in zip(group_rows, prompt_lens):
        row = torch.full((P,), PAD, dtype=torch.long)
        row[P - plen:] = torch.randint(0, 60, (plen,), generator=g)
        m = torch.zeros(P, dtype=torch.long)
        m[P - plen:] = 1
        prompts += [row] * n
        pmasks += [m] * n
    B = len(prompts)
    comp = torch.randint(0, 60, (B, C), generator=g)
    lens = torch.randint(1, C + 1, (B,), generator=g)
    lens[0] = C
    cmask = (torch.arange(C)[None] < lens[:, None]).long()
    if B > 2:
        cmask[2] = 0          # e.g. a dynamic-sampling filler row / masked truncated completion
    comp = comp.masked_fill(cmask == 0, PAD)
    return {"prompt_ids": torch.stack(prompts), "prompt_mask": torch.stack(pmasks), "completion_ids": comp,
            "completion_mask": cmask, "advantages": torch.randn(B, generator=g),
            "num_items_in_batch": cmask.sum()}


def _ids(batch):
    return (torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1), batch["completion_ids"].shape[1])


def _logps(tr, batch, shared: bool, model=None):
    ids, mask, c = _ids(batch)
    tr.shared_prompt = shared
    with torch.no_grad():
        return tr._get_per_token_logps_and_entropies(model if model is not None else tr.model, ids, mask, c,
                                                     compute_entropy=True)


def _loss_and_grads(tr, batch, shared: bool):
    tr.shared_prompt = shared
    tr.model.zero_grad(set_to_none=True)
    loss = tr.compute_loss(tr.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def _assert_same_grads(tr, batch):
    before = dict(tr.sp_log)
    loss_trl, g_trl = _loss_and_grads(tr, batch, shared=False)
    assert tr.sp_log == before                      # TRL's path did not touch the shared code
    loss_sp, g_sp = _loss_and_grads(tr, batch, shared=True)
    assert tr.sp_log["shared_chunks"] == before["shared_chunks"] + 1
    assert torch.allclose(loss_sp, loss_trl, atol=1e-6, rtol=1e-5), (loss_sp, loss_trl)
    assert g_trl and set(g_trl) == set(g_sp)
    assert any(g.abs().max() > 1e-4 for g in g_trl.values())   # the comparison is not between zeros
    for name in g_trl:
        torch.testing.assert_close(g_sp[name], g_trl[name], atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- (a) log-probs and entropies


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logps_match_trl_left_padded_prompts(attn, tmp_path):
    tr = _trainer(_model(attn), tmp_path=tmp_path)
    batch = _batch([4, 4, 4], [9, 16, 5])                     # three prompt lengths -> different left padding
    lp_trl, ent_trl, _ = _logps(tr, batch, shared=False)
    lp_sp, ent_sp, aux = _logps(tr, batch, shared=True)
    assert tr.sp_log["shared_chunks"] == 1 and tr.sp_log["fallback_chunks"] == 0
    assert lp_sp.shape == lp_trl.shape == batch["completion_ids"].shape and aux is None
    torch.testing.assert_close(lp_sp, lp_trl, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_sp, ent_trl, atol=1e-5, rtol=0)
    mask = batch["completion_mask"].bool()
    assert (lp_sp[~mask] == 0).all() and lp_sp[mask].abs().min() > 0  # TRL's convention: 0 where masked
    # packed: 3 prompts once + 12 segments, instead of 12 full rows
    assert tr.sp_log["packed_tokens"] == (8 + 15 + 4) + 12 * 6 < tr.sp_log["trl_tokens"] == 12 * 22


def test_logps_match_trl_chunked_and_ref_adapter_off(tmp_path):
    """TRL's old/ref log-prob calls pass batch_size (chunks); a chunk boundary may cut a group."""
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([4, 4], [7, 11])
    ids, mask, c = _ids(batch)
    tr.shared_prompt = False
    ref, _, _ = tr._get_per_token_logps_and_entropies(tr.model, ids, mask, c, batch_size=3)
    tr.shared_prompt = True
    ours, ent, _ = tr._get_per_token_logps_and_entropies(tr.model, ids, mask, c, batch_size=3)
    assert ent is None
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert tr.sp_log["shared_chunks"] == 3            # chunks [0-2] [3-5] [6-7]: each has a shared prompt


# ---------------------------------------------------------------- (b)-(d) loss and gradients


def test_loss_and_grads_match_trl(tmp_path):
    tr = _trainer(G=4, per_device=8, tmp_path=tmp_path)
    _assert_same_grads(tr, _batch([4, 4], [12, 7]))      # G = 4, two groups per micro-batch


@pytest.mark.parametrize("reentrant", [False, True])
def test_loss_and_grads_match_trl_gradient_checkpointing(reentrant, tmp_path):
    tr = _trainer(gradient_checkpointing=True, reentrant=reentrant, tmp_path=tmp_path)
    assert tr.model.is_activation_checkpointing
    _assert_same_grads(tr, _batch([4, 4], [12, 7]))


def test_loss_and_grads_match_trl_lora(tmp_path):
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                          task_type="CAUSAL_LM", init_lora_weights=False)   # non-zero B: LoRA changes the output
    tr = _trainer(peft_config=cfg, tmp_path=tmp_path)
    assert type(tr.model).__name__.startswith("PeftModel")
    names = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    batch = _batch([4, 4], [12, 7])
    _assert_same_grads(tr, batch)
    # TRL's reference log-probs for a new adapter: the same model with the adapter disabled
    with tr.model.disable_adapter():
        ref_trl, _, _ = _logps(tr, batch, shared=False)
        ref_sp, _, _ = _logps(tr, batch, shared=True)
    on_sp, _, _ = _logps(tr, batch, shared=True)
    torch.testing.assert_close(ref_sp, ref_trl, atol=1e-5, rtol=0)
    assert (on_sp - ref_sp).abs().max() > 1e-3        # the adapter was really off for the reference


# ---------------------------------------------------------------- (e) fallback and split groups


def test_fallback_when_no_prompt_is_shared(tmp_path, caplog):
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([1, 1, 1, 1], [5, 9, 6, 9])           # a micro-batch that split every group
    with caplog.at_level(logging.INFO, logger="swe_srl.train"):
        lp_sp, _, _ = _logps(tr, batch, shared=True)
        _logps(tr, batch, shared=True)
    lp_trl, _, _ = _logps(tr, batch, shared=False)
    assert tr.sp_log["fallback_chunks"] == 2 and tr.sp_log["shared_chunks"] == 0
    assert torch.equal(lp_sp, lp_trl)                   # it IS TRL's path
    notes = [r.getMessage() for r in caplog.records if "no two rows with the same prompt" in r.getMessage()]
    assert len(notes) == 1                              # logged once


def test_split_groups_still_share_what_they_can(tmp_path):
    """TRL can hand a micro-batch 3 rows of one group and 1 of another (row shuffle): still exact."""
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([3, 1, 2, 2], [10, 4, 8, 13])
    order = torch.tensor([4, 0, 6, 1, 3, 7, 2, 5])      # interleave the groups' rows
    batch = {k: (v[order] if v.dim() else v) for k, v in batch.items()}
    _assert_same_grads(tr, batch)


def test_fallback_for_unsupported_inputs_and_models(tmp_path, caplog):
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([4, 4], [6, 9])
    ids, mask, c = _ids(batch)
    right = torch.cat([batch["prompt_mask"].flip(1), batch["completion_mask"]], 1)   # right-padded prompts
    assert sp.layout_problem(ids, right, c) is not None and sp.layout_problem(ids, mask, c) is None
    with caplog.at_level(logging.WARNING, logger="swe_srl.train"):
        tr.shared_prompt = True
        with torch.no_grad():
            tr._get_per_token_logps_and_entropies(tr.model, ids, right, c)
            out, _, aux = tr._get_per_token_logps_and_entropies(tr.model, ids, mask, c, compute_aux_loss=False,
                                                                token_type_ids=torch.zeros_like(ids))
    assert tr.sp_log["shared_chunks"] == 0
    assert any("not left-padded" in r.getMessage() for r in caplog.records)
    assert any("multimodal" in r.getMessage() for r in caplog.records)
    flash = _model()
    flash.config._attn_implementation = "flash_attention_2"
    assert "flash_attention_2" in sp.model_problem(flash)
    assert sp.model_problem(_model("eager")) is None and sp.model_problem(_model()) is None


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_self_check_catches_a_wrong_layout(attn, tmp_path, monkeypatch):
    """The once-per-model self-check compares with TRL's path: a layout that lets a completion token see what its row
    in TRL cannot (another completion: eager's packed mask; its own future: sdpa's segment mask) fails."""
    tr = _trainer(_model(attn), tmp_path=tmp_path)
    per_row = lambda m, i, a, c: GRPOTrainer._get_per_token_logps_and_entropies(tr, m, i, a, c)  # noqa: E731
    assert sp.self_check(tr.model, per_row) < 1e-5
    if attn == "eager":
        real_pack = sp.pack

        def leaky_pack(*args, **kwargs):
            pk = real_pack(*args, **kwargs)
            causal = torch.ones_like(pk.attention_mask).tril()   # ignore segment boundaries
            pk.attention_mask = causal.masked_fill(causal == 0, torch.finfo(causal.dtype).min) - 1
            return pk

        monkeypatch.setattr(sp, "pack", leaky_pack)
    else:
        real_mask = sp._segment_mask

        def leaky_mask(n, c, valid, device):
            m = real_mask(n, c, valid, device)
            return torch.ones_like(m)                             # segments see their own future tokens

        monkeypatch.setattr(sp, "_segment_mask", leaky_mask)
    assert sp.self_check(tr.model, per_row) > 1e-2
    tr2 = _trainer(_model(attn), tmp_path=tmp_path)
    batch = _batch([4, 4], [6, 9])
    lp, _, _ = _logps(tr2, batch, shared=True)
    assert tr2.sp_log["shared_chunks"] == 0 and tr2.sp_log["fallback_chunks"] == 0   # disabled for the model
    torch.testing.assert_close(lp, _logps(tr2, batch, shared=False)[0], atol=0, rtol=0)


# ---------------------------------------------------------------- layout and group shuffle


def test_pack_layout():
    ids = torch.tensor([[PAD, 5, 6, 7, 1, 2], [PAD, 5, 6, 7, 3, 4]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    pk = sp.pack(ids, mask, 2, sp.find_prompt_groups(ids, mask, 2))
    # [5 6 | 7 1 | 7 3]: prompt minus its last token, then (last prompt token, completion[:-1]) per row
    assert pk.input_ids.tolist() == [[5, 6, 7, 1, 7, 3]]
    assert pk.position_ids.tolist() == [[1, 2, 3, 4, 3, 4]]          # TRL's column positions
    assert pk.shift_labels.tolist() == [[-100, -100, 1, 2, 3, -100]]  # row 1's last completion token is padding
    a = pk.attention_mask[0, 0].int().tolist()
    assert a == [[1, 0, 0, 0, 0, 0],
                 [1, 1, 0, 0, 0, 0],
                 [1, 1, 1, 0, 0, 0],
                 [1, 1, 1, 1, 0, 0],
                 [1, 1, 0, 0, 1, 0],     # row 2's segment never sees row 1's
                 [1, 1, 0, 0, 1, 1]]
    assert pk.row_group.tolist() == [0, 0] and pk.row_start.tolist() == [2, 4]


def test_shuffle_groups_keeps_groups_together():
    torch.manual_seed(0)
    ids = torch.tensor([[g] * 3 for g in (0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3)])
    batch = {"prompt_ids": ids, "prompt_mask": torch.ones_like(ids), "row": torch.arange(12),
             "text": [f"r{i}" for i in range(12)], "scalar": torch.tensor(5), "none": None}
    out = sp.shuffle_groups(batch)
    assert sorted(out["row"].tolist()) == list(range(12)) and out["row"].tolist() != list(range(12))
    assert out["text"] == [f"r{i}" for i in out["row"].tolist()] and out["none"] is None
    assert out["scalar"].item() == 5
    firsts = out["prompt_ids"][:, 0].tolist()
    assert all(len(set(firsts[i:i + 3])) == 1 for i in range(0, 12, 3))   # each block of 3 is one group
    assert sp.shuffle_groups({"x": torch.arange(3)}) is None


def test_training_step_uses_shared_path_with_group_shuffle(tmp_path):
    """A real train() step: TRL splits the generation batch into micro-batches after shuffling it; our group-wise
    shuffle keeps each micro-batch whole groups, so every loss micro-batch takes the shared path."""
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                      gradient_accumulation_steps=3, max_completion_length=5, max_steps=1, report_to=[],
                      use_cpu=True, bf16=False, activation_checkpointing=False, logging_steps=1, save_strategy="no")
    ds = Dataset.from_list([{"prompt": " ".join(f"t{(7 * i + j) % 60}" for j in range(3 + i))} for i in range(6)])
    tr = SRLGRPOTrainer(model=_model(), reward_funcs=[lambda completions, **k: [float(len(c)) for c in completions]],
                        args=args, train_dataset=ds, processing_class=_tokenizer(), dynamic_sampling=False)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    tr.train()
    assert tr.sp_log["shared_chunks"] == 3 and tr.sp_log["fallback_chunks"] == 0   # 3 micro-batches, 1 group each
    assert tr.sp_log["packed_tokens"] < tr.sp_log["trl_tokens"]
    assert any(not torch.equal(before[n], p) for n, p in tr.model.named_parameters())


# ---------------------------------------------------------------- the two-call attention (sdpa models)


def test_sdpa_models_use_the_two_call_attention_without_an_LxL_tensor(tmp_path, monkeypatch):
    """sdpa models are switched to the shared-prompt attention function; every attention call of the shared path
    has queries and keys far shorter than the packed row (no [L, L] score or mask), and a plain forward (generation,
    TRL's own path) is bit-identical to transformers' sdpa."""
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([4, 4], [14, 9])
    ids, mask, c = _ids(batch)
    with torch.no_grad():
        plain_before = tr.model(input_ids=ids, attention_mask=mask).logits
    real = torch.nn.functional.scaled_dot_product_attention
    shapes = []

    def spy(q, k, v, attn_mask=None, **kw):
        shapes.append((tuple(q.shape), tuple(k.shape), None if attn_mask is None else tuple(attn_mask.shape)))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    _assert_same_grads(tr, batch)
    assert tr.model.config._attn_implementation == sp.ATTN_IMPL
    packed_len = (13 + 4 * c)                     # the longer group's packed row
    shared = [s for s in shapes if s[0][0] in (1, 4) and s[0][2] != ids.shape[1]]
    assert shared, shapes
    for q, k, m in shared:
        assert q[2] < packed_len and k[2] < packed_len
        assert m is None or m[-1] < packed_len
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", real)
    with torch.no_grad():
        plain_after = tr.model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(plain_before, plain_after)


def test_completion_mask_with_a_hole_and_a_one_token_prompt(tmp_path):
    """A completion mask that is not real-tokens-then-padding (a masked token inside) hides that key from the later
    tokens as TRL's row does; a group whose prompt is one token has no shared prefix (segments only)."""
    tr = _trainer(tmp_path=tmp_path)
    batch = _batch([4, 4], [1, 8])
    batch["completion_mask"][1] = torch.tensor([1, 1, 0, 1, 1, 1])
    batch["completion_mask"][5] = torch.tensor([1, 0, 1, 1, 0, 0])
    lp_trl, ent_trl, _ = _logps(tr, batch, shared=False)
    lp_sp, ent_sp, _ = _logps(tr, batch, shared=True)
    assert tr.sp_log["shared_chunks"] == 1
    torch.testing.assert_close(lp_sp, lp_trl, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_sp, ent_trl, atol=1e-5, rtol=0)
    _assert_same_grads(tr, batch)


def test_attention_switch_is_not_saved(tmp_path):
    """The switch to the shared-prompt attention function stays in memory: a checkpoint written afterwards loads as a
    plain sdpa model anywhere (vLLM, `swe-srl eval`, another machine without swe-srl)."""
    tr = _trainer(tmp_path=tmp_path)
    _logps(tr, _batch([4], [5]), shared=True)
    assert tr.model.config._attn_implementation == sp.ATTN_IMPL
    tr.model.save_pretrained(tmp_path / "ckpt")
    assert sp.ATTN_IMPL not in (tmp_path / "ckpt" / "config.json").read_text()
    again = LlamaForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert again.config._attn_implementation == "sdpa"
