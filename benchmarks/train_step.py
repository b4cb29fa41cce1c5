"""One SRL optimizer step, training forward/backward: our shared-prompt log-probs vs plain TRL GRPOTrainer.

    python benchmarks/train_step.py [--model smollm2-135m|qwen05b-random|tiny-random] [--device cpu|cuda]
                                    [--prompts 1024,2048,4096] [--gs 4,8] [--configs 2048x8,...] [--repeats 2]
                                    [--completion 128] [--steps 1] [--warmup 1] [--random-init] [--checkpointing]
                                    [--max-run-s S] [--tag TAG]

Variants (same model, same data; every (config, variant) runs in a FRESH subprocess, because a process's peak-RSS
high-water mark never goes down; the subprocesses are interleaved: repeat r runs config1/trl, config1/ours,
config2/trl, ... with the trl/ours order alternating between repeats, so machine noise hits both alike):
  trl    trl.GRPOTrainer: each of the G (prompt + completion) rows through the model on its own
  ours   swe_srl.train.grpo.SRLGRPOTrainer(shared_prompt=True): each group's prompt once
         (swe_srl/train/shared_prompt.py), and on CPU TRL's chunked LM head in 256 x 8,192 tiles
         (swe_srl/train/lm_head.py; TRL's CPU fallback holds ~8 tile-sized temporaries)
         and the training forward/backward's tensors mmapped (swe_srl/train/cpu_malloc.py: glibc's heap otherwise
         keeps ~1 GB of freed activations resident)
  trl_cpu_tuned  (--with-trl-cpu-tuned, a reference) trl.GRPOTrainer with those same two CPU settings: the ratio
         against it is what the shared prompt alone buys

One step = one micro-batch holding one group (per_device_train_batch_size = num_generations = G, the SRL config
layout): TRL's own ``compute_loss`` on SRL-shaped inputs (prompt P tokens, G completions of C tokens), ``backward``,
AdamW ``step``. Generation is not timed (it is the same for both); the rollout tensors are synthetic (seeded token
ids), since the compute does not depend on the token values. Per (config, variant): fwd+bwd seconds, wall and
process CPU time (median over --steps, after --warmup steps on a small batch that pay the one-time costs),
optimizer-step seconds, peak RSS of the subprocess and RSS before the timed step (model, gradients, AdamW state).
Ratios are trl / ours; on a shared machine the CPU-time ratio is the robust one. Writes
benchmarks/results/train_step[_<tag>].json.

On a 2-core / 23 GB box, TRL's path without activation checkpointing does not fit at prompt 2k, G = 8 (~3 MB of
activations per token x 17k tokens), so the recorded run uses --checkpointing (as the GPU configs do).

Peak memory: every (config, variant, repeat) is its own subprocess, and its peak is that process's ``ru_maxrss``
(the kernel's resident-set high-water mark, read at the end of the worker), so nothing of an earlier run is in it;
``rss_before_step_mb`` is VmRSS right before the timed step; ``sampled_peak_rss_mb`` the max of a 10 ms RSS sampler
per phase (warm-up, fwd_bwd, optimizer: where the peak happens). On CUDA also ``torch.cuda.max_memory_allocated``.
The optimizer is the trainer's own (``create_optimizer``: TRL's default ``adamw_torch_fused``), as in a run.
A run that exceeds ``--max-run-s`` (or fails) is recorded as such in ``runs`` / ``configs`` (``status``), never
dropped; the result file is rewritten after every run, so a stopped benchmark keeps what it measured.

Models: a local model / alias (``smollm2-135m``), or a synthetic config with random weights and a word-level test
tokenizer (no download): ``qwen05b-random`` (Qwen2.5-0.5B's shape: 24 layers, hidden 896, 14/2 heads, vocab 151936)
and ``tiny-random`` (2 layers, for dry runs). ``--device cuda`` runs on the first GPU (bf16 autocast off: fp32
weights unless ``--bf16``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402
from swe_srl.core.io import versions  # noqa: E402

VARIANTS = ("trl", "ours")
#: reference variant (``--with-trl-cpu-tuned``): plain TRL with our CPU LM-head tiles (swe_srl/train/lm_head.py) and
#: allocator policy (swe_srl/train/cpu_malloc.py), so the file separates those from the shared prompt
REFERENCE_VARIANTS = ("trl_cpu_tuned",)
PEAK_METHOD = ("fresh subprocess per (config, variant, repeat); peak = that process's getrusage(RUSAGE_SELF).ru_maxrss "
               "(kernel RSS high-water mark) at its end")
# synthetic models (random weights, test tokenizer): name -> transformers config kwargs
SYNTHETIC = {
    "qwen05b-random": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                           num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                           max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0),
    "tiny-random": dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=8192, tie_word_embeddings=True),
}


def _synthetic(name: str):
    """(model, tokenizer) of a SYNTHETIC config: random weights, a word-level tokenizer (pad/eos ids 0/1)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    kw = dict(SYNTHETIC[name])
    cfg = AutoConfig.for_model(kw.pop("model_type"), pad_token_id=0, eos_token_id=1, bos_token_id=None, **kw)
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {f"t{i}": i + 3 for i in range(61)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa"), tok


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def worker(args) -> dict:
    """One (config, variant) in this process: build the trainer, run warm-up + timed steps, report."""
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from swe_srl.models import resolve_model
    from swe_srl.train.grpo import SRLGRPOTrainer

    load0 = os.getloadavg()[0]
    cuda = args.device == "cuda"
    if args.model in SYNTHETIC:
        model, tok = _synthetic(args.model)
    else:
        path = resolve_model(args.model)
        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        torch.manual_seed(0)
        if args.random_init:
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    G, P, C = args.g, args.prompt, args.completion
    cfg = GRPOConfig(output_dir=args.workdir, per_device_train_batch_size=G, num_generations=G,
                     max_completion_length=C, report_to=[], use_cpu=not cuda, bf16=bool(args.bf16), seed=0,
                     activation_checkpointing=args.checkpointing, learning_rate=1e-6, loss_type="grpo", beta=0.0)
    ds = Dataset.from_list([{"prompt": "x"}] * G)
    kw = dict(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=cfg,
              train_dataset=ds, processing_class=tok)
    if args.variant in ("trl", "trl_cpu_tuned"):
        if args.variant == "trl_cpu_tuned":
            from swe_srl.train import lm_head
            from swe_srl.train.cpu_malloc import MallocPolicy

            lm_head.set_tiles(args.device)
            MallocPolicy(4, args.device).training()     # this step never generates
        trainer = GRPOTrainer(**kw)
    else:
        trainer = SRLGRPOTrainer(**kw, shared_prompt=True, dynamic_sampling=False)
    trainer.current_gradient_accumulation_steps = 1
    model = trainer.model
    if args.checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = trainer.create_optimizer()   # the optimizer a run uses (TRL default: adamw_torch_fused)

    def rollout(P: int, C: int, seed: int) -> dict:
        """SRL-shaped rollout tensors: one group (same prompt, G rows), completions of varied length <= C."""
        g = torch.Generator().manual_seed(seed)
        vocab = model.config.vocab_size
        prompt = torch.randint(0, vocab, (1, P), generator=g).expand(G, P).clone()
        comp = torch.randint(0, vocab, (G, C), generator=g)
        lens = torch.randint(C // 2, C + 1, (G,), generator=g)
        lens[0] = C
        cmask = (torch.arange(C)[None] < lens[:, None]).long()
        batch = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": comp,
                 "completion_mask": cmask, "advantages": torch.randn(G, generator=g),
                 "num_items_in_batch": cmask.sum()}
        return {k: v.to(device) for k, v in batch.items()}

    device = next(model.parameters()).device

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    phase = {"name": "setup"}
    phase_peak: dict[str, float] = {}

    def sample_rss() -> None:   # RSS every 10 ms, max per phase (a cross-check of ru_maxrss; can miss a spike)
        statm = Path("/proc/self/statm")
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while True:
            rss = int(statm.read_text().split()[1]) * page_mb
            name = phase["name"]
            phase_peak[name] = max(phase_peak.get(name, 0.0), rss)
            time.sleep(0.01)

    threading.Thread(target=sample_rss, daemon=True).start()

    def step(inputs: dict, timed: bool = False) -> tuple[float, float, float, float]:
        sync()
        phase["name"] = "fwd_bwd" if timed else "warmup"
        t0, c0 = time.perf_counter(), time.process_time()
        with trainer.accelerator.autocast():
            loss = trainer.compute_loss(model, inputs)
        loss.backward()
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        phase["name"] = "optimizer" if timed else "warmup"
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        phase["name"] = "idle"
        return t1 - t0, c1 - c0, time.perf_counter() - t1, float(loss.detach())

    # warm-up on a small batch: one-time costs (AdamW state, gradient buffers, kernels, our self-check) are paid
    # here, at a peak RSS below the real step's
    for _ in range(args.warmup):
        step(rollout(min(P, 64), min(C, 16), 99))
    inputs = rollout(P, C, 1234)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated() / 2**20
    rss_before = _rss_mb()
    fwd_bwd, fwd_bwd_cpu, opt_s, losses = [], [], [], []
    for _ in range(args.steps):
        t, c, o, loss = step(inputs, timed=True)
        fwd_bwd.append(t)
        fwd_bwd_cpu.append(c)
        opt_s.append(o)
        losses.append(loss)
    out = {"variant": args.variant, "prompt_tokens": P, "completion_tokens": C, "G": G,
           "fwd_bwd_s": statistics.median(fwd_bwd), "fwd_bwd_s_all": fwd_bwd,
           "fwd_bwd_cpu_s": statistics.median(fwd_bwd_cpu), "opt_step_s": statistics.median(opt_s),
           "first_loss": losses[0], "rss_before_step_mb": round(rss_before, 1),
           "peak_rss_mb": round(_peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
           "sampled_peak_rss_mb": {k: round(v, 1) for k, v in phase_peak.items()},
           "optimizer": type(opt).__name__ + ("(fused)" if opt.defaults.get("fused") else ""),
           "lm_head_tiles": _lm_head_tiles(),
           "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if cuda:
        out["device"] = torch.cuda.get_device_name(0)
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["cuda_before_step_mb"] = round(cuda_before, 1)
    if args.variant == "ours":
        out["shared_prompt"] = dict(trainer.sp_log)
        out["attention"] = getattr(trainer.accelerator.unwrap_model(model).config, "_attn_implementation", None)
    return out


def _lm_head_tiles() -> list[int] | None:
    """(tokens, vocabulary columns) per tile of TRL's chunked LM head in this process."""
    from swe_srl.train import lm_head

    tiles = lm_head.current_tiles()
    return list(tiles) if tiles else None


def run_one(variant: str, P: int, G: int, args) -> dict:
    """One worker subprocess. A failure or a run past --max-run-s is returned as a record with its status."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant", variant, "--prompt", str(P),
           "--g", str(G), "--completion", str(args.completion), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--model", args.model, "--device", args.device,
           "--workdir", args.workdir] + (["--random-init"] if args.random_init else []) \
        + (["--checkpointing"] if args.checkpointing else []) + (["--bf16"] if args.bf16 else [])
    t0 = time.perf_counter()
    base = {"variant": variant, "prompt_tokens": P, "completion_tokens": args.completion, "G": G}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_run_s)
    except subprocess.TimeoutExpired:
        return base | {"status": "timeout", "wall_s": round(time.perf_counter() - t0, 2),
                       "note": f"stopped after --max-run-s {args.max_run_s} s: too slow on this machine at this load"}
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return base | {"status": "failed", "rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2),
                       "stderr_tail": proc.stderr[-1500:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    return res


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["prompt_tokens"], r["G"]) for r in runs})
    for P, G in keys:
        row = {"prompt_tokens": P, "G": G}
        for v in VARIANTS + REFERENCE_VARIANTS:
            here = [r for r in runs if r["variant"] == v and (r["prompt_tokens"], r["G"]) == (P, G)]
            rs = [r for r in here if r.get("status", "ok") == "ok"]
            if len(rs) < len(here):
                row[f"{v}_not_ok"] = [{"status": r["status"], "wall_s": r.get("wall_s")} for r in here if r not in rs]
            if not rs:
                continue
            row[v] = {"fwd_bwd_s": round(statistics.median(r["fwd_bwd_s"] for r in rs), 3),
                      "fwd_bwd_cpu_s": round(statistics.median(r["fwd_bwd_cpu_s"] for r in rs), 3),
                      "step_s": round(statistics.median(r["fwd_bwd_s"] + r["opt_step_s"] for r in rs), 3),
                      "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rs), 1),
                      "rss_before_step_mb": round(statistics.median(r["rss_before_step_mb"] for r in rs), 1),
                      "runs": len(rs)}
            if "cuda_peak_mb" in rs[0]:
                row[v]["cuda_peak_mb"] = round(statistics.median(r["cuda_peak_mb"] for r in rs), 1)
        if "trl" in row and "ours" in row:
            t, o = row["trl"], row["ours"]
            row["fwd_bwd_speedup"] = round(t["fwd_bwd_s"] / o["fwd_bwd_s"], 2)
            # CPU seconds of the process (all threads): the work done, less sensitive to other load on the machine
            row["fwd_bwd_cpu_speedup"] = round(t["fwd_bwd_cpu_s"] / o["fwd_bwd_cpu_s"], 2)
            row["step_speedup"] = round(t["step_s"] / o["step_s"], 2)
            row["peak_rss_ratio"] = round(t["peak_rss_mb"] / o["peak_rss_mb"], 2)
            # activation memory of the step: peak minus what the process held before it (model, trainer)
            row["step_memory_ratio"] = round((t["peak_rss_mb"] - t["rss_before_step_mb"])
                                             / max(o["peak_rss_mb"] - o["rss_before_step_mb"], 1.0), 2)
            # same per-row loss in both processes (same weights, same data)
            if "cuda_peak_mb" in t and "cuda_peak_mb" in o:
                row["cuda_peak_ratio"] = round(t["cuda_peak_mb"] / o["cuda_peak_mb"], 2)
            lt = [r["first_loss"] for r in runs if r["variant"] == "trl" and r.get("status", "ok") == "ok"
                  and (r["prompt_tokens"], r["G"]) == (P, G)]
            lo = [r["first_loss"] for r in runs if r["variant"] == "ours" and r.get("status", "ok") == "ok"
                  and (r["prompt_tokens"], r["G"]) == (P, G)]
            row["first_loss_abs_diff"] = abs(lt[0] - lo[0])
        if "trl_cpu_tuned" in row and "ours" in row:
            t, o = row["trl_cpu_tuned"], row["ours"]
            row["vs_trl_cpu_tuned"] = {"fwd_bwd_speedup": round(t["fwd_bwd_s"] / o["fwd_bwd_s"], 2),
                                   "peak_rss_ratio": round(t["peak_rss_mb"] / o["peak_rss_mb"], 2)}
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompts", default="1024,2048,4096")
    p.add_argument("--gs", default="4,8")
    p.add_argument("--configs", default="", help="explicit PROMPTxG list, e.g. 2048x8,1024x4 (overrides the grid)")
    p.add_argument("--completion", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="fresh-process runs per (config, variant)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per run, after --warmup warm-up steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps on a small batch first (prompt 64, "
                   "completion 16)")
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing (non-reentrant)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (TRL's bf16=True; CUDA)")
    p.add_argument("--max-run-s", type=float, default=None,
                   help="stop a worker after this many seconds and record it as too slow (status: timeout)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no new worker after this many seconds; the rest is recorded as not_run")
    p.add_argument("--with-trl-cpu-tuned", action="store_true",
                   help="also run the reference variant trl_cpu_tuned (TRL with our CPU LM-head tiles and allocator "
                        "policy)")
    p.add_argument("--tag", default="")
    p.add_argument("--workdir", default="/tmp/swe-srl-train-step")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS + REFERENCE_VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--prompt", type=int, help=argparse.SUPPRESS)
    p.add_argument("--g", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    if args.configs:
        configs = [(int(c.split("x")[0]), int(c.split("x")[1])) for c in args.configs.split(",")]
    else:
        configs = [(int(P), int(G)) for P in args.prompts.split(",") for G in args.gs.split(",")]
    runs: list[dict] = []
    loads = [os.getloadavg()]
    stop = threading.Event()

    def sample_load() -> None:   # the machine's load every 30 s while the benchmark runs
        while not stop.wait(30):
            loads.append(os.getloadavg())

    threading.Thread(target=sample_load, daemon=True).start()
    t0 = time.perf_counter()
    variants = VARIANTS + (REFERENCE_VARIANTS if args.with_trl_cpu_tuned else ())
    plan = [(rep, P, G, v) for rep in range(args.repeats) for i, (P, G) in enumerate(configs)
            for v in (variants if (rep + i) % 2 == 0 else variants[::-1])]
    deadline = time.time() + args.budget_s if args.budget_s else None
    name = "train_step" + (f"_{args.tag}" if args.tag else "")

    def write(done: bool) -> tuple[Path, list[dict]]:
        rows = summarize(runs)
        head = next((r for r in rows if (r["prompt_tokens"], r["G"]) == (2048, 8) and "fwd_bwd_speedup" in r), None)
        ran = {(r["repeat"], r["prompt_tokens"], r["G"], r["variant"]) for r in runs}
        not_run = [{"repeat": rep, "prompt_tokens": P, "G": G, "variant": v} for rep, P, G, v in plan
                   if (rep, P, G, v) not in ran]
        ok = [r for r in runs if r.get("status") == "ok"]
        result = {
            "what": "training forward+backward (+AdamW step) of the GRPO loss for one micro-batch = one group of G "
                    "(prompt + completion) rows: SRLGRPOTrainer shared-prompt log-probs vs trl.GRPOTrainer per-row",
            "variants": list(variants),
            "model": args.model + (" (random init, same config)" if args.random_init else ""),
            "device": args.device, "bf16": args.bf16,
            "completion_tokens": args.completion, "steps_per_run": args.steps, "warmup_steps": args.warmup,
            "repeats": args.repeats,
            "activation_checkpointing": args.checkpointing,
            "peak_memory_method": PEAK_METHOD,
            "machine": {"nproc": os.cpu_count(), "torch_threads": ok[0]["torch_threads"] if ok else None,
                        "loadavg_1m_during_run": {"min": round(min(x[0] for x in loads), 2),
                                                  "max": round(max(x[0] for x in loads), 2),
                                                  "mean": round(statistics.mean(x[0] for x in loads), 2),
                                                  "samples": len(loads), "every_s": 30}},
            "versions": versions(),
            "speedup_vs_trl": head["fwd_bwd_speedup"] if head else None,
            "cpu_time_speedup_vs_trl": head["fwd_bwd_cpu_speedup"] if head else None,
            "step_speedup_vs_trl": head["step_speedup"] if head else None,
            "peak_rss_ratio": head["peak_rss_ratio"] if head else None,
            "headline_config": {"prompt_tokens": 2048, "G": 8} if head else None,
            "goal": {"speedup_vs_trl": ">= 3 (fwd+bwd)", "peak_rss_ratio": ">= 2"},
            "complete": done and not not_run,
            "not_run": not_run,
            "not_run_reason": (f"the benchmark's time budget (--budget-s {args.budget_s}) ran out on this shared "
                               f"machine before these ran" if not_run and done else
                               ("still running" if not_run else None)),
            "configs": rows,
            "runs": runs,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        return write_result(name, result), rows

    for rep, P, G, v in plan:
        if deadline is not None and time.time() > deadline:
            break
        r = run_one(v, P, G, args)
        r["repeat"] = rep
        runs.append(r)
        loads.append(os.getloadavg())
        if r["status"] == "ok":
            print(f"[train_step] rep {rep} P={P} G={G} {v:4s}: fwd+bwd {r['fwd_bwd_s']:.2f}s "
                  f"(cpu {r['fwd_bwd_cpu_s']:.1f}s)  peak RSS {r['peak_rss_mb']:.0f} MB  (load {r['loadavg_1m']})",
                  file=sys.stderr, flush=True)
        else:
            print(f"[train_step] rep {rep} P={P} G={G} {v:4s}: {r['status']} after {r['wall_s']} s", file=sys.stderr,
                  flush=True)
        write(done=False)
    stop.set()
    path, rows = write(done=True)
    print(f"wrote {path}", file=sys.stderr)
    for r in rows:
        print(json.dumps({k: r[k] for k in r if k not in ("trl", "ours", "trl_cpu_tuned")} | {
            "trl_fwd_bwd_s": r.get("trl", {}).get("fwd_bwd_s"), "ours_fwd_bwd_s": r.get("ours", {}).get("fwd_bwd_s"),
            "trl_peak_mb": r.get("trl", {}).get("peak_rss_mb"), "ours_peak_mb": r.get("ours", {}).get("peak_rss_mb")}))


if __name__ == "__main__":
    main()
