"""Merged LoRA export (swe_srl/train/export.py, `swe-srl export --merge-lora`): real files on disk, a tiny random
Llama and a real PEFT adapter with non-zero B (so the adapter changes the output); the merged model's logits equal
base + adapter."""

from __future__ import annotations

import json

import pytest
import torch

peft = pytest.importorskip("peft")

from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from swe_srl.cli import app  # noqa: E402
from swe_srl.train.export import ExportError, merge_lora, merged_dir  # noqa: E402


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"t{i}": i for i in range(60)}
    vocab.update({"<unk>": 60, "<pad>": 61, "<eos>": 62})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


@pytest.fixture()
def lora_run(tmp_path):
    """base/ (model + tokenizer) and run/best (adapter + tokenizer + best.json) as a LoRA run writes them."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, pad_token_id=61, eos_token_id=62,
                      bos_token_id=None, tie_word_embeddings=False)
    base_dir = tmp_path / "base"
    LlamaForCausalLM(cfg).save_pretrained(base_dir)
    _tokenizer().save_pretrained(base_dir)
    lcfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                           task_type="CAUSAL_LM", init_lora_weights=False)
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), lcfg)
    best = tmp_path / "run" / "best"
    model.save_pretrained(best)                      # what validation._save_best does with the trainer's model
    _tokenizer().save_pretrained(best)
    (best / "best.json").write_text(json.dumps({"step": 3, "metric": "val/step_reward_greedy", "value": 0.25}))
    return base_dir, best


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_logits_equal_base_plus_adapter(lora_run, tmp_path):
    base_dir, best = lora_run
    out = merge_lora(best, tmp_path / "merged")
    assert (out / "config.json").exists() and any(out.glob("*.safetensors"))
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    adapted = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(best))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    ids = torch.randint(0, 60, (3, 17), generator=torch.Generator().manual_seed(1))
    ref = _logits(adapted, ids)
    torch.testing.assert_close(_logits(merged, ids), ref, atol=1e-5, rtol=1e-5)
    assert (_logits(base, ids) - ref).abs().max() > 1e-3          # the adapter really changes the output
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("t1 t2 t3").input_ids == [1, 2, 3]
    info = json.loads((out / "export.json").read_text())
    assert info["base_model"] == str(base_dir) and info["lora"]["r"] == 4 and info["best"]["step"] == 3
    assert not (tmp_path / "merged.tmp").exists()


def test_cli_merge_and_refusals(lora_run, tmp_path):
    base_dir, best = lora_run
    runner = CliRunner()
    out = tmp_path / "cli-merged"
    r = runner.invoke(app, ["export", "--merge-lora", str(best), str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "export.json").exists()
    again = runner.invoke(app, ["export", "--merge-lora", str(best), str(out)])
    assert again.exit_code == 2 and "not empty" in again.output and "--overwrite" in again.output
    assert (out / "export.json").exists()                          # nothing already written is lost
    assert runner.invoke(app, ["export", "--merge-lora", str(best), str(out), "--overwrite"]).exit_code == 0
    plain = runner.invoke(app, ["export", "--merge-lora", str(base_dir), str(tmp_path / "x")])
    assert plain.exit_code == 2
    line = plain.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {base_dir / 'adapter_config.json'}: ") and "already plain" in line
    assert runner.invoke(app, ["export", str(best), str(tmp_path / "y")]).exit_code == 2   # --merge-lora required


def test_base_from_manifest_and_random_init_refused(lora_run, tmp_path):
    base_dir, best = lora_run
    cfg_path = best / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = None
    cfg_path.write_text(json.dumps(cfg))
    (best.parent / "manifest.json").write_text(json.dumps({"config": {"model": str(base_dir)}}))
    assert merged_dir(best.parent) == (best, best.parent / "merged")
    out = merge_lora(best, best.parent / "merged")
    assert json.loads((out / "export.json").read_text())["base_model"] == str(base_dir)
    (best.parent / "manifest.json").write_text(json.dumps({"config": {"model": str(base_dir), "random_init": True}}))
    with pytest.raises(ExportError, match="random-init"):
        merge_lora(best, tmp_path / "z")


def test_merge_at_end_of_a_lora_run(lora_run):
    """The end of a LoRA run (runner.merge_at_end, merge_lora_at_end: true): best/ merged into RUN/merged, recorded
    in the manifest; a run whose adapter cannot be merged keeps its files and says so."""
    from swe_srl.train.runner import merge_at_end

    base_dir, best = lora_run
    run = best.parent
    (run / "manifest.json").write_text(json.dumps({"config": {"model": str(base_dir)}}))
    assert merge_at_end(run) == run / "merged"
    assert json.loads((run / "manifest.json").read_text())["merged"] == {"path": "merged", "from": "best"}
    assert (run / "merged" / "config.json").exists() and (best / "adapter_config.json").exists()
    (run / "manifest.json").write_text(json.dumps({"config": {"model": str(base_dir), "random_init": True}}))
    assert merge_at_end(run) is None and (best / "adapter_config.json").exists()
