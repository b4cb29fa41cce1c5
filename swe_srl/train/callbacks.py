"""Run outputs: metrics.jsonl (one line per logged step, an ``AppendLog``; validation rows with val/* keys are
appended by ``validation.ValidationCallback`` through ``append_row``), PNG curves.

On resume, lines logged after the checkpoint's step are dropped (the resumed run logs those steps again), and a
torn last line from a crash is cut off.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..core.io import AppendLog

PLOT_KEYS = (
    ("reward", "reward mean"), ("reward_std", "reward std"), ("srl/format_error_rate", "format-error rate"),
    ("ds/kept_fraction", "kept fraction"), ("ds/rounds", "generation rounds"), ("loss", "loss"),
    ("perf/step_seconds", "step time (s)"), ("rlvr/accuracy", "answer accuracy"),
    ("val/step_reward_greedy", "val step reward (greedy)"), ("val/step_reward_sampled", "val step reward (sampled)"),
    ("val/format_rate_greedy", "val format rate (greedy)"),
    ("val/similarity_wellformed_greedy", "val similarity, well-formed (greedy)"),
    ("val/answer_accuracy", "val answer accuracy"),
)


def _memory() -> dict[str, float]:
    out = {"perf/max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}
    try:
        import torch

        if torch.cuda.is_available():
            out["perf/cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1024 ** 3
    except Exception:
        pass
    return out


class MetricsCallback(TrainerCallback):
    def __init__(self, output_dir: str | Path, plots: bool = True) -> None:
        self.dir = Path(output_dir)
        self.path = self.dir / "metrics.jsonl"
        self.plots = plots
        self.log: AppendLog | None = None
        self._t: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero:
            step = state.global_step
            self.log = AppendLog(self.path, keep=lambda r: r.get("step", 0) <= step)
        self._t = time.perf_counter()
        self._last_step = state.global_step

    def on_train_end(self, args, state, control, **kw):
        if self.log is not None:
            self.log.close()
            self.log = None

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kw):
        if self.log is None or not logs:
            return
        now = time.perf_counter()
        steps = max(state.global_step - self._last_step, 1)
        row: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch, "time": time.time()}
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                row[k] = v
        if self._t is not None and "loss" in logs:
            row["perf/step_seconds"] = (now - self._t) / steps
        row.update(_memory())
        self._t, self._last_step = now, state.global_step
        self.append_row(row)

    def append_row(self, row: dict[str, Any]) -> None:
        if self.log is None:
            return
        self.log.append(row)
        if self.plots:
            try:
                plot_metrics(self.log.records, self.dir / "plots")
            except Exception as e:  # plotting must never stop training
                print(f"[swe-srl] plotting failed: {e}", file=sys.stderr)


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``out_dir/curves.png``: one panel per logged metric of PLOT_KEYS and per tool similarity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [(k, t) for k, t in PLOT_KEYS if any(k in r for r in rows)]
    tool_keys = sorted({k for r in rows for k in r if k.startswith(("srl/similarity/", "val/similarity/"))})
    panels = keys + [(k, k.split("/", 1)[1]) for k in tool_keys]
    if not panels:
        return []
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.8 * nrow), squeeze=False)
    for ax, (k, title) in zip(axes.flat, panels):
        xs = [r["step"] for r in rows if k in r]
        ys = [r[k] for r in rows if k in r]
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path = out_dir / "curves.png"
    tmp = out_dir / "curves.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return [path]
