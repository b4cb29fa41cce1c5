"""Replay throughput in Docker on a synthetic repo: replayed actions/s at 1 and 2 workers.

    python benchmarks/replay_throughput.py [--trajectories 6] [--actions 30]

Each trajectory is replayed in its own fresh container (start + copy + checkout included in `wall` numbers;
`exec_actions_per_s` counts only the time spent executing actions). Writes benchmarks/results/replay_throughput.json,
keeping its `before` section (numbers of the exec-per-command sandbox, measured before the in-container helper) and
recording the machine load (1-min load average before/after each run) next to the numbers.
`--exec-path` measures the old exec-per-command path (DockerSandbox(fast=False)) for comparison.
`--before DIR --rounds N` compares against older code checked out in DIR (`git worktree add DIR COMMIT`): N rounds,
each running DIR's own benchmark script, then this one, in subprocesses (before/after interleaved, since the machine
is shared and noisy); every round and the medians are written under `before_after`.
This file is the replay benchmark; benchmarks/collect_throughput.py measures parse + build only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402
from environments.sandbox import BASE_IMAGE, DockerSandbox  # noqa: E402
from environments.tools import ToolRuntime  # noqa: E402
from swe_srl.core.toolcall import ToolCall  # noqa: E402


def make_repo(root: Path) -> str:
    root.mkdir(parents=True)
    (root / "long.py").write_text("".join(f"x{i} = {i}\n" for i in range(1, 401)))
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(git + ["init", "-q"], cwd=root, check=True)
    subprocess.run(git + ["add", "-A"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-qm", "base"], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def actions(n: int) -> list[ToolCall]:
    cycle = [
        ToolCall.make("bash", {"command": "grep -n 'x1' long.py | head -3"}),
        ToolCall.make("str_replace_editor", {"command": "view", "path": "/testbed/calc.py"}),
        ToolCall.make("open", {"path": "long.py", "line_number": "200"}),
        ToolCall.make("scroll_down", {}),
        ToolCall.make("search_file", {"search_term": "x3"}),
        ToolCall.make("edit", {"start_line": "5", "end_line": "5", "replacement_text": "x5 = 'five'"}),
        ToolCall.make("str_replace_editor", {"command": "str_replace", "path": "/testbed/calc.py",
                                             "old_str": "a + b", "new_str": "b + a"}),
        ToolCall.make("str_replace_editor", {"command": "undo_edit", "path": "/testbed/calc.py"}),
        ToolCall.make("find_file", {"file_name": "calc.py"}),
        ToolCall.make("bash", {"command": "python3 -c 'print(1)'"}),
    ]
    return [cycle[i % len(cycle)] for i in range(n - 1)] + [ToolCall.make("submit", {})]


FAST = True


def replay_one(repo: Path, sha: str, calls: list[ToolCall]) -> float:
    with DockerSandbox(BASE_IMAGE, repo_path=repo, base_commit=sha, fast=FAST) as sb:
        rt = ToolRuntime(sb)
        t = time.perf_counter()
        for c in calls:
            rt.execute(c)
        return time.perf_counter() - t


def measure(workers: int, n_traj: int, n_actions: int, repo: Path, sha: str) -> dict:
    calls = actions(n_actions)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        exec_times = list(ex.map(lambda _: replay_one(repo, sha, calls), range(n_traj)))
    wall = time.perf_counter() - t
    total = n_traj * n_actions
    cores = min(workers, os.cpu_count() or 1)
    return {"workers": workers, "trajectories": n_traj, "actions": total, "wall_s": round(wall, 3),
            "actions_per_s": round(total / wall, 2),
            "actions_per_s_per_worker": round(total / wall / workers, 2),
            "actions_per_s_per_core": round(total / wall / cores, 2),
            "load_avg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "exec_actions_per_s": round(total / (sum(exec_times) / workers), 2),
            "container_overhead_s_per_traj": round((wall * workers - sum(exec_times)) / n_traj, 3)}


def measure_all(args) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d) / "repo"
        sha = make_repo(repo)
        replay_one(repo, sha, actions(3))                     # warm-up
        return [measure(w, args.trajectories, args.actions, repo, sha) for w in (1, 2)]


def compare(args) -> dict:
    """Interleaved rounds: the old code's benchmark (its own script, in DIR), then this one; both in subprocesses."""
    before_dir = Path(args.before).resolve()
    sizes = ["--trajectories", str(args.trajectories), "--actions", str(args.actions)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=before_dir, capture_output=True,
                            text=True).stdout.strip()
    rounds = {"before": [], "after": []}
    for i in range(args.rounds):
        subprocess.run([sys.executable, "benchmarks/replay_throughput.py", *sizes], cwd=before_dir, check=True,
                       env={**os.environ, "PYTHONPATH": str(before_dir)}, stdout=subprocess.DEVNULL)
        old = json.loads((before_dir / "benchmarks/results/replay_throughput.json").read_text())
        rounds["before"].append(old["runs"])
        out = subprocess.run([sys.executable, __file__, "--print-json", *sizes], check=True, capture_output=True,
                             text=True).stdout
        rounds["after"].append(json.loads(out.strip().splitlines()[-1]))
        for side in ("before", "after"):
            print(i, side, [(r["workers"], r["actions_per_s"], r["exec_actions_per_s"]) for r in rounds[side][-1]])
    median = {side: {f"workers_{w}": {k: statistics.median(r[k] for rs in runs for r in rs if r["workers"] == w)
                                      for k in ("actions_per_s", "exec_actions_per_s", "container_overhead_s_per_traj")}
                     for w in (1, 2)} for side, runs in rounds.items()}
    return {"description": f"{args.rounds} interleaved rounds on the same machine, same load: before = commit {commit} "
                           f"(its own benchmark script), after = this code; each round = 1 and 2 workers",
            "before_commit": commit, "median": median, "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trajectories", type=int, default=6)
    ap.add_argument("--actions", type=int, default=30)
    ap.add_argument("--exec-path", action="store_true", help="measure the old exec-per-command path")
    ap.add_argument("--before", help="a checkout of older code to compare against (interleaved rounds)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--print-json", action="store_true", help="print the runs as one JSON line, write nothing")
    args = ap.parse_args()
    global FAST
    FAST = not args.exec_path
    if args.print_json:
        print(json.dumps(measure_all(args)))
        return
    from benchmarks.common import RESULTS

    old = {}
    try:
        old = json.loads((RESULTS / "replay_throughput.json").read_text())
    except (OSError, ValueError):
        pass
    extra = {k: old[k] for k in ("before", "exec_path", "before_after") if k in old}
    if args.before:
        extra["before_after"] = compare(args)
        runs = extra["before_after"]["rounds"]["after"][-1]
    else:
        runs = measure_all(args)
        for r in runs:
            print(r)
    if args.exec_path:
        extra["exec_path"] = {"description": "same workload, DockerSandbox(fast=False): one docker exec per command",
                              "runs": runs}
        runs = old.get("runs", [])
    path = write_result("replay_throughput", {
        "description": "replayed actions/s in Docker (fresh container per trajectory, synthetic repo, in-container "
                       "helper channel)",
        "image": BASE_IMAGE, "cpus_visible": os.cpu_count(), "goal_actions_per_s_per_core": 10,
        "machine_load": "shared 2-core machine; other engineers' jobs ran at the same time: see "
                        "load_avg_1min_before_after per run (a load above 2 means CPU contention)",
        "runs": runs, **extra})
    print(path)


if __name__ == "__main__":
    main()
