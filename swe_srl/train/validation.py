"""Validation during training and the best checkpoint (the paper: "for each method, we select the checkpoint with
the best performance on the validation set").

Every ``eval_steps`` optimizer steps (``eval_every``; a float < 1 is a fraction of the run) and after the last step,
``ValidationCallback`` scores the run's validation rows (``data.validation_rows``: the val split, at most
``eval_max_rows``, the same rows every time) with the model being trained, on process 0:

  val/step_reward_greedy           mean step reward (similarity of the action, format_penalty when malformed)
  val/step_reward_sampled          the same for one sampled completion per row (rollout temperature / top_p)
  val/format_rate_greedy           share of greedy completions that follow <think>…</think> + one action
  val/similarity_wellformed_greedy mean similarity over the well-formed greedy completions
  val/similarity/<tool>_greedy     mean greedy step reward per tool (SWE: bash, str_replace_editor, …)
  val/answer_accuracy              rlvr (and SRL -> RLVR): greedy answer accuracy on the val problems (Task.grade)

Rows go to ``metrics.jsonl`` (one row per evaluation, same ``step`` as the training row) and ``validation.jsonl``.
When the best metric (``best_metric``; auto = val/answer_accuracy for rlvr with val/step_reward_greedy breaking
ties, else val/step_reward_greedy) strictly improves, the model and tokenizer are written to ``output_dir/best``
with ``best.json`` (step, metric, value, all metrics); the runner copies that into the manifest. Generation runs
under ``torch.random.fork_rng`` with a fixed seed, so validation never changes the training RNG stream (a resumed
run stays identical). Cost per evaluation: eval_max_rows x (1 + eval_sampled) completions of eval_max_new_tokens.

Multi-process: process 0 generates with its copy of the model while the others wait at the next collective; this
needs whole weights on process 0 (DDP). With ZeRO-3 / FSDP sharding set ``validation: false``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ..core.generation import SamplingParams
from ..core.io import AppendLog, write_json_atomic
from ..core.reward import score_completion
from ..core.task import Task
from ..generation import TransformersGenerator

TIE_BREAK = "val/step_reward_greedy"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def score_steps(completions: list[str], rows: list[dict], *, think_prefilled: bool, format_penalty: float,
                backend: str, suffix: str) -> dict[str, float]:
    """Step-reward metrics of one completion per row (``suffix``: "greedy" | "sampled")."""
    res = [score_completion(c, r["target"], think_prefilled=think_prefilled, format_penalty=format_penalty,
                            backend=backend) for c, r in zip(completions, rows)]
    rewards = [x.reward for x in res]
    ok = [x.similarity for x in res if x.violation is None]
    out: dict[str, float] = {f"val/step_reward_{suffix}": _mean(rewards),
                             f"val/format_rate_{suffix}": sum(x.violation is None for x in res) / len(res)}
    sim = _mean(ok)
    if sim is not None:
        out[f"val/similarity_wellformed_{suffix}"] = sim
    if suffix == "greedy":
        by_tool: dict[str, list[float]] = {}
        for x, r in zip(res, rows):
            by_tool.setdefault(str(r.get("tool") or "step"), []).append(x.reward)
        if len(by_tool) > 1 or next(iter(by_tool), "math") not in ("math", "step"):
            for tool, xs in sorted(by_tool.items()):
                out[f"val/similarity/{tool}_greedy"] = _mean(xs)
    return out


class ValidationCallback(TrainerCallback):
    def __init__(self, task: Task, step_rows: list[dict], answer_rows: list[dict], output_dir: str | Path, *,
                 every: float | int, max_new_tokens: int, sampled: bool, temperature: float = 1.0,
                 top_p: float = 1.0, batch_size: int = 8, think_prefilled: bool = False, format_penalty: float = -1.0,
                 backend: str = "exact", best_metric: str = "val/step_reward_greedy", on_start: bool = False,
                 seed: int = 0, source: str = "") -> None:
        self.task = task
        self.step_rows = step_rows
        self.answer_rows = answer_rows
        self.dir = Path(output_dir)
        self.every = every
        self.max_new_tokens = int(max_new_tokens)
        self.sampled = sampled
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.batch_size = int(batch_size)
        self.think_prefilled = think_prefilled
        self.format_penalty = float(format_penalty)
        self.backend = backend
        self.best_metric = best_metric
        self.on_start = on_start
        self.seed = int(seed)
        self.source = source
        self.metrics_log: Any = None          # MetricsCallback; validation rows go into its metrics.jsonl too
        self.log: AppendLog | None = None
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self._last_eval_step = -1

    # ---- schedule ----
    def _every_steps(self, state) -> int:
        e = self.every
        if isinstance(e, float) and e < 1:
            return max(1, math.ceil(e * max(state.max_steps, 1)))
        return max(1, int(e))

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
        if not state.is_world_process_zero:
            return
        step = state.global_step
        self.log = AppendLog(self.dir / "validation.jsonl", keep=lambda r: r.get("step", 0) <= step)
        self.history = list(self.log.records)
        best_file = self.dir / "best" / "best.json"
        if best_file.exists():
            b = json.loads(best_file.read_text())
            self.best = b if b.get("step", 0) <= step else None
        if self.history:
            self._last_eval_step = self.history[-1]["step"]

    def on_step_begin(self, args, state, control, model=None, processing_class=None, **kw):
        # the step-0 evaluation waits for the first step, when MetricsCallback's log is open
        if self.on_start and state.is_world_process_zero and state.global_step == 0 and self._last_eval_step < 0:
            self.evaluate(state, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
        if state.is_world_process_zero and state.global_step % self._every_steps(state) == 0:
            self.evaluate(state, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kw):
        if state.is_world_process_zero and self._last_eval_step != state.global_step:
            self.evaluate(state, model, processing_class)
        if self.log is not None:
            self.log.close()
            self.log = None

    # ---- one evaluation ----
    def _generate(self, gen: TransformersGenerator, prompts: list, temperature: float, offset: int) -> list[str]:
        params = SamplingParams(n=1, temperature=temperature, top_p=self.top_p if temperature > 0 else 1.0,
                                max_new_tokens=self.max_new_tokens, seed=self.seed + offset)
        return [o[0] for o in gen.generate(prompts, params)]

    def measure(self, model, tokenizer) -> dict[str, float]:
        """The validation metrics of ``model`` now (RNG-neutral; the model's train/eval mode is restored)."""
        was_training = model.training
        tok_side = tokenizer.padding_side
        device = next(model.parameters()).device
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                gen = TransformersGenerator(model, tokenizer, batch_size=self.batch_size, device=str(device))
                if self.step_rows:
                    prompts = [r["prompt"] for r in self.step_rows]
                    kw = dict(think_prefilled=self.think_prefilled, format_penalty=self.format_penalty,
                              backend=self.backend)
                    out.update(score_steps(self._generate(gen, prompts, 0.0, 0), self.step_rows, suffix="greedy",
                                           **kw))
                    if self.sampled:
                        out.update(score_steps(self._generate(gen, prompts, self.temperature, 1), self.step_rows,
                                               suffix="sampled", **kw))
                if self.answer_rows:
                    comps = self._generate(gen, [r["prompt"] for r in self.answer_rows], 0.0, 2)
                    out["val/answer_accuracy"] = _mean([float(self.task.grade(c, r["answer"]))
                                                        for c, r in zip(comps, self.answer_rows)])
        finally:
            model.train(was_training)
            tokenizer.padding_side = tok_side
        out["val/rows"] = float(len(self.step_rows) + len(self.answer_rows))
        out["val/seconds"] = time.perf_counter() - t0
        return out

    def _key(self, metrics: dict[str, float]) -> tuple[float, float] | None:
        main = metrics.get(self.best_metric)
        if main is None:
            return None
        tie = metrics.get(TIE_BREAK) if self.best_metric != TIE_BREAK else 0.0
        return (main, tie if tie is not None else -math.inf)

    def evaluate(self, state, model, tokenizer) -> dict[str, Any]:
        if model is None or tokenizer is None or not (self.step_rows or self.answer_rows):
            return {}
        metrics = self.measure(model, tokenizer)
        row = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **metrics}
        self._last_eval_step = state.global_step
        self.history.append(row)
        if self.log is not None:
            self.log.append(row)
        if self.metrics_log is not None:
            self.metrics_log.append_row(row)
        key = self._key(metrics)
        best_key = self._key(self.best["metrics"]) if self.best else None
        if key is not None and (best_key is None or key > best_key):
            self._save_best(model, tokenizer, state.global_step, metrics)
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("val/") and "/similarity/" not in k}
        print(f"[swe-srl] validation step {state.global_step}: {shown}", file=sys.stderr)
        return row

    def _save_best(self, model, tokenizer, step: int, metrics: dict[str, float]) -> None:
        best = self.dir / "best"
        tmp = self.dir / "best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        self.best = {"step": step, "metric": self.best_metric, "value": metrics[self.best_metric],
                     "tie_break": TIE_BREAK if self.best_metric != TIE_BREAK else None, "metrics": metrics,
                     "rows": len(self.step_rows) + len(self.answer_rows), "source": self.source}
        write_json_atomic(tmp / "best.json", self.best)
        shutil.rmtree(best, ignore_errors=True)
        tmp.replace(best)
