"""Eval throughput of the one SWE grader (``swe_eval.grade_in_sandbox`` in a DockerSandbox of a local image, no
registry): instances/hour on the synthetic instance set (tests/fixtures/swe_instance, gold patches) at 1 and 2
workers. Needs Docker and swe-srl/sandbox-base:latest.

    python benchmarks/eval_throughput.py [--n 6] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "swe_instance"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--workers", default="1,2")
    a = ap.parse_args()

    import docker
    import synthetic

    from benchmarks.common import write_result
    from swe_srl.swe_eval import docker_sandbox_factory, grade_in_sandbox

    client = docker.from_env()
    t0 = time.time()
    sha = synthetic.build_image(client)
    build_s = time.time() - t0
    base = synthetic.instance(sha)
    rows = [dict(base, instance_id=f"swe-srl__calc-{i}") for i in range(a.n)]
    from concurrent.futures import ThreadPoolExecutor

    sandboxes = docker_sandbox_factory()
    runs = {}
    for w in [int(x) for x in a.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            with ThreadPoolExecutor(max_workers=w) as ex:
                res = list(ex.map(lambda r: grade_in_sandbox(r, r["patch"], sandboxes, log_dir=tmp), rows))
            wall = time.time() - t
        statuses = sorted({r.status for r in res})
        runs[f"workers_{w}"] = {"workers": w, "instances": len(rows), "wall_s": round(wall, 2),
                                "instances_per_hour": round(3600 * len(rows) / wall, 1),
                                "mean_instance_s": round(sum(r.seconds for r in res) / len(res), 2),
                                "statuses": statuses}
        print(runs[f"workers_{w}"])
    path = write_result("eval_throughput", {
        "what": "grade_in_sandbox (DockerSandbox of a local image: swebench's apply commands, the eval script, "
                "swebench's get_eval_report) on the synthetic calc instance, gold patches",
        "image_build_s": round(build_s, 2), "runs": runs,
    })
    print(path)


if __name__ == "__main__":
    main()
