"""evaluate_math end to end: a tiny random Llama + a tokenizer built here (no downloads), resume, scoring.
evaluate_math takes a ready Generator; the tests build it as the CLI does (swe_srl.generation.make_generator)."""

from __future__ import annotations

import json

import pytest

from math_srl.evaluate import evaluate_math, load_benchmark
from swe_srl.core.io import ResumeMismatch

PROBLEMS = [
    {"problem": "What is $1+1$?", "answer": "2"},
    {"problem": "What is $2+2$?", "answer": "4"},
    {"problem": "What is $3+3$?", "solution": "It is $\\boxed{6}$."},   # Minerva layout: answer in the solution
]


@pytest.fixture()
def bench_dir(tmp_path):
    d = tmp_path / "data" / "toy"
    d.mkdir(parents=True)
    (d / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?$\\{}()[]^_+-=*/<>'\"\n|#&%~`@"))
    vocab = {t: i for i, t in enumerate(["<unk>", "<pad>", "<eos>", "<|im_start|>", "<|im_end|>"] + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=vocab["<pad>"], eos_token_id=vocab["<eos>"], bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_tiny_model_end_to_end_and_resume(tiny_model, bench_dir, tmp_path):
    from swe_srl.generation import make_generator

    out = tmp_path / "eval"
    gen = make_generator(tiny_model, backend="transformers", batch_size=2)
    kw = dict(model_name=tiny_model, data_dir=bench_dir, out_dir=out, max_new_tokens=6, batch_size=2, k=2)
    r1 = evaluate_math(gen, ["toy"], **kw)
    assert r1["benchmarks"]["toy"]["problems"] == 3
    assert set(r1["benchmarks"]["toy"]) == {"problems", "greedy", "avg@2"}
    assert r1["throughput"]["samples_generated"] == 3 + 3 * 2
    lines = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and {l["mode"] for l in lines} == {"greedy", "avg@2"}
    assert [l["answer"] for l in lines if l["mode"] == "greedy"] == ["2", "4", "6"]
    assert (out / "report.md").read_text().startswith("# Math evaluation")
    assert json.loads((out / "report.json").read_text())["benchmarks"] == r1["benchmarks"]
    assert json.loads((out / "config.json").read_text())["model"] == tiny_model
    r2 = evaluate_math(gen, ["toy"], **kw)          # resume: nothing new is generated
    assert r2["throughput"]["samples_generated"] == 0 and r2["benchmarks"] == r1["benchmarks"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 9
    with pytest.raises(ResumeMismatch, match=r"max_new_tokens: 6 -> 7.*another out_dir"):
        evaluate_math(gen, ["toy"], **{**kw, "max_new_tokens": 7})
    with pytest.raises(ResumeMismatch, match="model: "):
        evaluate_math(gen, ["toy"], **{**kw, "model_name": "another-model"})


class Scripted:
    """A Generator that answers from a table (to check the scoring arithmetic)."""

    name = "scripted"

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        outs = []
        for p in prompts:
            q = p[-1]["content"]
            right = {"1+1": "2", "2+2": "4", "3+3": "6"}[q.split("$")[1]]
            if params.temperature == 0:
                outs.append([f"<think>easy</think> \\boxed{{{right}}}" if q != PROBLEMS[1]["problem"] else "\\boxed{5}"])
            else:
                outs.append([f"\\boxed{{{right}}}" if i % 2 == 0 else "no answer" for i in range(params.n)])
        return outs


def test_scoring_resume_after_interrupt(bench_dir, tmp_path):
    out = tmp_path / "e"
    g = Scripted()
    r = evaluate_math(g, ["toy"], data_dir=bench_dir, out_dir=out, k=4, batch_size=1)
    assert r["benchmarks"]["toy"]["greedy"] == pytest.approx(200 / 3, abs=0.01)
    assert r["benchmarks"]["toy"]["avg@4"] == 50.0
    assert r["mean"] == pytest.approx((200 / 3 + 50) / 2, abs=0.01)
    # simulate a crash: drop the last problem's samples and leave a torn line
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    keep = [l for l in lines if not (json.loads(l)["idx"] == 2 and json.loads(l)["mode"] == "avg@4")]
    (out / "samples.jsonl").write_text("".join(keep) + '{"benchmark": "toy", "idx"')
    g2 = Scripted()
    r2 = evaluate_math(g2, ["toy"], data_dir=bench_dir, out_dir=out, k=4, batch_size=1)
    assert g2.calls == 1 and r2["throughput"]["problems_generated"] == 1
    assert r2["benchmarks"] == r["benchmarks"]


def test_load_real_benchmarks(shared_data):
    d = shared_data / "math_eval"
    name, items = load_benchmark("amc23", d)
    assert name == "amc23" and len(items) == 40 and items[0]["answer"] == "27"
    name, items = load_benchmark("minerva_math", d, limit=2)
    assert items[0]["answer"] == "1.6" and len(items) == 2
    assert len(load_benchmark("aime24", d)[1]) == 30
    assert load_benchmark(str(d / "math500" / "test.jsonl"))[0] == "math500"


def test_cli_dispatch_real_math_eval(tiny_model, bench_dir, tmp_path):
    """`swe-srl eval --task math` through the real CLI and the real evaluate_math (no stand-in), with and without
    --max-new-tokens (the default must come from evaluate_math)."""
    from typer.testing import CliRunner

    from swe_srl.cli import app

    out = tmp_path / "cli"
    base = ["eval", "--task", "math", "--model", tiny_model, "--benchmarks", "toy", "--data-dir", str(bench_dir),
            "--greedy", "--no-avg", "--limit", "2", "--batch-size", "2", "--out"]
    res = CliRunner().invoke(app, [*base, str(out), "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["benchmarks"]["toy"]["problems"] == 2 and "greedy" in report["benchmarks"]["toy"]
    res = CliRunner().invoke(app, [*base, str(tmp_path / "cli2")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "cli2" / "config.json").read_text())["max_new_tokens"] == 2048
    # a rerun into the same directory with other settings is a one-line usage error
    res = CliRunner().invoke(app, [*base, str(out), "--max-new-tokens", "5"])
    assert res.exit_code == 2 and "max_new_tokens: 4 -> 5" in res.output


def test_cli_resume_with_nothing_left_loads_no_model(bench_dir, tmp_path):
    """The CLI's generator loads its model at the first generate(): a finished evaluation is rescored without
    loading one (here: a model path that does not exist)."""
    from typer.testing import CliRunner

    from swe_srl.cli import app

    out = tmp_path / "e"
    r = evaluate_math(Scripted(), ["toy"], model_name="/nonexistent/model", data_dir=bench_dir, out_dir=out, k=2,
                      max_new_tokens=16, batch_size=1)
    res = CliRunner().invoke(app, ["eval", "--task", "math", "--model", "/nonexistent/model", "--benchmarks", "toy",
                                   "--data-dir", str(bench_dir), "--k", "2", "--max-new-tokens", "16",
                                   "--backend", "transformers", "--batch-size", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report.json").read_text())["benchmarks"] == r["benchmarks"]


# ---- issue #11: AIME25, the HF hub by the paper's names, grading an existing predictions file --------------------

AIME25 = [{"problem": "Find $7 \\cdot 6$.", "answer": "42", "id": "I-1"},
          {"problem": "Find $10 + 13$.", "answer": "23", "id": "I-2"}]


def _aime25_dir(tmp_path):
    d = tmp_path / "paper" / "aime25"
    d.mkdir(parents=True)
    (d / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in AIME25))
    return tmp_path / "paper"


def test_aime25_by_name_and_by_path(tmp_path):
    root = _aime25_dir(tmp_path)
    name, items = load_benchmark("aime25", root)
    assert name == "aime25" and [it["answer"] for it in items] == ["42", "23"] and items[1]["idx"] == 1
    assert load_benchmark(str(root / "aime25" / "test.jsonl"))[0] == "aime25"


def test_hub_is_used_by_the_paper_names_when_reachable_and_skipped_when_not(tmp_path, monkeypatch, capsys):
    import datasets

    from math_srl import evaluate as ev

    asked = []

    def fake_load(repo, *a, **k):   # the hub itself (no network here); our code picks the split and the year
        asked.append(repo)
        rows = [{"problem": "p2022", "answer": 1, "url": "https://aops/2022_AMC_12A/Problem_1"},
                {"problem": "p2023", "answer": 27, "url": "https://aops/2023_AMC_12A/Problem_2"}]
        return {"train": datasets.Dataset.from_list(rows)}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(ev, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    name, items = load_benchmark("amc23")
    assert asked == ["AI-MO/aimo-validation-amc"] and [it["problem"] for it in items] == ["p2023"]
    assert ev.HUB_DATASETS["aime25"][0] == "math-ai/aime25" and ev.HUB_DATASETS["aime24"][0] == "AI-MO/aimo-validation-aime"
    # an explicit --data-dir wins over the hub; an unreachable hub falls back to the local copy with one line
    root = _aime25_dir(tmp_path)
    assert load_benchmark("aime25", root)[1][0]["answer"] == "42" and asked == ["AI-MO/aimo-validation-amc"]
    monkeypatch.setattr(ev, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("SWE_SRL_MATH_DATA", str(root))
    assert load_benchmark("aime25")[1][1]["answer"] == "23" and len(asked) == 1
    with pytest.raises(FileNotFoundError, match="hub"):
        load_benchmark("aime25", source="hub")

    def broken(repo, *a, **k):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    monkeypatch.setattr(ev, "hub_reachable", lambda timeout=3.0: True)
    assert load_benchmark("aime25")[1][0]["answer"] == "42"
    assert "using the local copy" in capsys.readouterr().err


def test_predictions_file_is_graded_without_a_model(bench_dir, tmp_path):
    """--predictions: benchmark + index (0-based row) + completion, extra fields ignored; an eval's own samples.jsonl
    regrades to the same report."""
    from typer.testing import CliRunner

    from swe_srl.cli import app

    out = tmp_path / "e"
    r = evaluate_math(Scripted(), ["toy"], data_dir=bench_dir, out_dir=out, k=4, batch_size=1)
    res = CliRunner().invoke(app, ["eval", "--task", "math", "--predictions", str(out / "samples.jsonl"),
                                   "--data-dir", str(bench_dir), "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    g = json.loads((tmp_path / "g" / "report.json").read_text())
    assert g["benchmarks"]["toy"]["greedy"] == r["benchmarks"]["toy"]["greedy"]
    assert g["benchmarks"]["toy"]["avg@4"] == r["benchmarks"]["toy"]["avg@4"]
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(json.dumps(x) for x in [
        {"benchmark": "toy", "index": 0, "completion": "\\boxed{2}", "model": "x"},
        {"benchmark": "toy", "index": 0, "completion": "\\boxed{3}"},
        {"benchmark": "toy", "index": 2, "completion": "so \\boxed{6}"},
        {"benchmark": "toy", "index": 2, "completion": "so \\boxed{6}"}]) + "\n")
    from math_srl.evaluate import grade_predictions

    rep = grade_predictions(other, data_dir=bench_dir, out_dir=tmp_path / "h")
    assert rep["benchmarks"]["toy"]["avg@2"] == 75.0 and rep["benchmarks"]["toy"]["missing"] == {"avg@2": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"benchmark": "toy", "index": 9, "completion": "x"}) + "\n")
    res = CliRunner().invoke(app, ["eval", "--task", "math", "--predictions", str(bad), "--data-dir", str(bench_dir),
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "index 9" in res.output
