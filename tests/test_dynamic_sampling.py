"""Dynamic sampling that generates what it keeps (issue #17 item 3): the pure pieces in swe_srl.core.sampling
(round size, keep-rate estimate, seeded epoch order with flat-prompt skipping) and the trainer loop on the tiny
random model (tests/tiny_model.py): round sizes, carried surplus, epoch order, padding only at the cap, the
old-log-prob fill for carried groups, and the state saved with checkpoints."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from swe_srl.core.sampling import KeepRate, PromptOrder, round_size

# ---- pure logic -------------------------------------------------------------------------------------------------


def test_round_size_is_ceil_missing_over_rate_within_bounds():
    assert round_size(0, 0.5, 10) == 0 and round_size(-2, 0.5, 10) == 0
    assert round_size(3, 1.0, 10) == 3
    assert round_size(3, 0.5, 10) == 6
    assert round_size(3, 0.4, 10) == 8            # ceil(7.5)
    assert round_size(4, 0.5, 10) == 8            # exact quotient is not rounded up (float noise guarded)
    assert round_size(3, 0.01, 10) == 10          # capped
    assert round_size(5, 0.9, 2) == 2             # the cap wins over "at least missing"
    with pytest.raises(ValueError):
        round_size(1, 0.5, 0)


def test_keep_rate_starts_at_prior_and_follows_observations():
    k = KeepRate(prior=0.75, prior_weight=4, decay=0.9)
    assert k.rate == pytest.approx(0.75)
    k.update(0, 0)                                  # an empty round changes nothing
    assert k.rate == pytest.approx(0.75)
    for _ in range(60):
        k.update(kept=3, generated=10)
    assert k.rate == pytest.approx(0.3, abs=0.02)
    for _ in range(60):                             # the policy changed: recent rounds dominate
        k.update(kept=9, generated=10)
    assert k.rate == pytest.approx(0.9, abs=0.02)
    k.update(0, 1000)
    assert k.rate >= k.floor
    with pytest.raises(ValueError):
        KeepRate(prior=0.0)
    j = KeepRate()
    j.load_state_dict(k.state_dict())
    assert j.rate == k.rate


def test_prompt_order_is_a_seeded_epoch_order():
    o = PromptOrder(7, seed=3, skip_flat_after=0)
    drawn = o.draw(7 * 3 + 2)
    epochs = [drawn[i:i + 7] for i in range(0, 21, 7)]
    assert all(sorted(e) == list(range(7)) for e in epochs)       # each prompt exactly once per epoch
    assert len({tuple(e) for e in epochs}) > 1                    # a fresh permutation per epoch
    assert o.epoch == 3 and o.pos == 2
    assert PromptOrder(7, seed=3, skip_flat_after=0).draw(23) == drawn            # same seed, same order
    assert PromptOrder(7, seed=4, skip_flat_after=0).draw(23) != drawn
    # draws of any sizes continue one stream
    p = PromptOrder(7, seed=3, skip_flat_after=0)
    assert p.draw(5) + p.draw(1) + p.draw(17) == drawn


def test_prompt_order_skips_prompts_flat_on_their_last_k_visits_and_counts_them():
    o = PromptOrder(6, seed=0, skip_flat_after=2)
    o.record(4, flat=True)
    assert not o.skippable(4)
    o.record(4, flat=True)
    assert o.skippable(4)
    o.record(5, flat=True)
    o.record(5, flat=False)                                        # a kept visit clears the streak
    o.record(5, flat=True)
    assert not o.skippable(5)
    drawn = o.draw(12)
    assert 4 not in drawn and o.skipped == 2                       # once per epoch, two epochs
    assert sorted(drawn[:5]) == [0, 1, 2, 3, 5]
    # never skipping with K = 0
    z = PromptOrder(6, seed=0, skip_flat_after=0)
    for _ in range(5):
        z.record(4, flat=True)
    assert 4 in z.draw(6) and z.skipped == 0


def test_prompt_order_all_flat_clears_history_instead_of_looping():
    o = PromptOrder(3, seed=1, skip_flat_after=1)
    for i in range(3):
        o.record(i, flat=True)
    drawn = o.draw(4)
    assert len(drawn) == 4 and o.resets == 1 and o.skipped == 3


def test_prompt_order_state_round_trip_continues_the_same_stream():
    a = PromptOrder(9, seed=5, skip_flat_after=2)
    a.draw(4)
    a.record(1, True)
    a.record(1, True)
    state = json.loads(json.dumps(a.state_dict()))                 # it is saved as JSON with checkpoints
    b = PromptOrder(9, seed=5, skip_flat_after=2)
    b.load_state_dict(state)
    assert b.draw(30) == a.draw(30) and b.skipped == a.skipped
    with pytest.raises(ValueError):
        PromptOrder(8, seed=5).load_state_dict(state)


def test_config_keys_are_checked_and_the_multiprocess_launch_is_torchrun_style(tmp_path):
    from swe_srl.train.config import ConfigError, launch_command, load_settings

    base = ["model=m", "data=d.jsonl", f"output_dir={tmp_path}"]
    s = load_settings(None, base)
    assert (s.ds_keep_rate_prior, s.ds_skip_flat_after, s.ds_carry_max_groups, s.ds_max_groups_per_round) == (
        0.75, 3, None, None)
    for bad, key in (("ds_keep_rate_prior=0", "ds_keep_rate_prior"), ("ds_keep_rate_prior=1.5", "ds_keep_rate_prior"),
                     ("ds_skip_flat_after=-1", "ds_skip_flat_after"), ("ds_carry_max_groups=-2", "ds_carry_max_groups"),
                     ("ds_max_groups_per_round=0", "ds_max_groups_per_round")):
        with pytest.raises(ConfigError, match=key):
            load_settings(None, base + [bad])
    two = load_settings(None, base + ["batch_prompts=4", "num_generations=4", "per_device_train_batch_size=4"],
                        num_processes=2)
    cmd = launch_command(two, "r.yaml")
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "2"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--main_process_port") + 1] == "0"      # a free port: concurrent runs do not collide
    cfg = load_settings(None, base + ["batch_prompts=4", "num_generations=4", "per_device_train_batch_size=4"],
                        num_processes=2, accelerate_config="z.yaml")
    assert "--multi_gpu" not in launch_command(cfg, "r.yaml")     # the accelerate config names the distributed type


# ---- the trainer on the tiny model ------------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from swe_srl.core.schema import StepRecord, write_steps  # noqa: E402
from swe_srl.train.config import load_settings  # noqa: E402
from tiny_model import save_tiny  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _steps(path: Path, n: int, flat_every: int = 0) -> Path:
    recs = []
    for i in range(n):
        target = f"flat {i}" if flat_every and i % flat_every == 0 else f"x = {i} + {i}"
        recs.append(StepRecord(instance_id=f"p{i}", step_index=0, num_steps=1, task="math", tool=None,
                               prompt=[{"role": "user", "content": f"solve {i} + {i}"}], target=target, meta={}))
    write_steps(path, recs)
    return path


def _trainer(tiny_dir, tmp_path, reward, *overrides, n=8, flat_every=2):
    from swe_srl.tasks import task_for_data
    from swe_srl.train.config import trl_config
    from swe_srl.train.data import build_dataset, row_options
    from swe_srl.train.grpo import SRLGRPOTrainer
    from swe_srl.train.runner import load_model_and_tokenizer

    data = _steps(tmp_path / "steps.jsonl", n, flat_every)
    s = load_settings(None, [f"model={tiny_dir}", f"data={data}", f"output_dir={tmp_path / 'run'}",
                             "rollout=transformers", "bf16=false", "per_device_train_batch_size=4", "seed=0",
                             "plots=false", "num_generations=4", "batch_prompts=4", "max_completion_length=8",
                             "learning_rate=0.01", "prefill_think=true", "validation=false", *overrides])
    model, tok = load_model_and_tokenizer(s)
    ds = build_dataset(task_for_data(s.data), "srl", s.data, row_options(s, tok))
    tr = SRLGRPOTrainer(model=model, reward_funcs=[reward], args=trl_config(s, "transformers"), train_dataset=ds,
                        processing_class=tok, ds_eps=s.ds_eps, ds_max_rounds=s.ds_max_rounds,
                        ds_keep_rate_prior=s.ds_keep_rate_prior, ds_max_groups_per_round=s.ds_max_groups_per_round,
                        ds_carry_max_groups=s.ds_carry_max_groups, ds_skip_flat_after=s.ds_skip_flat_after)
    tr.model.train()
    return tr


class Recorder:
    """Reward: flat (0.5 for all G) on 'flat' targets, random otherwise; records the targets of every round."""

    __name__ = "recorder"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.rounds: list[list[str]] = []

    def __call__(self, prompts, completions, target, **kw):
        self.rounds.append(list(target[::4]))     # one entry per group (rows of a group are consecutive)
        return [0.5 if t.startswith("flat") else self.rng.random() for t in target]


def _step(tr, target_groups=4):
    batch = [dict(tr.train_dataset[0]) for _ in range(4 * target_groups)]   # only its size is used
    return tr._generate_and_score_completions(batch)


def test_rounds_generate_what_they_keep_and_carry_the_surplus(tiny_dir, tmp_path):
    rec = Recorder()
    tr = _trainer(tiny_dir, tmp_path, rec, "ds_skip_flat_after=0", n=16, flat_every=2)   # keep rate 1/2
    outs = [_step(tr) for _ in range(6)]
    log = tr.ds_log
    # round sizes: ceil(missing / estimated rate), the first from the prior 0.75: ceil(4 / 0.75) = 6
    assert [len(r) for r in rec.rounds][0] == 6
    for st in log:
        assert st["padded_groups"] == 0 and st["groups_trained"] == 4
    assert sum(st["carried_in"] for st in log) > 0                 # surplus kept groups were used, not dropped
    assert all(st["discarded_groups"] == 0 for st in log)
    generated = sum(st["groups_generated"] for st in log)
    kept = sum(st["groups_kept"] for st in log)
    trained = sum(st["groups_trained"] for st in log)
    assert kept == trained + log[-1]["carry_buffer"]               # every kept group is trained on or waiting
    keep_rate = kept / generated
    assert generated / trained <= 1.1 / keep_rate + 0.5 / trained   # the goal (+ the last buffer's slack)
    for out in outs:
        adv = out["advantages"].view(-1, 4)
        assert adv.shape[0] == 4 and bool((adv.abs().sum(1) > 0).all())   # every group in the batch has signal
        assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    carried = [o for o, st in zip(outs, log) if st["carried_in"]]
    assert carried and all("old_per_token_logps" in o for o in carried)
    m = tr._metrics["train"]
    assert len(m["ds/generated_per_kept"]) == 6 and "ds/carried_in" in m and "ds/skipped_flat" in m


def test_prompts_follow_a_seeded_epoch_order(tiny_dir, tmp_path):
    rec = Recorder()
    tr = _trainer(tiny_dir, tmp_path, rec, "ds_skip_flat_after=0", "ds_keep_rate_prior=1.0", n=8,
                  flat_every=0)   # nothing flat, and the prior says so: one round of exactly 4 groups per step
    for _ in range(4):
        _step(tr)
    seen = [t for r in rec.rounds for t in r]
    everyone = sorted(f"x = {i} + {i}" for i in range(8))
    assert len(seen) == 16 and sorted(seen[:8]) == sorted(seen[8:]) == everyone    # each prompt once per epoch
    order = tr._order.permutation(0) + tr._order.permutation(1)
    assert seen == [f"x = {i} + {i}" for i in order]
    assert all(st["rounds"] == 1 and st["groups_generated"] == 4 and st["carried_in"] == 0 for st in tr.ds_log)


def test_flat_prompts_are_skipped_after_k_visits_and_counted(tiny_dir, tmp_path):
    rec = Recorder()
    tr = _trainer(tiny_dir, tmp_path, rec, "ds_skip_flat_after=1", n=8, flat_every=2)
    for _ in range(5):
        _step(tr)
    skipped = sum(st["skipped_flat"] for st in tr.ds_log)
    assert skipped > 0 and tr._metrics["train"]["ds/skipped_flat"]
    # a flat prompt is generated at most once (K = 1): every later visit is a skip
    flat_seen = [t for r in rec.rounds for t in r if t.startswith("flat")]
    assert len(flat_seen) == len(set(flat_seen)) == 4
    assert tr.ds_log[-1]["kept_fraction"] == 1.0


def test_all_flat_pads_only_at_the_round_cap_and_warns(tiny_dir, tmp_path, capsys, caplog):
    tr = _trainer(tiny_dir, tmp_path, lambda prompts, completions, **kw: [0.0] * len(completions),
                  "ds_max_rounds=2", "batch_prompts=2", "ds_skip_flat_after=0")
    out = _step(tr, target_groups=2)
    st = tr.ds_log[-1]
    assert st["rounds"] == 2 and st["groups_kept"] == 0 and st["padded_groups"] == 2
    assert int(out["completion_mask"].sum()) == 0 and out["advantages"].shape[0] == 8
    assert "KEPT FRACTION" in capsys.readouterr().err
    assert any("ds_max_rounds" in r.getMessage() for r in caplog.records)
    assert tr._metrics["train"]["ds/padded_groups"] == [2.0]


def test_carried_rows_keep_old_logps_and_fresh_rows_get_the_current_ones(tiny_dir, tmp_path):
    tr = _trainer(tiny_dir, tmp_path, Recorder(), "ds_skip_flat_after=0", n=16, flat_every=2)
    tr.current_gradient_accumulation_steps = 1
    out = _step(tr)
    batch = {k: v for k, v in out.items() if k != "old_per_token_logps"}
    # 1) NaN old log-probs on every row == no old log-probs at all (TRL's on-policy case): same loss, same grads
    loss_ref = tr.compute_loss(tr.model, dict(batch))
    loss_ref.backward()
    g_ref = [p.grad.clone() for p in tr.model.parameters() if p.grad is not None]
    tr.model.zero_grad()
    nan_batch = dict(batch, old_per_token_logps=torch.full(batch["completion_ids"].shape, float("nan")))
    loss_nan = tr.compute_loss(tr.model, nan_batch)
    loss_nan.backward()
    g_nan = [p.grad.clone() for p in tr.model.parameters() if p.grad is not None]
    tr.model.zero_grad()
    assert torch.isfinite(loss_nan) and float(loss_nan) == pytest.approx(float(loss_ref), abs=1e-7)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g_ref, g_nan))
    assert not bool(torch.isnan(nan_batch["old_per_token_logps"]).any())       # filled in place
    # 2) a carried row's own old log-probs are used (a shifted value changes the ratio, so the loss)
    old = nan_batch["old_per_token_logps"].clone()
    old[:4] -= 0.5
    shifted = dict(batch, old_per_token_logps=old)
    assert float(tr.compute_loss(tr.model, shifted)) != pytest.approx(float(loss_ref), abs=1e-6)
    # 3) the old log-probs stored for carried groups are the generating policy's
    if tr._carry:
        saved, rows = tr._carry[0]
        fresh = tr._old_logps(saved)
        assert torch.allclose(fresh, saved["old_per_token_logps"], atol=1e-5)


def test_state_is_saved_with_checkpoints_and_resume_continues(tiny_dir, tmp_path):
    from swe_srl.train.runner import run

    data = _steps(tmp_path / "steps.jsonl", 8, flat_every=2)
    common = [f"model={tiny_dir}", f"data={data}", "rollout=transformers", "bf16=false",
              "per_device_train_batch_size=4", "seed=0", "plots=false", "num_generations=4", "batch_prompts=2",
              "max_completion_length=8", "learning_rate=0.01", "prefill_think=true", "validation=false",
              "save_steps=1", "max_steps=3", "logging_steps=1"]
    a = run(load_settings(None, common + [f"output_dir={tmp_path / 'a'}"]))
    ck = tmp_path / "a" / "checkpoint-2"
    state = json.loads((ck / "ds_state.json").read_text())
    assert state["order"]["n"] == 8 and state["totals"]["trained"] == 4
    carry_file = ck / "ds_carry_rank0.pt"
    if a.ds_log[1]["carry_buffer"]:
        assert torch.load(carry_file)["groups"] == a.ds_log[1]["carry_buffer"]
    import shutil

    (tmp_path / "b").mkdir()
    shutil.copytree(ck, tmp_path / "b" / "checkpoint-2")
    b = run(load_settings(None, common + [f"output_dir={tmp_path / 'b'}"]), resume=True)
    sa, sb = a.ds_log[2], b.ds_log[0]
    for k in ("rounds", "groups_generated", "groups_kept", "carried_in", "skipped_flat", "epoch"):
        assert sa[k] == sb[k], k
    assert b.ds_totals == a.ds_totals
    assert not math.isnan(sb["generated_per_kept"])
