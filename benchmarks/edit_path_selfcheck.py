"""Edit-path self-check on real SWE-bench Verified instances (``swe_srl.swe_eval.selfcheck``): every gold patch is
written as the oracle prompt's SEARCH/REPLACE answer and turned into a patch by the code that handles model output
(parse, apply, syntax check, diff writer); the produced patch must ``git apply`` and leave every oracle file
byte-identical to the gold result. No Docker needed. With ``--grade``, instances whose image exists locally
(``sweb.eval.x86_64.<id>:latest``, ``swe-srl images build``) are also graded through ``grade_in_sandbox``, gold
patch and edit-path patch, which must get the same status.

    python benchmarks/edit_path_selfcheck.py [--repos-dir ../shared/data/repos] [--grade] [--namespace none]

Writes benchmarks/results/edit_path_selfcheck.json (all instances that have a repository in --repos-dir).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402
from swe_srl.swe_eval.dataset import load_instances, oracle_files  # noqa: E402
from swe_srl.swe_eval.grading import docker_sandbox_factory, grade_in_sandbox  # noqa: E402
from swe_srl.swe_eval.images import ImageProvider, ImageUnavailable  # noqa: E402
from swe_srl.swe_eval.selfcheck import check_instance, edit_path_patch, summarize_checks  # noqa: E402
from swe_srl.swe_eval.sources import RepoDirSource  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def instance_ids(repos_dir: Path) -> list[str]:
    index = repos_dir / "instances.json"
    if index.exists():
        return [i for ids in json.loads(index.read_text()).values() for i in ids]
    raise SystemExit(f"{index} missing: pass --instances")


def grade_both(rows: list[dict], source: RepoDirSource, namespace: str | None, timeout: int,
               log_dir: Path) -> dict:
    """Gold patch vs edit-path patch through grade_in_sandbox, on the instances whose image is present locally."""
    images = ImageProvider(namespace, pull=False)
    factory = docker_sandbox_factory(namespace, images)
    out = []
    for inst in rows:
        try:
            image = images.ensure(inst)
        except ImageUnavailable:
            continue
        files = source.read(inst, oracle_files(inst))
        edit = edit_path_patch(inst, files)["model_patch"]
        g = grade_in_sandbox(inst, inst["patch"], factory, timeout=timeout, log_dir=log_dir / "gold")
        e = grade_in_sandbox(inst, edit, factory, timeout=timeout, log_dir=log_dir / "edit")
        out.append({"instance_id": inst["instance_id"], "image": image, "gold": [g.status, g.reason],
                    "edit_path": [e.status, e.reason], "same": (g.status, g.reason) == (e.status, e.reason)})
        print(f"grade {inst['instance_id']}: gold={g.status} edit={e.status}", file=sys.stderr)
    return {"graded": len(out), "same_status": sum(r["same"] for r in out),
            "gold_resolved": sum(r["gold"][0] == "resolved" for r in out),
            "edit_path_resolved": sum(r["edit_path"][0] == "resolved" for r in out), "instances": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos-dir", default=str(SHARED / "repos"))
    ap.add_argument("--dataset", default=str(SHARED / "swe_bench_verified" / "swe_bench_verified.jsonl"))
    ap.add_argument("--instances", default=None, help="comma-separated ids (default: all in repos-dir)")
    ap.add_argument("--grade", action="store_true", help="also grade where the instance image exists")
    ap.add_argument("--namespace", default="none")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--log-dir", default="/tmp/swe-srl-edit-path-selfcheck")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    repos = Path(a.repos_dir)
    ids = a.instances.split(",") if a.instances else instance_ids(repos)
    rows = load_instances(dataset=a.dataset, instance_ids=ids)
    source = RepoDirSource(repos)
    t0 = time.time()
    records = [check_instance(r, source) for r in rows]
    summary = summarize_checks(records)
    summary["seconds"] = round(time.time() - t0, 2)
    result = {"description": "gold patches -> oracle SEARCH/REPLACE answers -> the model-output path "
                             "(predict.repair_from_completion) -> git apply; oracle files compared byte for byte with "
                             "the gold-applied files", "repos_dir": "../shared/data/repos (bare, base commits)",
              **summary, "per_instance": [{k: r.get(k) for k in ("instance_id", "ok", "cause", "oracle_files",
                                                                   "hunks", "blocks", "identical_files",
                                                                   "outside_oracle", "notes")} for r in records]}
    if a.grade:
        ns = None if a.namespace.lower() in ("", "none") else a.namespace
        result["grading"] = grade_both(rows, source, ns, a.timeout, Path(a.log_dir))
    print(json.dumps({k: v for k, v in result.items() if k != "per_instance"}, indent=2))
    if not a.no_write:
        print(f"wrote {write_result('edit_path_selfcheck', result)}", file=sys.stderr)


if __name__ == "__main__":
    main()
