"""The official swebench (4.1.x) Docker harness, run as a subprocess in ``out_dir/harness`` with a fresh run_id,
for users with prebuilt instance images. Its per-instance ``report.json`` / logs are mapped to the same
``InstanceResult`` statuses as the sandbox grader (``grading.status_of``) and written by the same report writer.

``--namespace swebench`` (default) pulls the prebuilt ``swebench/sweb.eval.x86_64.*`` instance images instead of
building them; pass ``namespace=None`` to let swebench build base/env/instance images itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .grading import EMPTY_PATCH, ERROR, InstanceResult, status_of


def new_run_id(prefix: str = "swe-srl") -> str:
    """Unique per invocation: swebench caches results by run_id and would silently reuse them."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_harness(instances: list[dict[str, Any]], predictions: dict[str, dict[str, Any]], *, out_dir: str | Path,
                dataset_name: str, split: str = "test", max_workers: int = 4, timeout: int = 1800,
                namespace: str | None = "swebench", run_id: str | None = None,
                cache_level: str = "env") -> list[InstanceResult]:
    from swebench.harness.constants import LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT, RUN_EVALUATION_LOG_DIR

    out = Path(out_dir) / "harness"
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    results: dict[str, InstanceResult] = {}
    todo = []
    for inst in instances:
        iid = inst["instance_id"]
        pred = predictions.get(iid)
        if pred is None or not (pred.get("model_patch") or "").strip():
            results[iid] = InstanceResult(iid, EMPTY_PATCH, "empty_patch", repo=inst.get("repo", ""))
        else:
            todo.append(pred)
    if todo:
        preds_path = out / f"{run_id}.predictions.jsonl"
        preds_path.write_text("".join(json.dumps(p) + "\n" for p in todo))
        cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(dataset_name),
               "--split", split, "--predictions_path", str(preds_path.resolve()), "--run_id", run_id,
               "--max_workers", str(max_workers), "--timeout", str(timeout), "--cache_level", cache_level,
               "--instance_ids", *[p["instance_id"] for p in todo], "--report_dir", str(out.resolve())]
        if namespace:
            cmd += ["--namespace", namespace]
        with open(out / f"{run_id}.log", "w") as log:
            proc = subprocess.run(cmd, cwd=out, stdout=log, stderr=subprocess.STDOUT)
        harness_rc = proc.returncode
    else:
        harness_rc = 0
    log_root = out / RUN_EVALUATION_LOG_DIR / run_id
    for pred in todo:
        iid = pred["instance_id"]
        d = log_root / str(pred.get("model_name_or_path", "None")).replace("/", "__") / iid
        repo = next((i.get("repo", "") for i in instances if i["instance_id"] == iid), "")
        rep = d / LOG_REPORT
        entry = json.loads(rep.read_text()).get(iid, {}) if rep.exists() else None
        text = "\n".join(p.read_text(errors="replace") for p in (d / LOG_INSTANCE, d / LOG_TEST_OUTPUT) if p.exists())
        status, reason = status_of(entry, text)
        if status == ERROR:
            reason = "no report (see harness log)" if harness_rc == 0 else f"harness exit {harness_rc}"
        results[iid] = InstanceResult(iid, status, reason, tests=(entry or {}).get("tests_status", {}), repo=repo)
    return [results[i["instance_id"]] for i in instances]
