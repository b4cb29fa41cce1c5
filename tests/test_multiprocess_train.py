"""Multi-process training on CPU (issue #15 item 6): real ``accelerate launch`` subprocesses, 2 ranks, gloo.

* ``swe-srl train --num-processes 2`` runs SRL with dynamic sampling for 3 steps and writes its outputs;
* both ranks stay in lockstep (same refill rounds, same global counts) when one rank's first round is all flat;
* the gradient of one step equals the 1-process run's on the same global batch (both ranks' batches concatenated).
The tiny random model (tests/tiny_model.py) keeps each launch to well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from swe_srl.core.schema import StepRecord, write_steps  # noqa: E402
from tiny_model import save_tiny  # noqa: E402

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="true",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _run(cmd: list[str], timeout: int = 420) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO)
    assert r.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-6000:]}"
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    model = save_tiny(root / "model")
    recs = [StepRecord(instance_id=f"p{i}", step_index=0, num_steps=1, task="math", tool=None,
                       prompt=[{"role": "user", "content": f"solve {i} + {i}"}], target=f"x = {i} + {i}", meta={})
            for i in range(8)]
    data = root / "steps.jsonl"
    write_steps(data, recs)
    cfg = {"model": str(model), "data": str(data), "rollout": "transformers", "bf16": False,
           "per_device_train_batch_size": 4, "num_generations": 4, "batch_prompts": 4, "max_completion_length": 8,
           "learning_rate": 0.01, "prefill_think": True, "validation": False, "plots": False, "seed": 0,
           "save_steps": 100, "logging_steps": 1, "activation_checkpointing": False}
    return root, model, data, cfg


def test_cli_two_processes_three_ds_steps(setup):
    root, model, data, cfg = setup
    out = root / "cli_run"
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in cfg.items() if k not in ("model", "data")]
    cmd = [sys.executable, "-m", "swe_srl.cli", "train", "--model", str(model), "--data", str(data), "-o", str(out),
           "--max-steps", "3", "--num-processes", "2"]
    for s_ in sets:
        cmd += ["--set", s_]
    r = _run(cmd)
    assert "accelerate launch --num_processes 2 --multi_gpu" in r.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in rows if "ds/rounds" in x]
    assert [x["step"] for x in steps] == [1, 2, 3]
    for x in steps:
        # per-step global numbers: 4 groups per step over the 2 ranks, trained or (at the round cap) padded
        assert x["ds/rounds"] >= 1 and x["ds/groups_generated"] >= 2 and "ds/generated_per_kept" in x
    man = json.loads((out / "manifest.json").read_text())
    assert man["num_processes"] == 2
    assert (out / "final" / "config.json").exists()


def test_two_ranks_lockstep_and_gradient_equals_one_process(setup):
    root, model, data, cfg = setup
    out = root / "grad"
    conf = root / "grad.yaml"
    conf.write_text(yaml.safe_dump(dict(cfg, max_steps=1, max_grad_norm=1e9)))
    _run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
          str(TESTS / "mp_train_worker.py"), str(conf), str(out)])
    logs = [json.loads((out / f"ds_log_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(x["world"] == 2 for x in logs)
    a, b = (x["ds_log"][0] for x in logs)
    # rank 1's first round was all flat, rank 0's was not: both still ran the same rounds of the same size
    assert a["rounds"] == b["rounds"] >= 2 and a["groups_generated"] == b["groups_generated"]
    for k in ("groups_kept", "groups_trained", "carried_out", "padded_groups"):
        assert a[k] == b[k], k              # global counts agree on both ranks
    assert a["padded_groups"] == 0 and a["groups_trained"] == 4

    g0, g1 = torch.load(out / "grads_rank0.pt"), torch.load(out / "grads_rank1.pt")
    assert g0.keys() == g1.keys() and all(torch.equal(g0[k], g1[k]) for k in g0)      # DDP all-reduced
    _run([sys.executable, str(TESTS / "mp_train_worker.py"), str(conf), str(out), "--replay",
          str(out / "batch_rank0.pt"), str(out / "batch_rank1.pt")])
    ref = torch.load(out / "grads_replay.pt")
    assert ref.keys() == g0.keys()
    total = sum(float(v.abs().sum()) for v in ref.values())
    assert total > 0
    for k in ref:
        assert torch.allclose(g0[k], ref[k], rtol=1e-4, atol=1e-7), (k, float((g0[k] - ref[k]).abs().max()))
    loss2 = logs[0]["loss"]
    loss1 = json.loads((out / "ds_log_replay.json").read_text())["loss"]
    assert loss1 == pytest.approx(loss2, abs=1e-6)
