"""Worker of tests/test_multiprocess_train.py (not a test module): one SRL step with dynamic sampling, capturing the
trained batch and the gradient of the first optimizer step.

  accelerate launch --multi_gpu --num_processes 2 tests/mp_train_worker.py CONFIG.yaml OUT     (2 ranks, gloo on CPU)
  python tests/mp_train_worker.py CONFIG.yaml OUT --replay BATCH0.pt BATCH1.pt                  (1 process)

Two ranks: the reward is flat for every rollout of rank 1's first generation round (so rank 1 needs a refill that
rank 0 does not: the ranks must still run the same rounds), deterministic in (completion, target) otherwise. Each
rank writes OUT/batch_rank<R>.pt (its post-dynamic-sampling batch), OUT/grads_rank<R>.pt (gradients after DDP's
all-reduce, before the optimizer step) and OUT/ds_log_rank<R>.json. ``--replay``: one process trains on the two
ranks' batches concatenated (the same global batch) instead of generating, and writes OUT/grads_replay.pt.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swe_srl.tasks import task_for_data  # noqa: E402
from swe_srl.train.config import load_settings, trl_config  # noqa: E402
from swe_srl.train.data import build_dataset, row_options  # noqa: E402
from swe_srl.train.grpo import SRLGRPOTrainer, merge_rows  # noqa: E402
from swe_srl.train.runner import load_model_and_tokenizer  # noqa: E402


class RankReward:
    __name__ = "rank_reward"

    def __init__(self, flat_rank: int = 1) -> None:
        self.flat_rank = flat_rank
        self.calls = 0

    def __call__(self, prompts, completions, target, **kw):
        self.calls += 1
        if int(os.environ.get("RANK", "0")) == self.flat_rank and self.calls == 1:
            return [0.0] * len(completions)
        return [(zlib.crc32((str(c) + "|" + t).encode()) % 1000) / 1000 for c, t in zip(completions, target)]


class GradCapture(TrainerCallback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if state.global_step == 0:
            inner = model.module if hasattr(model, "module") else model
            torch.save({k: p.grad.detach().cpu().clone() for k, p in inner.named_parameters() if p.grad is not None},
                       self.path)


class Capturing(SRLGRPOTrainer):
    out_dir: Path
    replay: dict | None = None

    def _generate_and_score_completions(self, inputs):
        if self.replay is not None and self.model.training:
            return self.replay
        out = super()._generate_and_score_completions(inputs)
        if self.model.training and self.state.global_step == 0:
            torch.save({k: v.cpu() for k, v in out.items() if isinstance(v, torch.Tensor)},
                       self.out_dir / f"batch_rank{self.accelerator.process_index}.pt")
        return out


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    replay = sys.argv[4:6] if len(sys.argv) > 3 and sys.argv[3] == "--replay" else None
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    s = load_settings(config, [f"output_dir={out / ('run_replay' if replay else 'run')}"]
                      + (["batch_prompts=4"] if replay else []))
    model, tok = load_model_and_tokenizer(s)
    ds = build_dataset(task_for_data(s.data), "srl", s.data, row_options(s, tok))
    rank = int(os.environ.get("RANK", "0"))
    tr = Capturing(model=model, reward_funcs=[RankReward()], args=trl_config(s, "transformers"), train_dataset=ds,
                   processing_class=tok, ds_eps=s.ds_eps, ds_max_rounds=s.ds_max_rounds,
                   callbacks=[GradCapture(out / (f"grads_{'replay' if replay else f'rank{rank}'}.pt"))])
    tr.out_dir = out
    if replay:
        parts = [torch.load(p) for p in replay]
        merged = merge_rows([(b, list(range(b["advantages"].shape[0]))) for b in parts], tok.pad_token_id)
        merged["num_items_in_batch"] = sum(int(b["completion_mask"].sum()) for b in parts) * torch.ones(())
        tr.replay = merged
    result = tr.train()
    (out / f"ds_log_{'replay' if replay else f'rank{rank}'}.json").write_text(json.dumps(
        {"ds_log": tr.ds_log, "loss": result.training_loss, "world": tr.accelerator.num_processes}))


if __name__ == "__main__":
    main()
