"""Trainer throughput: our SRLGRPOTrainer vs plain TRL GRPOTrainer, same model / data / settings, interleaved.

    python benchmarks/train_throughput.py [--model smollm2-135m] [--repeats 2] [--steps 2] [--random-init]

Variants (run A B C A B C ... in one process so machine noise hits all of them alike):
  trl        trl.GRPOTrainer + our SRL reward
  ours_ds0   SRLGRPOTrainer, dynamic sampling off  (goal: samples/s >= 0.95 x trl)
  ours_ds1   SRLGRPOTrainer, dynamic sampling on   (reports extra generated groups and generation time per kept group)
samples/s = trained completions / train() wall time (model loading excluded). Writes
benchmarks/results/train_throughput[_<tag>].json (and a copy into --out-dir when given).

GPU options (docs/train-gpu.md):
  --prompt-tokens N   pad every prompt's last user message with filler text to about N tokens (realistic lengths)
  --reward mixed      a benchmark-only reward whose groups vary for about half of the prompts, so dynamic sampling
                      has something to filter even with a random-init model (see MixedReward)
  --warmup            one discarded 1-step run first (CUDA / kernel warm-up), so repeat 0 is not penalised
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "configs" / "data" / "math_steps_sample.jsonl"


class MixedReward:
    """Benchmark-only reward: groups vary for ~half of the prompts and are flat for the rest, by construction.

    A random-init model never writes '</think>', so the real SRL reward is the format penalty (-1) for every
    completion and every group is flat. Here each completion is scored by the real StepReward as if the model had
    closed the (prefilled) monologue at once ('</think>' + completion, any think tags removed): the similarity of
    random text to the expert step differs between the G rollouts, so the group varies. Prompts whose target's md5
    is even get -1 for every rollout instead (a flat group). Dynamic sampling therefore keeps ~50% of the groups
    it sees; its refills draw random prompts, so ~1 extra group is expected per kept group.
    """

    __name__ = "srl_reward_mixed"

    def __init__(self) -> None:
        from swe_srl.core.reward import FORMAT_PENALTY
        from swe_srl.core.reward_funcs import StepReward, completion_text

        self.inner = StepReward(think_prefilled=True)
        self.text = completion_text
        self.penalty = FORMAT_PENALTY

    @staticmethod
    def flat(target: str) -> bool:
        return int(hashlib.md5(target.encode()).hexdigest(), 16) % 2 == 0

    def __call__(self, prompts: list, completions: list, target: list[str], **kw) -> list[float]:
        forced = ["</think>" + (self.text(c).replace("<think>", " ").replace("</think>", " ").strip() or "x")
                  for c in completions]
        scores = self.inner(prompts, forced, target, **kw)
        return [self.penalty if self.flat(t) else r for r, t in zip(scores, target)]


def padded_data(src: str, model: str, n_tokens: int, out: Path) -> str:
    """Copy of the step file with each prompt's last user message padded (filler first) to about n_tokens."""
    from transformers import AutoTokenizer

    from swe_srl.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(model))
    recs = [json.loads(x) for x in Path(src).read_text().splitlines() if x.strip()]
    snippets = [r["target"] for r in recs]
    for r in recs:
        msgs = r["prompt"]
        user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        base = msgs[user]["content"]
        filler, k = [], hashlib.md5(r["id"].encode()).digest()[0]
        while True:
            msgs[user]["content"] = ("Notes from related problems (for context only):\n" + " ".join(filler) +
                                     "\n\n" + base) if filler else base
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            n = len(tok(text, add_special_tokens=False)["input_ids"])
            if n >= n_tokens:
                break
            if len(filler) > 10 * n_tokens:
                raise RuntimeError("prompt padding does not converge")
            filler.append(snippets[k % len(snippets)])
            k += 7
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(out)


def one_run(variant: str, args, workdir: Path) -> dict:
    import torch
    from trl import GRPOTrainer

    from swe_srl.core.reward_funcs import StepReward
    from swe_srl.tasks import task_for_data
    from swe_srl.train.config import load_settings, trl_config
    from swe_srl.train.data import build_dataset, row_options
    from swe_srl.train.grpo import SRLGRPOTrainer
    from swe_srl.train.runner import load_model_and_tokenizer

    steps = 1 if variant == "warmup" else args.steps
    s = load_settings(None, [
        f"model={args.model}", f"data={args.data}", f"output_dir={workdir / variant}", f"rollout={args.rollout}",
        f"batch_prompts={args.batch_prompts}", f"num_generations={args.g}",
        f"per_device_train_batch_size={args.micro}", f"max_completion_length={args.max_new}",
        f"max_steps={steps}", "save_strategy='no'", "logging_steps=1", "plots=false", "prefill_think=true",
        f"random_init={str(args.random_init).lower()}", f"bf16={str(args.bf16).lower()}", "seed=0",
        f"ds_max_rounds={args.ds_max_rounds}",
    ])
    model, tok = load_model_and_tokenizer(s)
    if torch.cuda.is_available():
        model = model.cuda()
    ds = build_dataset(task_for_data(s.data), "srl", s.data, row_options(s, tok))
    reward = MixedReward() if args.reward == "mixed" else StepReward(think_prefilled=True)
    cfg = trl_config(s, args.rollout)
    common = dict(model=model, reward_funcs=[reward], args=cfg, train_dataset=ds, processing_class=tok)
    if variant in ("trl", "warmup"):
        tr = GRPOTrainer(**common)
    else:
        tr = SRLGRPOTrainer(**common, dynamic_sampling=(variant == "ours_ds1"), ds_eps=1e-4,
                            ds_max_rounds=args.ds_max_rounds)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    tr.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    samples = steps * args.batch_prompts * args.g
    out = {"variant": variant, "wall_s": wall, "samples": samples, "samples_per_s": samples / wall}
    log = getattr(tr, "ds_log", None)
    if log:
        gen = sum(x["groups_generated"] for x in log)
        kept = sum(min(x["groups_kept"], args.batch_prompts) for x in log)
        out.update(groups_generated=gen, groups_in_batches=kept,
                   extra_groups_per_kept_group=(gen - steps * args.batch_prompts) / max(kept, 1),
                   gen_seconds=sum(x["gen_seconds"] for x in log), rounds=[x["rounds"] for x in log],
                   kept_fraction=[round(x["kept_fraction"], 3) for x in log])
    del tr, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--rollout", default="transformers")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch-prompts", type=int, default=2)
    p.add_argument("--g", type=int, default=4)
    p.add_argument("--micro", type=int, default=8)
    p.add_argument("--max-new", type=int, default=32)
    p.add_argument("--ds-max-rounds", type=int, default=4)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--variants", default="trl,ours_ds0,ours_ds1")
    p.add_argument("--prompt-tokens", type=int, default=0, help="pad prompts to about this many tokens (0: as is)")
    p.add_argument("--reward", choices=["srl", "mixed"], default="srl")
    p.add_argument("--warmup", action="store_true", help="one discarded 1-step run first")
    p.add_argument("--out-dir", default="", help="also copy the result file here")
    args = p.parse_args()
    variants = args.variants.split(",")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.prompt_tokens:
            args.data = padded_data(args.data, args.model, args.prompt_tokens, Path(tmp) / "steps_padded.jsonl")
        if args.warmup:
            print("warmup", one_run("warmup", args, Path(tmp) / "warmup"), flush=True)
        for r in range(args.repeats):
            for v in variants:
                res = one_run(v, args, Path(tmp) / f"r{r}")
                res["repeat"] = r
                print(res, flush=True)
                runs.append(res)
    summary = {}
    for v in variants:
        sps = [x["samples_per_s"] for x in runs if x["variant"] == v]
        summary[v] = {"samples_per_s_median": statistics.median(sps), "samples_per_s": sps}
    if "trl" in summary:
        base = summary["trl"]["samples_per_s_median"]
        for v in variants:
            summary[v]["ratio_vs_trl"] = summary[v]["samples_per_s_median"] / base
    ds1 = [x for x in runs if x["variant"] == "ours_ds1"]
    if ds1:
        summary["ours_ds1"]["extra_groups_per_kept_group_mean"] = statistics.mean(
            x["extra_groups_per_kept_group"] for x in ds1)
        summary["ours_ds1"]["gen_seconds_per_kept_group_mean"] = statistics.mean(
            x["gen_seconds"] / max(x["groups_in_batches"], 1) for x in ds1)
    name = "train_throughput" + (f"_{args.tag}" if args.tag else "")
    settings = {k: v for k, v in vars(args).items()}
    if args.prompt_tokens:
        settings["data"] = f"{DATA} (prompts padded to ~{args.prompt_tokens} tokens)"
    path = write_result(name, {"settings": settings, "summary": summary, "runs": runs,
                               "note": "samples/s counts trained completions (steps x batch_prompts x G); "
                                       "ours_ds1 generates extra groups by design, so its samples/s is lower"})
    if os.environ.get("SWE_SRL_GIT_COMMIT"):  # a copy of the tree without .git (e.g. a lent GPU machine)
        payload = json.loads(path.read_text())
        if not payload["environment"].get("git_commit"):
            payload["environment"]["git_commit"] = os.environ["SWE_SRL_GIT_COMMIT"]
            path.write_text(json.dumps(payload, indent=2) + "\n")
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.out_dir) / path.name).write_text(path.read_text())
    print(json.dumps(summary, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
