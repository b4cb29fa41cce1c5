"""Gold check on real SWE-bench instances with locally built images (no registry): every gold patch graded by the
one grading path (``swe_eval.grading.grade_in_sandbox``: swebench's own eval script in the instance image, swebench's
``get_eval_report`` deciding) in a network-less eval sandbox (``environments.images.eval_sandbox_factory``).

    swe-srl images build --dataset D --instances ../shared/data/repos/instances.json --repos ../shared/data/repos \
        --workers 2 --logs image_build_logs
    python benchmarks/swebench_gold_local.py --repos ../shared/data/repos --workers 2 [--wait]

Results: ``benchmarks/results/swebench_gold_local.json`` (``total``, ``resolved``, per-instance status, reason,
Python used vs asked, deviations, and for every instance not resolved its ``cause``); per-instance logs
(test_output.txt, report.json, eval.sh) under ``--logs``. Resumable: graded instances are kept in
``--logs/gold.jsonl``. ``--wait`` grades images as they appear (run beside ``images build``).

``--throughput W1,W2 --n N``: grade the first N instances at each worker count and write
``benchmarks/results/grading_throughput_real.json`` (instances/hour, per core, vs the official harness's
published SWE-bench Verified figure: 500 instances in 62 min on 32 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
OFFICIAL = {"instances": 500, "minutes": 62, "cores": 32,
            "source": "SWE-bench harness docs: SWE-bench Verified evaluated in 62 min on 32 cores (500 instances)"}

# Why an instance that did not resolve did not, found by reading its test_output.txt (see docs/swebench-local.md).
# Filled from the run's own logs; an instance that resolves is never looked up here.
CAUSES: dict[str, str] = {}


def load_rows(dataset: Path, ids: list[str]) -> list[dict[str, Any]]:
    from swe_srl.swe_eval.dataset import load_instances

    return load_instances(dataset=dataset, instance_ids=ids)


def build_statuses(builds: Path | None) -> dict[str, str]:
    """instance id -> its latest status in ``images build``'s builds.jsonl (built | cached | failed)."""
    if builds is None or not builds.exists():
        return {}
    latest: dict[str, str] = {}
    for line in builds.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        latest[r.get("instance_id")] = r.get("status")
    return latest


def image_ready(client: Any, row: dict[str, Any]) -> bool:
    from environments.sandbox import instance_image_name

    try:
        img = client.images.get(instance_image_name(row["instance_id"], instance=row))
    except Exception:
        return False
    return (img.labels or {}).get("swe-srl.layer") == "instance"


def image_info(client: Any, row: dict[str, Any]) -> dict[str, Any]:
    from environments.sandbox import instance_image_name

    try:
        lab = client.images.get(instance_image_name(row["instance_id"], instance=row)).labels or {}
    except Exception:
        return {}
    return {"python": lab.get("swe-srl.python"), "spec_python": lab.get("swe-srl.spec_python"),
            "deviations": json.loads(lab.get("swe-srl.deviations") or "[]")}


def grade(rows: list[dict[str, Any]], *, workers: int, log_dir: Path, timeout: int, client: Any,
          done: dict[str, dict[str, Any]] | None = None, wait: bool = False, record=None,
          builds: Path | None = None) -> list[dict[str, Any]]:
    from environments.images import eval_sandbox_factory
    from swe_srl.swe_eval.grading import grade_in_sandbox

    factory = eval_sandbox_factory(client)
    done = dict(done or {})
    out: list[dict[str, Any]] = []

    def one(row: dict[str, Any]) -> dict[str, Any]:
        r = grade_in_sandbox(row, row["patch"], factory, log_dir=log_dir, timeout=timeout, model_name="gold")
        t = r.tests or {}
        rec = {"instance_id": r.instance_id, "repo": row["repo"], "version": str(row["version"]),
               "status": r.status, "reason": r.reason, "seconds": r.seconds,
               "fail_to_pass_failed": list((t.get("FAIL_TO_PASS") or {}).get("failure", [])),
               "pass_to_pass_failed": list((t.get("PASS_TO_PASS") or {}).get("failure", [])),
               **image_info(client, row)}
        if record is not None:
            record(rec)
        return rec

    pending = [r for r in rows if r["instance_id"] not in done]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futs: dict[Any, str] = {}
        while pending or futs:
            if wait and builds is not None:      # only images of this build run (built or kept as up to date)
                st = build_statuses(builds)
                pending = [r for r in pending if st.get(r["instance_id"]) != "failed"]
                ready = [r for r in pending if st.get(r["instance_id"]) in ("built", "cached")]
            else:
                ready = [r for r in pending if not wait or image_ready(client, r)]
            for r in ready[: max(0, workers - len(futs))]:
                pending.remove(r)
                futs[pool.submit(one, r)] = r["instance_id"]
            if not futs:
                if not wait:
                    break
                time.sleep(15)
                continue
            f = next(as_completed(list(futs)))
            futs.pop(f)
            rec = f.result()
            out.append(rec)
            print(f"{rec['instance_id']}: {rec['status']} {rec['reason'] or ''} ({rec['seconds']:.0f}s)", flush=True)
    return out


def gold_main(a: argparse.Namespace) -> None:
    import docker

    from benchmarks.common import write_result
    from environments.images import use_repo_requirements
    from swe_srl.core.io import AppendLog

    use_repo_requirements(a.repos)
    ids = ids_of(a)
    rows = load_rows(Path(a.dataset), ids)
    client = docker.from_env(timeout=600)
    log_dir = Path(a.logs)
    log = AppendLog(log_dir / "gold.jsonl")
    done = {r["instance_id"]: r for r in log.records if r.get("status") != "error"}
    t0 = time.time()
    try:
        if not a.report_only:
            grade(rows, workers=a.workers, log_dir=log_dir, timeout=a.timeout, client=client, done=done,
                  wait=a.wait, record=log.append, builds=Path(a.builds) if a.builds else None)
    finally:
        log.close()
    wall = time.time() - t0
    latest = {r["instance_id"]: r for r in AppendLog(log_dir / "gold.jsonl").records}
    per = []
    for row in rows:
        rec = latest.get(row["instance_id"])
        if rec is None:
            rec = {"instance_id": row["instance_id"], "repo": row["repo"], "version": str(row["version"]),
                   "status": "not_graded", "reason": "not graded in this run (image not built in time)"}
        if rec["status"] != "resolved":
            rec["cause"] = CAUSES.get(rec["instance_id"], "not analysed")
        per.append(rec)
    resolved = sum(r["status"] == "resolved" for r in per)
    graded = [r for r in per if r["status"] != "not_graded"]
    by_repo: dict[str, dict[str, int]] = {}
    for r in per:
        d = by_repo.setdefault(r["repo"], {"total": 0, "graded": 0, "resolved": 0})
        d["total"] += 1
        d["graded"] += r["status"] != "not_graded"
        d["resolved"] += r["status"] == "resolved"
    test_s = [r["seconds"] for r in per if r.get("seconds")]
    write_result("swebench_gold_local", {
        "what": "gold patches of real SWE-bench Verified instances (../shared/data/repos), graded by "
                "grade_in_sandbox (swebench's eval script + get_eval_report) in locally built images "
                "(swe-srl images build), eval containers without network",
        "command": "swe-srl images build ... && python benchmarks/swebench_gold_local.py --repos ../shared/data/repos",
        "total": len(per), "resolved": resolved, "resolve_rate": round(100.0 * resolved / max(len(per), 1), 2),
        "graded": len(graded), "resolve_rate_of_graded": round(100.0 * resolved / max(len(graded), 1), 2),
        "by_repo": by_repo, "workers": a.workers, "last_run_wall_s": round(wall, 1),
        "grade_seconds": {"sum": round(sum(test_s), 1), "min": min(test_s, default=0), "max": max(test_s, default=0)},
        "not_resolved": [{k: r.get(k) for k in ("instance_id", "status", "reason", "cause")}
                         for r in per if r["status"] != "resolved"],
        "instances": per,
    })
    print(f"{resolved}/{len(per)} resolved -> benchmarks/results/swebench_gold_local.json")


def throughput_main(a: argparse.Namespace) -> None:
    import docker

    from benchmarks.common import write_result
    from environments.images import use_repo_requirements

    use_repo_requirements(a.repos)
    rows = load_rows(Path(a.dataset), ids_of(a))
    client = docker.from_env(timeout=600)
    rows = [r for r in rows if image_ready(client, r)][: a.n]
    off_rate = OFFICIAL["instances"] / (OFFICIAL["minutes"] / 60)
    runs = {}
    for w in [int(x) for x in a.throughput.split(",")]:
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            res = grade(rows, workers=w, log_dir=Path(tmp), timeout=a.timeout, client=client)
            wall = time.time() - t
        rate = len(res) / (wall / 3600)
        runs[f"workers_{w}"] = {"workers": w, "instances": len(res), "wall_s": round(wall, 1),
                                "instances_per_hour": round(rate, 1),
                                "instances_per_hour_per_core": round(rate / min(w, os.cpu_count() or w), 2),
                                "resolved": sum(r["status"] == "resolved" for r in res),
                                "host_load_1m": [round(load0, 1), round(os.getloadavg()[0], 1)],
                                "statuses": sorted({r["status"] for r in res})}
    write_result("grading_throughput_real", {
        "what": "grading throughput on real SWE-bench Verified instances (gold patches, locally built images, "
                "grade_in_sandbox in network-less containers, 1 CPU each); images built beforehand",
        "instances": [r["instance_id"] for r in rows], "runs": runs,
        "official": {**OFFICIAL, "instances_per_hour": round(off_rate, 1),
                     "instances_per_hour_per_core": round(off_rate / OFFICIAL["cores"], 2)},
        "formula": "instances / wall hours; per core = that / cores used (min(workers, cores))",
    })
    print(json.dumps(runs, indent=1))


def ids_of(a: argparse.Namespace) -> list[str]:
    if a.instances and not Path(a.instances).is_file():
        return [x.strip() for x in a.instances.split(",") if x.strip()]
    src = Path(a.instances) if a.instances else Path(a.repos) / "instances.json"
    data = json.loads(src.read_text())
    return [i for v in data.values() for i in v] if isinstance(data, dict) else list(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", default=str(DATA / "repos"))
    ap.add_argument("--dataset", default=str(DATA / "swe_bench_verified" / "swe_bench_verified.jsonl"))
    ap.add_argument("--instances", default=None, help="ids (comma-separated) or a file; default REPOS/instances.json")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--logs", default="gold_logs")
    ap.add_argument("--wait", action="store_true", help="grade images as they are built (beside images build)")
    ap.add_argument("--builds", default=None, help="--wait: images build's builds.jsonl (failed builds: no wait)")
    ap.add_argument("--report-only", action="store_true", help="write the report from --logs/gold.jsonl, grade nothing")
    ap.add_argument("--throughput", default=None, help="worker counts, e.g. 1,2: write grading_throughput_real.json")
    ap.add_argument("--n", type=int, default=8, help="--throughput: instances per run")
    a = ap.parse_args()
    (throughput_main if a.throughput else gold_main)(a)


if __name__ == "__main__":
    main()
