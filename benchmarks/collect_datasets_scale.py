"""Collect at dataset scale: a 5,000-row SWE-smith-trajectories parquet file (the real rows of
``../shared/data/swe_trajectories/hf_dataset_rows/SWE-bench__SWE-smith-trajectories`` repeated with new instance
ids, ``messages`` stored as JSON strings as on the hub), generated into /tmp and never committed.

    python benchmarks/collect_datasets_scale.py [--rows 5000] [--tmp /tmp/swe_srl_scale]

Peak RSS is the child process's own high-water mark (``VmHWM``; ``ru_maxrss`` would include the parent's memory,
which it inherits across fork + exec). The file is generated in a child process too.

Measures, on one core:
  parse_build   steps/s of parse (pyarrow batches -> rows -> Trajectory) + step building, no disk writes, with full
                history and with --history 2 --obs-max-chars 2000; peak RSS of that process (rows stream: memory
                stays flat however many rows)
  collect_cli   the whole `swe-srl collect` command (ledger + steps.jsonl with fsync per row) with --history 2
                --obs-max-chars 2000, run in two parts to show it resumes by row (--limit, then a rerun into the same
                --out): wall time, steps/s, peak RSS of each run, rows/steps written
Machine load (1-minute load average before/after) is recorded: the machine is shared.
Goal: >= 2,000 steps/s parse+build on one core. Result: benchmarks/results/collect_datasets_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SWE_SRL_SHARED_DATA", REPO.parent / "shared" / "data"))
SMITH = "swe_trajectories/hf_dataset_rows/SWE-bench__SWE-smith-trajectories"
GOAL = 2000.0


def make_file(data: Path, n: int, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = []
    for f in sorted((data / SMITH).glob("*.json")):
        src += json.loads(f.read_text())
    rows = []
    for i in range(n):
        r = src[i % len(src)]
        rows.append({"instance_id": f"{r['instance_id']}.rep{i:05d}", "messages": json.dumps(r["messages"]),
                     "resolved": True, "model": r.get("model", "claude-3-7-sonnet-20250219"),
                     "traj_id": f"{r['instance_id']}.rep{i:05d}"})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=100)
    return {"rows": n, "source_rows": len(src), "bytes": out.stat().st_size, "path": str(out)}


_PARSE_BUILD = r"""
import json, os, resource, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from environments.collect import build_steps
from environments.trajectories import iter_file
path, kw = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter(); n = rows = 0; parse = 0.0
it = iter_file(path)
while True:
    a = time.perf_counter()
    item = next(it, None)
    parse += time.perf_counter() - a
    if item is None:
        break
    unit, t = item
    recs, _ = build_steps(t, unit=unit, **kw)
    n += len(recs); rows += 1
total = time.perf_counter() - t0
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"steps": n, "rows": rows, "seconds": round(total, 2), "parse_s": round(parse, 2),
                  "build_s": round(total - parse, 2), "steps_per_s": round(n / total, 1),
                  "peak_rss_mb": round(hwm / 1024, 1)}))
"""


def parse_build(path: Path, kw: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", _PARSE_BUILD, str(path), json.dumps(kw)], capture_output=True,
                       text=True, cwd=REPO, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def collect_cli(path: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-c", "import atexit, os, resource, sys; "
           "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
           "atexit.register(lambda: sys.stderr.write('RSS_KB=%s\\n' % next(x.split()[1] for x in "
           "open('/proc/self/status') if x.startswith('VmHWM:')))); from swe_srl.cli import app; app()",
           "collect", "--trajectories", str(path), "--out", str(out), "--history", "2", "--obs-max-chars", "2000", "--no-progress", *extra]
    t0 = time.perf_counter()
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    # sample the child's RSS: the collect phase vs the train/val split pass that follows it
    # (environments.splits.apply_swe_splits rewrites the store once collection is done)
    peak = {"collect": 0, "split": 0}
    collect_end = None
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            kb = next(int(x.split()[1]) for x in open(f"/proc/{proc.pid}/status") if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            kb = 0
        try:      # the manifest is written complete right before the split pass starts
            done = (out / "manifest.json").stat().st_mtime >= start and "\"running\"" not in (
                out / "manifest.json").read_text()
        except OSError:
            done = False
        phase = "split" if done or collect_end is not None else "collect"
        if phase == "split" and collect_end is None:
            collect_end = time.perf_counter()
        peak[phase] = max(peak[phase], kb)
        time.sleep(0.1)
    reader.join()
    err = b"".join(err_chunks)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(err.decode()[-2000:])
    rss = [int(x.split("=", 1)[1]) for x in err.decode().splitlines() if x.startswith("RSS_KB=")]
    m = json.loads((out / "manifest.json").read_text())
    run = m["this_run"]
    return {"wall_s": round(wall, 2), "units_this_run": run.get("units_ok", 0) + run.get("units_skipped", 0),
            "steps_this_run": run.get("steps_written", 0),
            "steps_per_s": round(run.get("steps_written", 0) / wall, 1), "rows_total": m["trajectories"]["read"],
            "steps_total": m["steps"]["total"], "status": run["status"],
            "peak_rss_mb": round(rss[-1] / 1024, 1) if rss else None,
            "peak_rss_mb_collect_phase": round(peak["collect"] / 1024, 1),
            "peak_rss_mb_split_phase": round(peak["split"] / 1024, 1),
            "collect_phase_s": round((collect_end or time.perf_counter()) - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/swe_srl_scale"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    f = args.tmp / "SWE-bench__SWE-smith-trajectories" / "xml-00000-of-00001.parquet"
    gen = subprocess.run([sys.executable, "-c", "import json, sys; from pathlib import Path; "
                          "from benchmarks.collect_datasets_scale import make_file; "
                          "print(json.dumps(make_file(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))))",
                          str(args.data), str(args.rows), str(f)], capture_output=True, text=True, cwd=REPO, check=True)
    info = json.loads(gen.stdout.strip().splitlines()[-1])
    results: dict = {"input": {k: v for k, v in info.items() if k != "path"}, "cores": 1, "goal_steps_per_s": GOAL}
    results["parse_build"] = {"history_all": parse_build(f, {}),
                              "history_2_obs_2000": parse_build(f, {"history_k": 2, "obs_max_chars": 2000})}
    out = args.tmp / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    first = collect_cli(f, out, ["--limit", str(args.rows // 2)])
    second = collect_cli(f, out, [])
    results["collect_cli"] = {"options": "--history 2 --obs-max-chars 2000 (one core)",
                              "part1_limit": first, "part2_resume": second,
                              "steps_jsonl_mb": round((out / "steps.jsonl").stat().st_size / 2**20, 1)}
    results["meets_goal"] = all(r["steps_per_s"] >= GOAL for r in results["parse_build"].values())
    results["machine_load_1min"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2),
                                    "cpu_count": os.cpu_count()}
    path = write_result("collect_datasets_scale", results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
