"""Image build time and disk per layer (base per Python / env per repo+version / instance), first build vs cached.

    swe-srl images build --dataset D --instances ../shared/data/repos/instances.json --repos ../shared/data/repos \
        --workers 2 --logs image_build_logs                      # the first build (records in builds.jsonl)
    python benchmarks/image_build.py --logs image_build_logs [--base-log base.jsonl] [--rerun]

Reads the first build's records (``builds.jsonl``: every instance's base/env/instance seconds and sizes, built or
cached), and with ``--rerun`` times a second ``images build`` of the same instances (everything cached, the
resumable path). Disk: the bytes each layer adds over its parent (``Size`` minus the parent's), so the real disk of
the whole set is base + unique envs + instances, against the sum of full image sizes a flat (unlayered) build would
take. Writes ``benchmarks/results/image_build.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "sum": round(sum(xs), 1), "mean": round(statistics.mean(xs), 1),
            "median": round(statistics.median(xs), 1), "min": round(min(xs), 1), "max": round(max(xs), 1)}


def summarize(records: list[dict[str, Any]], base_builds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r.get("status") in ("built", "cached")]
    envs: dict[str, dict[str, Any]] = {}
    for r in ok:
        e = r.get("env") or {}
        if e.get("image") and (e["image"] not in envs or not e.get("cached")):
            envs[e["image"]] = e
    bases: dict[str, dict[str, Any]] = {b["image"]: b for b in base_builds}
    for r in ok:
        b = r.get("base") or {}
        if b.get("image"):
            bases.setdefault(b["image"], b)
    built_inst = [r for r in ok if r["status"] == "built"]
    env_built = [e for e in envs.values() if not e.get("cached")]
    mb = 1e6
    disk_layered = (sum(b.get("size_bytes") or 0 for b in bases.values())
                    + sum(e.get("layer_bytes") or 0 for e in envs.values())
                    + sum(r.get("layer_bytes") or 0 for r in ok))
    return {
        "instances": len(records), "built": len(built_inst), "cached": len(ok) - len(built_inst),
        "failed": [{"instance_id": r["instance_id"], "error": r.get("error")} for r in records
                   if r.get("status") == "failed"],
        "base": {"images": sorted(bases), "first_build_s": {b["image"]: b.get("seconds") for b in base_builds
                                                            if not b.get("cached")},
                 "size_mb": {k: round((b.get("size_bytes") or 0) / mb) for k, b in bases.items()}},
        "env": {"images": len(envs), "first_build_s": stats([e["seconds"] for e in env_built]),
                "layer_mb": stats([(e.get("layer_bytes") or 0) / mb for e in envs.values()])},
        "instance": {"first_build_s": stats([r["instance_seconds"] for r in built_inst
                                             if r.get("instance_seconds") is not None]),
                     "layer_mb": stats([(r.get("layer_bytes") or 0) / mb for r in ok])},
        "disk_mb": {"layered": round(disk_layered / mb),
                    "flat_sum_of_image_sizes": round(sum(r.get("size_bytes") or 0 for r in ok) / mb)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logs", default="image_build_logs", help="the first build's --logs (builds.jsonl)")
    ap.add_argument("--base-log", default=None, help="JSON lines of build_base records (first base builds)")
    ap.add_argument("--rerun", action="store_true", help="time a second, cached images build of the same ids")
    ap.add_argument("--repos", default=str(DATA / "repos"))
    ap.add_argument("--dataset", default=str(DATA / "swe_bench_verified" / "swe_bench_verified.jsonl"))
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    from benchmarks.common import write_result

    logs = Path(a.logs)
    latest: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, dict[str, Any]] = {}
    for line in (logs / "builds.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            latest[r["instance_id"]] = r
            if r.get("status") == "built":
                first_seen.setdefault(r["instance_id"], r)
    first = [first_seen.get(i, r) for i, r in latest.items()]
    base_builds = [json.loads(x) for x in Path(a.base_log).read_text().splitlines() if x.strip()] \
        if a.base_log else []
    out: dict[str, Any] = {"what": "swe-srl images build: base (debootstrap) / env (per repo+version) / instance "
                                   "layers on real SWE-bench Verified instances",
                           "first_build": summarize(first, base_builds)}
    if a.rerun:
        from environments.images import build_images
        from swe_srl.swe_eval.dataset import load_instances

        every = load_instances(dataset=a.dataset)
        rows = load_instances(dataset=a.dataset, instance_ids=list(latest))
        with_image = [r for r in rows if latest[r["instance_id"]].get("status") != "failed"]
        t = time.time()
        recs = build_images(with_image, repos_dir=a.repos, workers=a.workers, logs_dir=logs / "rerun",
                            env_rows=every)
        wall = time.time() - t
        out["cached_rebuild"] = {"instances": len(recs), "wall_s": round(wall, 1),
                                 "statuses": sorted({r["status"] for r in recs}),
                                 "per_instance_s": stats([r["seconds"] for r in recs])}
    print(json.dumps(out, indent=1)[:3000])
    write_result("image_build", out)


if __name__ == "__main__":
    main()
