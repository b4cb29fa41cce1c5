"""LM-head tiles (swe_srl/train/lm_head.py): the tile sizes are value-preserving and set per device."""

import pytest
import torch

from swe_srl.train import lm_head

kernel = pytest.importorskip("trl.kernels.chunked_logprob")
head = pytest.importorskip("trl.trainer.utils")


@pytest.fixture(autouse=True)
def restore_tiles():
    before = kernel.TOKEN_CHUNK_SIZE, head._CHUNKED_LOGPROB_CHUNK_SIZE
    yield
    kernel.TOKEN_CHUNK_SIZE, head._CHUNKED_LOGPROB_CHUNK_SIZE = before


def _logps_and_grads(tile: int, n: int = 600, h: int = 16, vocab: int = 1000, vocab_tile: int = 384):
    kernel.TOKEN_CHUNK_SIZE = tile
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, h, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (n,), generator=g)
    # vocabulary tile 384: three tiles, the last one short
    lp, ent, *_ = kernel.ChunkedLogProbFunction.apply(hidden, weight, None, targets, 0.7, vocab_tile, None, 1.0,
                                                      ("log_probs", "entropy"))
    w = torch.linspace(-1, 1, n, dtype=torch.float64)
    ((lp * w).sum() + 0.3 * ent.sum()).backward()
    return lp.detach(), ent.detach(), hidden.grad, weight.grad, (hidden, weight, targets)


def test_token_tile_changes_no_value_or_gradient():
    ref = _logps_and_grads(kernel.TOKEN_CHUNK_SIZE, vocab_tile=head._CHUNKED_LOGPROB_CHUNK_SIZE)   # TRL's own
    for tile, vocab_tile in ((256, 384), (100, 1000), (7, 96), (256, 8192)):
        got = _logps_and_grads(tile, vocab_tile=vocab_tile)
        for a, b in zip(ref[:2], got[:2]):          # log-probs, entropies: TRL's running statistics are fp32, and
            torch.testing.assert_close(a, b, rtol=1e-5, atol=5e-5)   # another vocabulary tile folds in another order
        for a, b in zip(ref[2:4], got[2:4]):        # gradients: TRL accumulates them in fp32, in another order
            torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
    # and the values are the exact log-softmax / entropy of the full logits
    hidden, weight, targets = ref[4]
    logits = (hidden.detach() @ weight.detach().T) / 0.7
    logp = torch.log_softmax(logits, -1)
    # (TRL keeps the running log-sum-exp statistics in fp32)
    torch.testing.assert_close(ref[0].double(), logp.gather(1, targets[:, None]).squeeze(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref[1].double(), -(logp.exp() * logp).sum(-1), rtol=1e-5, atol=1e-5)


def test_resolve_and_set():
    assert lm_head.resolve(0, 256, "cpu", "k") == 256
    assert lm_head.resolve(0, 256, "cuda", "k") is None
    assert lm_head.resolve(512, 256, "cuda", "k") == 512
    with pytest.raises(ValueError, match="lm_head_token_chunk"):
        lm_head.resolve(-1, 256, "cpu", "lm_head_token_chunk")
    assert lm_head.set_tiles("cpu") == (lm_head.CPU_TOKEN_CHUNK, lm_head.CPU_VOCAB_CHUNK)
    assert (kernel.TOKEN_CHUNK_SIZE, head._CHUNKED_LOGPROB_CHUNK_SIZE) == (256, 8192)
    assert lm_head.set_tiles("cuda") == (lm_head.TRL_TOKEN_CHUNK, lm_head.TRL_VOCAB_CHUNK)
    assert lm_head.set_tiles("cpu", 64, 1024) == (64, 1024) == lm_head.current_tiles()


def test_config_key_validated():
    from swe_srl.core.errors import SweSrlError
    from swe_srl.train.config import load_settings

    base = {"method": "sft", "model": "m", "data": "d.jsonl", "output_dir": "/tmp/x"}
    assert load_settings(None, extra=base).lm_head_token_chunk == 0
    for key in ("lm_head_token_chunk", "lm_head_vocab_chunk"):
        with pytest.raises(SweSrlError, match=key):
            load_settings(None, extra={**base, key: -2})
