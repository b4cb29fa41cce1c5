"""The official swebench (4.1.x) Docker harness, run as a subprocess in ``out_dir/harness`` with a fresh run_id,
for users with prebuilt instance images. Its per-instance ``report.json`` / logs are mapped to the same
``InstanceResult`` statuses as the sandbox grader (``grading.status_of``) and written by the same report writer.

``--namespace swebench`` (default) pulls the prebuilt ``swebench/sweb.eval.x86_64.*`` instance images instead of
building them; ``namespace=None`` is passed on as ``--namespace none`` (swebench's own spelling: local names,
swebench builds base/env/instance images itself; leaving the flag out would mean swebench's default, the prebuilt
names). ``cache_level`` (swebench's ``--cache_level``): images above that level that this run pulled or built are
removed afterwards; the default ``instance`` keeps them, so ``--gold`` first prepares the images that
``--source image`` and the sandbox grader read. ``dataset_name`` may be a local JSON/JSONL file: it is passed as an
absolute path, since the harness runs in ``out_dir/harness``.
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

CACHE_LEVELS = ("none", "base", "env", "instance")
DEFAULT_CACHE_LEVEL = "instance"


def new_run_id(prefix: str = "swe-srl") -> str:
    """Unique per invocation: swebench caches results by run_id and would silently reuse them."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def harness_command(preds_path: str | Path, instance_ids: list[str], *, dataset_name: str, split: str = "test",
                    run_id: str, report_dir: str | Path, max_workers: int = 4, timeout: int = 1800,
                    namespace: str | None = "swebench", cache_level: str = DEFAULT_CACHE_LEVEL) -> list[str]:
    """The ``python -m swebench.harness.run_evaluation`` argv."""
    if cache_level not in CACHE_LEVELS:
        raise ValueError(f"cache_level: expected one of {CACHE_LEVELS}, got {cache_level!r}")
    ds = str(dataset_name)
    if ds.endswith((".json", ".jsonl")) or Path(ds).exists():
        ds = str(Path(ds).expanduser().resolve())
    return [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", ds,
            "--split", split, "--predictions_path", str(Path(preds_path).resolve()), "--run_id", run_id,
            "--max_workers", str(max_workers), "--timeout", str(timeout), "--cache_level", cache_level,
            "--namespace", namespace or "none", "--instance_ids", *instance_ids,
            "--report_dir", str(Path(report_dir).resolve())]


def run_harness(instances: list[dict[str, Any]], predictions: dict[str, dict[str, Any]], *, out_dir: str | Path,
                dataset_name: str, split: str = "test", max_workers: int = 4, timeout: int = 1800,
                namespace: str | None = "swebench", run_id: str | None = None,
                cache_level: str = DEFAULT_CACHE_LEVEL) -> list[InstanceResult]:
    from swebench.harness.constants import LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT, RUN_EVALUATION_LOG_DIR

    out = Path(out_dir) / "harness"
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    results: dict[str, InstanceResult] = {}
    todo = []
    for inst in instances:
        iid = inst["instance_id"]
        pred = predictions.get(iid)
        if pred is None:
            results[iid] = InstanceResult(iid, ERROR, "no_prediction", repo=inst.get("repo", ""))
        elif not (pred.get("model_patch") or "").strip():
            results[iid] = InstanceResult(iid, EMPTY_PATCH, "empty_patch", repo=inst.get("repo", ""))
        else:
            todo.append(pred)
    harness_rc, harness_log = 0, out / f"{run_id}.log"
    if todo:
        preds_path = out / f"{run_id}.predictions.jsonl"
        preds_path.write_text("".join(json.dumps(p) + "\n" for p in todo))
        cmd = harness_command(preds_path, [p["instance_id"] for p in todo], dataset_name=dataset_name, split=split,
                              run_id=run_id, report_dir=out, max_workers=max_workers, timeout=timeout,
                              namespace=namespace, cache_level=cache_level)
        try:
            with open(harness_log, "w") as log:
                proc = subprocess.run(cmd, cwd=out, stdout=log, stderr=subprocess.STDOUT)
            harness_rc = proc.returncode
        except OSError as e:                       # the harness could not even start
            harness_rc = -1
            harness_log.write_text(f"{type(e).__name__}: {e}\n")
    log_root = out / RUN_EVALUATION_LOG_DIR / run_id
    for pred in todo:
        iid = pred["instance_id"]
        d = log_root / str(pred.get("model_name_or_path", "None")).replace("/", "__") / iid
        repo = next((i.get("repo", "") for i in instances if i["instance_id"] == iid), "")
        rep = d / LOG_REPORT
        entry = json.loads(rep.read_text()).get(iid, {}) if rep.exists() else None
        text = "\n".join(p.read_text(errors="replace") for p in (d / LOG_INSTANCE, d / LOG_TEST_OUTPUT) if p.exists())
        status, reason = status_of(entry, text)
        if status == ERROR and reason is None:
            reason = _error_reason(text, harness_rc, harness_log)
        results[iid] = InstanceResult(iid, status, reason, tests=(entry or {}).get("tests_status", {}), repo=repo)
    return [results[i["instance_id"]] for i in instances]


def _error_reason(instance_log: str, harness_rc: int, harness_log: Path) -> str:
    """Why the harness produced no report for an instance: the last error line of its run_instance log (image
    not found, build failed, container start...), else the tail of the harness's own log (a crash)."""
    for line in reversed(instance_log.splitlines()):
        low = line.lower()
        if "error" in low or "not found" in low or "failed" in low or "exception" in low:
            return f"harness: {line.strip()[:300]}"
    tail = ""
    if harness_log.exists():
        lines = [x.strip() for x in harness_log.read_text(errors="replace").splitlines() if x.strip()]
        tail = next((x for x in reversed(lines) if "error" in x.lower()), lines[-1] if lines else "")
    where = "no report" if harness_rc == 0 else f"harness exit {harness_rc}"
    return f"{where}: {tail[:300]}" if tail else f"{where} (see {harness_log})"
