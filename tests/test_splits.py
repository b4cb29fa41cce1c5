"""SWE validation split by instance (environments.splits): the paper's sizes, seeded, no instance shared with
train, --test-instances dropped, the store stays resumable, the trainer sees train rows only."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from environments.collect import CollectOptions, collect_swe
from environments.splits import (PAPER_VAL_TRAJECTORIES, SWAP_MARKER, TMP_DIR, SplitError, SplitOptions,
                                 apply_swe_splits, choose_val, finish_pending_swap, val_trajectories)
from environments.task import SWETask
from swe_srl.cli import app
from swe_srl.core.schema import StepRecord, read_steps, write_steps
from swe_srl.core.store import StepStore
from swe_srl.core.task import RowOptions, TaskError

FAST = dict(history_k=2, obs_max_chars=400)


def test_paper_sizes():
    assert val_trajectories(5000, None) == PAPER_VAL_TRAJECTORIES == 30   # the paper: 30 of 5,000
    assert val_trajectories(300, None) == 30
    assert val_trajectories(299, None) == 30 and val_trajectories(120, None) == 12   # 10 %
    assert val_trajectories(4, None) == 1 and val_trajectories(2, None) == 1        # at least 1 with >= 2
    assert val_trajectories(1, None) == 0 and val_trajectories(0, None) == 0
    assert val_trajectories(50, 7) == 7
    with pytest.raises(SplitError, match="--val-size"):
        SplitOptions(val_size=-1)


def test_choose_val_is_seeded_by_instance_and_keeps_a_train_instance():
    trajs = {f"i{k}": [f"t{k}a", f"t{k}b"] if k % 3 == 0 else [f"t{k}"] for k in range(40)}
    a, b = choose_val(trajs, 5, seed=1), choose_val(trajs, 5, seed=1)
    assert a == b and a != choose_val(trajs, 5, seed=2)
    assert sum(len(trajs[i]) for i in a) >= 5
    assert len(choose_val({"x": ["1"], "y": ["2"]}, 10, seed=0)) == 1     # one instance always stays train


def _store(out: Path, units: list[tuple[str, str, int]]) -> None:
    """units: (unit, instance_id, n_steps) committed through a real StepStore (one skipped unit in between)."""
    with StepStore(out, resume=False) as st:
        for j, (unit, iid, n) in enumerate(units):
            recs = [StepRecord(instance_id=iid, step_index=i, num_steps=n, task="swe", tool="bash",
                               prompt=[{"role": "user", "content": f"{iid} step {i}"}],
                               target=f"<function=bash>\n<parameter=command>ls {i}</parameter>\n</function>",
                               meta={"trajectory": unit}, id=f"{iid}@{unit}/{i}") for i in range(n)]
            st.commit(unit, recs, n_actions=n)
            if j == 1:
                st.skip("bad-file", "unreadable")


def test_splits_on_a_store_are_disjoint_by_instance_and_resumable(tmp_path):
    out = tmp_path / "c"
    units = [(f"u{k}", f"inst{k // 2}", 3) for k in range(20)]          # 10 instances x 2 trajectories
    _store(out, units)
    ids = tmp_path / "test_ids.txt"
    ids.write_text("# evaluation instances\ninst9\n")
    sec = apply_swe_splits(out, SplitOptions(val_size=None, seed=3, test_instances=str(ids)))
    recs = read_steps(out / "steps.jsonl")
    by_split = defaultdict(set)
    for r in recs:
        by_split[r.meta["split"]].add(r.instance_id)
    assert not (by_split["train"] & by_split["val"]) and "inst9" not in by_split["train"] | by_split["val"]
    assert sec["val_trajectories"] == 2 and sec["val_trajectories_target"] == 2   # 10 % of 18, whole instances
    assert sec["test_instance_trajectories_dropped"] == 2 and sec["train_trajectories"] == 16
    # the store is consistent: it reopens without truncation, the ledger kept the skipped unit and every offset
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    assert ledger[-1]["end"] == (out / "steps.jsonl").stat().st_size
    assert {e["unit"]: e["status"] for e in ledger}["bad-file"] == "skipped"
    assert sum(e["status"] == "skipped" and e.get("reason") == "test_instance" for e in ledger) == 2
    before = (out / "steps.jsonl").read_bytes()
    with StepStore(out, resume=True) as st:
        assert st.is_done("u0") and st.is_done("u19")
    assert (out / "steps.jsonl").read_bytes() == before
    assert apply_swe_splits(out, SplitOptions(seed=3, test_instances=str(ids)))["val_instances"] == sec["val_instances"]
    assert (out / "steps.jsonl").read_bytes() == before                   # idempotent
    # the trainer's rows: train only; validation rows: val only
    train = SWETask().rows("srl", out / "steps.jsonl", RowOptions())
    val = SWETask().rows("srl", out / "steps.jsonl", RowOptions(split="val"))
    val_ids = {r.id for r in recs if r.meta["split"] == "val"}
    assert train and val and not ({r["step_id"] for r in train} & val_ids) and {r["step_id"] for r in val} == val_ids


def test_interrupted_swap_is_completed(tmp_path):
    out = tmp_path / "c"
    _store(out, [(f"u{k}", f"i{k}", 2) for k in range(4)])
    expected = tmp_path / "ref"
    _store(expected, [(f"u{k}", f"i{k}", 2) for k in range(4)])
    apply_swe_splits(expected, SplitOptions(seed=0))
    # simulate a crash after the new ledger was moved in but before steps.jsonl was
    apply_swe_splits(out, SplitOptions(seed=0))
    (out / TMP_DIR).mkdir()
    (out / TMP_DIR / "steps.jsonl").write_bytes((out / "steps.jsonl").read_bytes())
    write_steps(out / "steps.jsonl", [r for r in read_steps(out / "steps.jsonl")][:1])   # the stale, shorter file
    (out / SWAP_MARKER).write_text("x")
    finish_pending_swap(out)
    assert (out / "steps.jsonl").read_bytes() == (expected / "steps.jsonl").read_bytes()
    assert not (out / SWAP_MARKER).exists() and not (out / TMP_DIR).exists()


def test_collect_cli_writes_the_split_and_refuses_a_missing_test_file(sample_trajectories, tmp_path):
    out = tmp_path / "steps"
    m = collect_swe([str(p) for p in sample_trajectories], out, CollectOptions(**FAST), progress=False,
                    split=SplitOptions(seed=0))
    recs = read_steps(out / "steps.jsonl")
    splits = {r.instance_id: r.meta["split"] for r in recs}
    assert set(splits.values()) == {"train", "val"} and m["split"]["val_trajectories"] == 1   # 4 -> at least 1
    assert json.loads((out / "manifest.json").read_text())["split"]["val_instances"] == m["split"]["val_instances"]
    by_inst = defaultdict(set)
    for r in recs:
        by_inst[r.instance_id].add(r.meta["split"])
    assert all(len(s) == 1 for s in by_inst.values())
    res = CliRunner().invoke(app, ["collect", "--task", "swe", "--trajectories", str(sample_trajectories[0]),
                                   "--out", str(tmp_path / "x"), "--test-instances", str(tmp_path / "none.txt"),
                                   "--no-progress"])
    assert res.exit_code != 0 and "--test-instances" in res.output and not (tmp_path / "x" / "steps.jsonl").exists()
    only_val = tmp_path / "v.jsonl"
    write_steps(only_val, [r for r in recs if r.meta["split"] == "val"])
    with pytest.raises(TaskError, match="no train rows"):
        SWETask().rows("sft", only_val, RowOptions())
