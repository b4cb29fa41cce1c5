"""Dynamic sampling: groups generated per group trained on, before (the implementation at commit 32a67c5) and after
(issue #17 item 3: ceil(missing / keep rate) groups per refill round, surplus carried, seeded epoch order, flat
prompts skipped), same data, same seeds, same model, interleaved in one process.

    python benchmarks/dynamic_sampling.py [--steps 10] [--seeds 0 1] [--batch-prompts 8] [--prompt-chars 400]

Model: the tiny random Llama + character tokenizer of tests/tiny_model.py (cheap; the point is the sampler, not
the model). Data: the real step files configs/data/math_steps_sample.jsonl and swe_steps_sample.jsonl. Reward:
``MixedReward`` of benchmarks/train_throughput.py (the real step reward of the completion text, but a flat -1 for
every rollout of about half of the prompts, chosen by the target's md5), so the kept fraction is ~0.5 by design.
``--prompt-chars N`` keeps the last N characters of each prompt message (a temporary copy of the data; 0 = whole
prompts): prompt length changes only the time per step, not which groups are kept, and the character tokenizer
makes full SWE prompts thousands of tokens long. SWE data (``--data swe``) is not in the default set: its targets are
tool calls, which MixedReward's random completions never match in format, so every SWE group is flat (-1) for both
implementations and both pad every step at the round cap (nothing to compare).

Variants:
  before         SRLGRPOTrainer of commit 32a67c5, loaded from git history (each refill round regenerates a whole
                 batch of random prompts, surplus kept groups are dropped)
  after          today's SRLGRPOTrainer, defaults (ds_skip_flat_after=3)
  after_noskip   today's, ds_skip_flat_after=0 (isolates round sizing + carry from flat-prompt skipping)
Reported per run and per variant: generated groups / trained groups ("generated per kept"), the run's keep rate
(kept / generated), the goal generated-per-kept <= 1.1 x (1 / keep rate), rounds per step, padded, skipped groups.
Writes benchmarks/results/dynamic_sampling.json.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from benchmarks.common import write_result  # noqa: E402
from benchmarks.train_throughput import MixedReward  # noqa: E402

BEFORE_COMMIT = "32a67c5"
DATA = {"math": REPO / "configs" / "data" / "math_steps_sample.jsonl",
        "swe": REPO / "configs" / "data" / "swe_steps_sample.jsonl"}
VARIANTS = ("before", "after", "after_noskip")


def before_trainer_class():
    """SRLGRPOTrainer as it was at BEFORE_COMMIT, imported from ``git show`` (a module inside swe_srl.train, so its
    relative imports resolve)."""
    src = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:swe_srl/train/grpo.py"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    name = f"swe_srl.train._grpo_{BEFORE_COMMIT}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "swe_srl.train"
    sys.modules[name] = mod
    exec(compile(src, f"{BEFORE_COMMIT}:swe_srl/train/grpo.py", "exec"), mod.__dict__)
    return mod.SRLGRPOTrainer


def short_prompts(src: Path, n_chars: int, out: Path) -> Path:
    if n_chars <= 0:
        return src
    rows = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    for r in rows:
        for m in r["prompt"]:
            m["content"] = m["content"][-n_chars:]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def one_run(variant: str, data: Path, name: str, seed: int, args, model_dir: Path, workdir: Path,
            before_cls) -> dict:
    import torch

    from swe_srl.tasks import task_for_data
    from swe_srl.train.config import load_settings, trl_config
    from swe_srl.train.data import build_dataset, row_options
    from swe_srl.train.grpo import SRLGRPOTrainer
    from swe_srl.train.runner import load_model_and_tokenizer

    s = load_settings(None, [
        f"model={model_dir}", f"data={data}", f"output_dir={workdir / f'{variant}_{name}_{seed}'}",
        "rollout=transformers", f"batch_prompts={args.batch_prompts}", f"num_generations={args.g}",
        f"per_device_train_batch_size={args.batch_prompts * args.g}", f"max_completion_length={args.max_new}",
        f"max_steps={args.steps}", "save_strategy='no'", "logging_steps=1", "plots=false", "prefill_think=true",
        "bf16=false", f"seed={seed}", f"ds_max_rounds={args.ds_max_rounds}", "validation=false",
        "activation_checkpointing=false", "shared_prompt=false",
    ])
    model, tok = load_model_and_tokenizer(s)
    ds = build_dataset(task_for_data(s.data), "srl", s.data, row_options(s, tok))
    common = dict(model=model, reward_funcs=[MixedReward()], args=trl_config(s, "transformers"), train_dataset=ds,
                  processing_class=tok, ds_eps=1e-4, ds_max_rounds=args.ds_max_rounds, shared_prompt=False)
    if variant == "before":
        tr = before_cls(**common)
    else:
        tr = SRLGRPOTrainer(**common, ds_skip_flat_after=0 if variant == "after_noskip" else 3)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    tr.train()
    wall = time.perf_counter() - t0
    log = tr.ds_log
    generated = sum(x["groups_generated"] for x in log)
    kept = sum(x["groups_kept"] for x in log)
    if variant == "before":
        trained = sum(args.batch_prompts - x["shortfall_groups"] for x in log)
        padded = sum(x["shortfall_groups"] for x in log)
        skipped = 0
        carry_left = 0
    else:
        trained = sum(x["groups_trained"] for x in log)
        padded = sum(x["padded_groups"] for x in log)
        skipped = sum(x["skipped_flat"] for x in log)
        carry_left = log[-1]["carry_buffer"]
    keep_rate = kept / max(generated, 1)
    gpk = generated / max(trained, 1)
    out = {"variant": variant, "data": name, "seed": seed, "steps": len(log), "groups_generated": generated,
           "groups_kept": kept, "groups_trained": trained, "padded_groups": padded, "skipped_flat": skipped,
           "carry_left_at_end": carry_left, "keep_rate": keep_rate, "generated_per_kept": gpk,
           "generated_per_kept_counting_end_buffer": generated / max(trained + carry_left, 1),
           "goal_1_1_over_keep_rate": 1.1 / max(keep_rate, 1e-9), "meets_goal": gpk <= 1.1 / max(keep_rate, 1e-9),
           "rounds_per_step": statistics.mean(x["rounds"] for x in log), "wall_s": wall,
           "gen_seconds": sum(x["gen_seconds"] for x in log)}
    del tr, model
    gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--data", nargs="+", default=["math"], choices=sorted(DATA))
    ap.add_argument("--tag", default="", help="result file dynamic_sampling_<tag>.json (default: dynamic_sampling.json)")
    ap.add_argument("--batch-prompts", type=int, default=8)
    ap.add_argument("--prompt-chars", type=int, default=400)
    ap.add_argument("--g", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=8)
    ap.add_argument("--ds-max-rounds", type=int, default=8)
    args = ap.parse_args()

    import torch

    from tiny_model import save_tiny

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_before = os.getloadavg()
    before_cls = before_trainer_class()
    runs = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ds_bench_") as tmp:
        model_dir = save_tiny(Path(tmp) / "model")
        datas = {name: short_prompts(DATA[name], args.prompt_chars, Path(tmp) / f"{name}.jsonl") for name in args.data}
        for seed in args.seeds:
            for name, data in datas.items():
                for variant in VARIANTS:              # interleaved: the variants of one (data, seed) back to back
                    r = one_run(variant, data, name, seed, args, model_dir, Path(tmp), before_cls)
                    runs.append(r)
                    print(f"{variant:13s} {name:5s} seed={seed} generated/kept={r['generated_per_kept']:.3f} "
                          f"keep_rate={r['keep_rate']:.3f} goal<={r['goal_1_1_over_keep_rate']:.3f} "
                          f"rounds/step={r['rounds_per_step']:.2f} padded={r['padded_groups']} "
                          f"skipped={r['skipped_flat']}", flush=True)
                path = save(runs, args, load_before, t0)     # after every (seed, data): a partial run keeps its results
    print(f"wrote {path}")


def save(runs: list[dict], args, load_before, t0: float) -> Path:
    summary: dict = {}
    for v in VARIANTS:
        rs = [r for r in runs if r["variant"] == v]
        gen, trained, kept = (sum(r[k] for r in rs) for k in ("groups_generated", "groups_trained", "groups_kept"))
        kr = kept / max(gen, 1)
        summary[v] = {"generated_per_kept": gen / max(trained, 1), "keep_rate": kr,
                      "ratio_to_1_over_keep_rate": (gen / max(trained, 1)) * kr,
                      "meets_goal_all_runs": all(r["meets_goal"] for r in rs),
                      "rounds_per_step": statistics.mean(r["rounds_per_step"] for r in rs),
                      "padded_groups": sum(r["padded_groups"] for r in rs),
                      "skipped_flat": sum(r["skipped_flat"] for r in rs),
                      "gen_seconds": sum(r["gen_seconds"] for r in rs)}
    summary["generated_per_kept_before_over_after"] = (summary["before"]["generated_per_kept"]
                                                       / summary["after"]["generated_per_kept"])
    path = write_result("dynamic_sampling" + (f"_{args.tag}" if args.tag else ""), {
        "goal": "generated_per_kept <= 1.1 x (1 / keep rate) of the same run (issue #17 item 3)",
        "before": f"swe_srl/train/grpo.py at commit {BEFORE_COMMIT}", "after": "working tree",
        "model": "tests/tiny_model.py (random, 2 layers, hidden 32)", "reward": "benchmarks.train_throughput.MixedReward",
        "settings": vars(args), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "wall_s_total": time.time() - t0, "complete": len(runs) == len(VARIANTS) * len(args.seeds) * len(args.data),
        "summary": summary, "runs": runs})
    for v in VARIANTS:
        s = summary[v]
        print(f"{v:13s} generated/kept {s['generated_per_kept']:.3f}  keep rate {s['keep_rate']:.3f}  "
              f"x keep rate {s['ratio_to_1_over_keep_rate']:.3f}  goal met in every run: {s['meets_goal_all_runs']}")
    return path


if __name__ == "__main__":
    main()
