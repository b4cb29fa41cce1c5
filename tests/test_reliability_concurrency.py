"""Two writers into one output directory (issue #16; tally in docs/reliability.md).

Every command that writes an output directory holds ``swe_srl.core.io.OutputLock`` on it: a second writer fails at
once with a one-line error naming the first one's PID, and the first completes intact. Real processes, real locks; the
first writer is held open by a gate (a file it waits for in its ``on_unit`` callback), not by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from swe_srl.core.io import OutputLock, OutputLocked

ROOT = Path(__file__).resolve().parents[1]
TRAJ = ROOT / "swe_srl" / "sample_tasks" / "swe"

# the first `collect`: the real collect_swe, paused after its first unit until the gate file exists
FIRST = """
import os, sys, time
from pathlib import Path
from environments.collect import collect_swe
out, gate, ready, traj = sys.argv[1:5]
def on_unit(res):
    Path(ready).write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
m = collect_swe([traj], out, progress=False, on_unit=on_unit)
print("STATUS", m["stats"]["status"] if "stats" in m else m.get("run_stats", {}).get("status"))
"""


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 240) -> None:
    end = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"first writer exited early: {proc.communicate()}")
        if time.monotonic() > end:
            raise AssertionError("first writer never reached its first unit")
        time.sleep(0.05)


def test_two_concurrent_collects_into_one_out(tmp_path: Path):
    out, gate, ready = tmp_path / "out", tmp_path / "gate", tmp_path / "ready"
    first = subprocess.Popen([sys.executable, "-c", FIRST, str(out), str(gate), str(ready), str(TRAJ)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, first)
        t0 = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "swe_srl.cli", "collect", "--trajectories", str(TRAJ),
                                 "--out", str(out), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                                timeout=240)
        assert second.returncode != 0
        err = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(err) == 1, second.stderr
        assert err[0].startswith("error:") and f"pid {first.pid}" in err[0], err
        assert "Traceback" not in second.stderr
        assert time.monotonic() - t0 < 120                 # at once: it does not wait for the lock
        gate.write_text("go")
        stdout, stderr = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    # the first run is intact: complete, every trajectory once, no lines from the second
    manifest = json.loads((out / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert "complete" in text
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    assert steps
    ids = [(s.get("unit") or s.get("instance_id"), s.get("step_index", s.get("step"))) for s in steps]
    assert len(ids) == len(set(ids)), "duplicate step records: two writers interleaved"
    # the lock is free again afterwards
    with OutputLock(out):
        pass


HOLD = ("import sys, time; from swe_srl.core.io import OutputLock; "
        "l = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)")


@pytest.fixture
def held(tmp_path: Path):
    """An output directory whose lock another live process holds; yields (dir, holder pid)."""
    d = tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        yield d, p.pid
    finally:
        p.kill()
        p.wait()


def test_collect_math_refuses_a_held_out(held, tmp_path: Path):
    from math_srl.collect import collect_math

    d, pid = held
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"problem": "1+1?", "solution": "Step 1: 1+1=2.\nStep 2: so \\boxed{2}."}) + "\n")
    with pytest.raises(OutputLocked, match=f"pid {pid}"):
        collect_math(rows, d)
    assert not (d / "steps.jsonl").exists()


def test_evaluate_math_refuses_a_held_out(held):
    from math_srl.evaluate import evaluate_math

    d, pid = held
    with pytest.raises(OutputLocked, match=f"pid {pid}"):
        evaluate_math(object(), ["math500"], out_dir=str(d))   # fails before the generator is ever used
    assert list(p.name for p in d.iterdir()) == [".swe-srl.lock"]


def test_swe_eval_refuses_a_held_out(held, tmp_path: Path):
    from swe_srl.swe_eval.runner import EvalConfig, run_eval

    d, pid = held
    ds = tmp_path / "instances.jsonl"
    ds.write_text(json.dumps({"instance_id": "a__b-1", "repo": "a/b", "base_commit": "0" * 40, "patch": "",
                              "test_patch": "", "problem_statement": "x", "FAIL_TO_PASS": [], "PASS_TO_PASS": []})
                  + "\n")
    with pytest.raises(OutputLocked, match=f"pid {pid}"):
        run_eval(EvalConfig(dataset=str(ds), gold=True, out_dir=str(d)), log=lambda s: None)
    assert list(p.name for p in d.iterdir()) == [".swe-srl.lock"]


def test_train_refuses_a_held_output_dir(held):
    pytest.importorskip("trl")
    from swe_srl.train.runner import run

    d, pid = held
    settings = SimpleNamespace(trl={"output_dir": str(d)}, rollout=None)   # run() locks before it reads anything
    with pytest.raises(OutputLocked, match=f"pid {pid}"):
        run(settings)
    assert list(p.name for p in d.iterdir()) == [".swe-srl.lock"]


def test_quickstart_into_a_held_out_fails_at_once_with_one_line(held):
    """``swe-srl quickstart --out HELD``: the real CLI in a real process; one line naming the holder, exit 2, before
    any state is written or a model resolved (the lock is probed before the quickstart module, and torch, load)."""
    d, pid = held
    r = subprocess.run([sys.executable, "-m", "swe_srl.cli", "quickstart", "--out", str(d)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and f"pid {pid}" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert [p.name for p in d.iterdir()] == [".swe-srl.lock"]          # no state.json: nothing was started
