"""Learning check on CPU (issue #11): SmolLM2-135M on real s1K step data, five methods at one budget, each scored
from its best validation checkpoint on a test split that is neither train nor validation.

    python benchmarks/learning_check.py [--steps 4] [--test-steps 32] [--out runs/learning_check]

1. s1K (../shared/data) -> ``math_srl.collect.collect_math`` with the paper's seeded 60-question validation split
   and a seeded ``--test-questions`` test split (disjoint); step prompts over --max-prompt-chars are left out (CPU).
2. A common start W (its last step; no validation): a short step-SFT format warm-up (SmolLM2 does not write <think>…</think> by itself; the paper's
   Qwen2.5-7B-Instruct does), trained on the train split only.
3. From W, at the same budget of --steps optimizer steps each:
     sft_outline  problem -> whole expert solution            (SFT, batch 4 sequences / step)
     sft_steps    step prompt -> <think>brief</think> + step    (SFT, batch 4 sequences / step)
     rlvr         answer reward, DAPO filter                  (GRPO, 2 prompts x G=4 rollouts / step)
     srl          step similarity reward, dynamic sampling    (GRPO, 2 prompts x G=4 rollouts / step)
     srl_rlvr     --steps/2 SRL steps, then --steps/2 RLVR steps from that run's best/ (same total budget)
   Each run validates every --eval-steps and at the end on the val split and keeps best/ (the paper's rule).
4. Test: every best/ (and the base model and W) generates greedily on the test steps; step reward, format rate,
   similarity when well-formed; 95% bootstrap intervals over test *questions* (cluster bootstrap: steps of one
   question move together), and paired bootstrap intervals of SRL minus each other method.
Writes benchmarks/results/learning_check.json + .png and, per run, RUN/test_eval.json (``swe-srl report`` reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
S1K = REPO.parent / "shared" / "data" / "s1k_questions_solutions" / "s1k.json"
LABELS = {"base": "SmolLM2-135M-Instruct (base)", "warmup": "W: format warm-up (start of every run)",
          "sft_outline": "SFT (outline)", "sft_steps": "SFT (steps)", "rlvr": "RLVR", "srl": "SRL",
          "srl_rlvr": "SRL -> RLVR"}


def log(msg: str) -> None:
    print(f"[learning-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare(args, out: Path) -> tuple[Path, list]:
    from math_srl.collect import collect_math
    from swe_srl.core.schema import read_steps, write_steps
    from swe_srl.core.task import record_split

    m = collect_math(str(args.data), str(out / "collected"), val_size=60, test_size=args.test_questions, seed=0)
    recs = read_steps(out / "collected" / "steps.jsonl")
    short = [r for r in recs if sum(len(x["content"]) for x in r.prompt) <= args.max_prompt_chars]
    write_steps(out / "steps.jsonl", short)
    by_q: dict[str, list] = {}
    for r in short:
        if record_split(r) == "test":
            by_q.setdefault(r.instance_id, []).append(r)
    test, i = [], 0
    while len(test) < args.test_steps and any(i < len(v) for v in by_q.values()):   # round-robin over questions
        for v in by_q.values():
            if i < len(v) and len(test) < args.test_steps:
                test.append(v[i])
        i += 1
    counts = {s: sum(1 for r in short if record_split(r) == s) for s in ("train", "val", "test")}
    log(f"collected {m['counts']['steps']} steps; <= {args.max_prompt_chars} chars: {counts}; test items {len(test)}")
    return out / "steps.jsonl", test, counts, m["counts"]


def train(name: str, method: str, init: str | None, data: Path, out: Path, args, extra=()) -> dict:
    from swe_srl.train.config import load_settings
    from swe_srl.train.runner import run

    t0 = time.time()
    done = out / name / "done.json"
    if done.exists():                          # resumable by stage: a finished run is reused
        log(f"{name}: reusing the finished run in {out / name}")
        return json.loads(done.read_text())
    o = [f"method={method}", f"model={args.model}", f"data={data}", f"output_dir={out / name}",
         "rollout=transformers", "bf16=false", "save_strategy='no'", "logging_steps=1", f"seed={args.seed}",
         "plots=true", "gradient_checkpointing=false", f"eval_max_rows={args.val_rows}",
         f"eval_max_new_tokens={args.max_new}", f"eval_batch_size=8"]
    if init:
        o.append(f"init_from={init}")
    run(load_settings(None, o + list(extra)))
    man = json.loads((out / name / "manifest.json").read_text())
    vpath = out / name / "validation.jsonl"
    val = [json.loads(x) for x in vpath.read_text().splitlines()] if vpath.exists() else []
    log(f"{name}: best step {man.get('best', {}).get('step')} ({time.time() - t0:.0f} s)")
    res = {"run_dir": str(out / name), "best": man.get("best"), "validation": val,
           "train_seconds": round(time.time() - t0, 1)}
    done.write_text(json.dumps(res))
    return res


def sft_args(args, target: str, steps: int, lr: float) -> list[str]:
    return [f"max_steps={steps}", f"sft_target={target}", f"batch_prompts={args.sft_batch}",
            f"per_device_train_batch_size={args.sft_batch}", f"learning_rate={lr}", "lr_scheduler_type=constant",
            "warmup_steps=0", f"max_length={args.sft_max_length}", f"eval_steps={args.eval_steps}"]


def rl_args(args, steps: int, eval_steps: int) -> list[str]:
    return [f"max_steps={steps}", f"batch_prompts={args.batch_prompts}", f"num_generations={args.g}",
            f"per_device_train_batch_size={args.g * args.batch_prompts}", f"max_completion_length={args.max_new}",
            f"learning_rate={args.lr}", f"ds_max_rounds={args.ds_max_rounds}", f"eval_steps={eval_steps}"]


def test_eval(model_path: str, test: list, max_new: int) -> dict:
    from swe_srl.core.reward import score_completion
    from swe_srl.generation import SamplingParams, TransformersGenerator

    gen = TransformersGenerator(model_path, batch_size=8)
    outs = gen.generate([r.prompt for r in test], SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new))
    res = [score_completion(o[0], r.target) for o, r in zip(outs, test)]
    return {"items": [{"id": r.id, "question": r.instance_id, "reward": x.reward, "format_ok": x.violation is None,
                       "similarity": x.similarity} for r, x in zip(test, res)],
            "example": outs[0][0][:300]}


def cluster_bootstrap(items: list[dict], key: str, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    qs: dict[str, list[float]] = {}
    for it in items:
        if it[key] is not None:
            qs.setdefault(it["question"], []).append(float(it[key]))
    groups = list(qs.values())
    if not groups:
        return (float("nan"),) * 3
    flat = [x for g in groups for x in g]
    rng = random.Random(seed)
    stats = []
    for _ in range(n):
        draw = [x for _ in groups for x in rng.choice(groups)]
        stats.append(sum(draw) / len(draw))
    stats.sort()
    return sum(flat) / len(flat), stats[int(0.025 * n)], stats[int(0.975 * n) - 1]


def paired_bootstrap(a: list[dict], b: list[dict], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a - b) over the same test items, clustered by question; (mean, lo, hi)."""
    diff: dict[str, list[float]] = {}
    for x, y in zip(a, b):
        assert x["id"] == y["id"]
        diff.setdefault(x["question"], []).append(x["reward"] - y["reward"])
    groups = list(diff.values())
    flat = [v for g in groups for v in g]
    rng = random.Random(seed)
    stats = sorted(sum(d := [v for _ in groups for v in rng.choice(groups)]) / len(d) for _ in range(n))
    return sum(flat) / len(flat), stats[int(0.025 * n)], stats[int(0.975 * n) - 1]


def summarize(ev: dict) -> dict:
    items = ev["items"]
    r = cluster_bootstrap(items, "reward")
    f = cluster_bootstrap([{**i, "f": float(i["format_ok"])} for i in items], "f")
    s = cluster_bootstrap(items, "similarity")
    return {"n": len(items), "step_reward": r[0], "step_reward_ci95": [r[1], r[2]], "format_rate": f[0],
            "format_rate_ci95": [f[1], f[2]], "similarity_wellformed": s[0], "similarity_wellformed_ci95": [s[1], s[2]],
            "example": ev["example"]}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["test"])
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    means = [res["test"][k]["step_reward"] for k in names]
    lo = [m - res["test"][k]["step_reward_ci95"][0] for m, k in zip(means, names)]
    hi = [res["test"][k]["step_reward_ci95"][1] - m for m, k in zip(means, names)]
    ax[0].bar(range(len(names)), means, yerr=[lo, hi], capsize=4, color="tab:blue")
    ax[0].set_xticks(range(len(names)), [k.replace("_", "\n") for k in names], fontsize=7)
    ax[0].axhline(0, color="k", lw=0.5)
    ax[0].set_title(f"test step reward (greedy, {res['data']['test_items']} steps, 95% cluster bootstrap)", fontsize=8)
    fr = [res["test"][k]["format_rate"] for k in names]
    ax[1].bar(range(len(names)), fr, color="tab:green")
    ax[1].set_xticks(range(len(names)), [k.replace("_", "\n") for k in names], fontsize=7)
    ax[1].set_title("test format rate (greedy)", fontsize=9)
    for k, run in res["runs"].items():
        v = [(r["step"], r["val/step_reward_greedy"]) for r in run["validation"] if "val/step_reward_greedy" in r]
        if v:
            ax[2].plot([x for x, _ in v], [y for _, y in v], marker="o", label=k)
    ax[2].set_title("validation step reward (greedy) during training", fontsize=9)
    ax[2].set_xlabel("optimizer step", fontsize=8)
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default=str(S1K))
    p.add_argument("--out", default=str(REPO / "runs" / "learning_check"))
    p.add_argument("--steps", type=int, default=3, help="optimizer steps of every method")
    p.add_argument("--warmup-steps", type=int, default=4)
    p.add_argument("--eval-steps", type=int, default=2)
    p.add_argument("--val-rows", type=int, default=4)
    p.add_argument("--test-questions", type=int, default=100)
    p.add_argument("--test-steps", type=int, default=20)
    p.add_argument("--max-prompt-chars", type=int, default=1200)
    p.add_argument("--batch-prompts", type=int, default=1, help="GRPO prompt groups per optimizer step")
    p.add_argument("--sft-batch", type=int, default=2, help="SFT sequences per optimizer step")
    p.add_argument("--sft-max-length", type=int, default=512)
    p.add_argument("--with-base", action="store_true", help="also test the base model (format rate 0 before)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--g", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-5, help="SRL/RLVR LR (the paper's 5e-7 moves nothing in 4 steps)")
    p.add_argument("--warmup-lr", type=float, default=1e-4, help="format warm-up LR (constant)")
    p.add_argument("--sft-lr", type=float, default=5e-5, help="SFT LR (constant; the paper's 5e-6 cosine, 3 epochs)")
    p.add_argument("--ds-max-rounds", type=int, default=1)
    p.add_argument("--max-new", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench-limit", type=int, default=0,
                   help="also run `eval --task math` greedy on the first N problems of amc23/aime24/minerva_math")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"learning check: {args.data} not found (needs ../shared/data)")
    import torch

    torch.set_num_threads(max(1, args.threads))
    from swe_srl.models import resolve_model

    base = resolve_model(args.model)
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, test, counts, collected = prepare(args, out)
    res: dict = {"settings": vars(args), "data": {"source": str(args.data), "collected": collected,
                                                  "short_prompt_rows": counts, "test_items": len(test),
                                                  "test_questions": len({r.instance_id for r in test})}}
    runs: dict[str, dict] = {}
    runs["warmup"] = train("warmup", "sft", None, data, out, args,
                           sft_args(args, "steps", args.warmup_steps, args.warmup_lr) + ["validation=false"])
    warm = str(out / "warmup" / "final")      # the common start: the warm-up's last step, not a selected checkpoint
    runs["sft_outline"] = train("sft_outline", "sft", warm, data, out, args, sft_args(args, "outline", args.steps,
                                                                                      args.sft_lr))
    runs["sft_steps"] = train("sft_steps", "sft", warm, data, out, args, sft_args(args, "steps", args.steps,
                                                                                  args.sft_lr))
    runs["srl"] = train("srl", "srl", warm, data, out, args, rl_args(args, args.steps, args.eval_steps))
    runs["rlvr"] = train("rlvr", "rlvr", warm, data, out, args, rl_args(args, args.steps, args.eval_steps))
    half = max(1, args.steps // 2)
    runs["srl_half"] = train("srl_half", "srl", warm, data, out, args, rl_args(args, half, 1))
    runs["srl_rlvr"] = train("srl_rlvr", "rlvr", str(out / "srl_half" / "best"), data, out, args,
                             rl_args(args, args.steps - half, 1))
    res["runs"] = {k: {kk: v[kk] for kk in ("best", "validation", "train_seconds")} for k, v in runs.items()}
    for k in ("srl", "rlvr", "srl_rlvr"):
        m = [json.loads(x) for x in (out / k / "metrics.jsonl").read_text().splitlines()]
        res["runs"][k]["train_curve"] = [{kk: r[kk] for kk in ("step", "reward", "ds/kept_fraction", "ds/rounds",
                                                               "srl/format_error_rate", "rlvr/accuracy") if kk in r}
                                         for r in m if "reward" in r]

    models = {"base": base} if args.with_base else {}
    models["warmup"] = warm
    models.update({k: str(out / k / "best") for k in ("sft_outline", "sft_steps", "rlvr", "srl", "srl_rlvr")})
    res["test"] = {}
    evals = {}
    for k, path in models.items():
        te = time.time()
        cache = out / f"test_items_{k}.json"
        if cache.exists():
            evals[k] = json.loads(cache.read_text())
        else:
            evals[k] = test_eval(path, test, args.max_new)
            evals[k]["seconds"] = round(time.time() - te, 1)
            cache.write_text(json.dumps(evals[k]))
        res["test"][k] = {"model": path, **summarize(evals[k]), "seconds": evals[k]["seconds"]}
        if k in runs:
            (out / k / "test_eval.json").write_text(json.dumps({"label": LABELS[k], "method": k,
                                                                **res["test"][k]}, indent=1))
        log(f"test {k}: reward {res['test'][k]['step_reward']:.3f} {res['test'][k]['step_reward_ci95']}")
    res["paired_srl_minus"] = {k: dict(zip(("mean", "lo", "hi"), paired_bootstrap(evals["srl"]["items"],
                                                                                   evals[k]["items"])))
                               for k in models if k != "srl"}
    if args.bench_limit:
        from math_srl.evaluate import evaluate_math
        from swe_srl.generation import TransformersGenerator

        res["benchmarks"] = {}
        for k, path in models.items():
            if k not in runs and k != "base":
                continue
            d = (out / k / "eval_math") if k in runs else (out / "base_eval_math")
            rep = evaluate_math(TransformersGenerator(path, batch_size=8), ["amc23", "aime24", "minerva_math"],
                                model_name=path, avg=False, out_dir=str(d), limit=args.bench_limit,
                                max_new_tokens=128)
            res["benchmarks"][k] = rep["benchmarks"]
            log(f"bench {k}: {rep['benchmarks']}")
    res["wall_s"] = round(time.time() - t0, 1)
    name = "learning_check" + (f"_{args.tag}" if args.tag else "")
    path = write_result(name, res)
    plot(res, RESULTS / f"{name}.png")
    print(json.dumps({k: {kk: v[kk] for kk in ("step_reward", "step_reward_ci95", "format_rate")}
                      for k, v in res["test"].items()}, indent=1))
    print(json.dumps(res["paired_srl_minus"], indent=1))
    log(f"wrote {path} in {res['wall_s']} s")


if __name__ == "__main__":
    main()
