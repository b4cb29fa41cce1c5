"""Real-repo replay acceptance: every trajectory in ../shared/data/swe_trajectories whose instance has a repo in
../shared/data/repos (django: mini-swe-agent, SWE-agent 0.x/CodeR, OpenHands; sympy: SWE-agent 0.x), replayed in
Docker on the local SWE-bench instance images (``swe-srl images build``), scored by environments.fidelity.

    nice -n 10 python benchmarks/replay_real_repos.py [--workers 2] [--cache DIR] [--rescore] [--rounds 2]

Writes benchmarks/results/replay_real_repos.json: per format and per trajectory the fidelity histogram by command
kind, the exact/near/diverged shares with the cause of every diverged step, the final-patch check (as submitted and
whole tree, scratch files apart), and replay throughput (actions/s) at 1 and 2 workers on a fixed subset, the two
interleaved per round (1 worker is the baseline; the ratio is reported). Goal: the final patch reproduced (as
submitted) for >= 90% of the resolved trajectories that record a patch.

The replayed observations are cached (``--cache``, default /tmp/replay_real_repos_cache) so ``--rescore`` rescores
without replaying (after a change to the scorer). A trajectory without a local image is listed, not replayed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402
from environments.fidelity import (compare_final_patch, histogram, merge_histograms, score_step,  # noqa: E402
                                   shares)
from environments.replay import _kind, _recorded_roots, execution_spec, replay_trajectory  # noqa: E402
from environments.sandbox.images import instance_image_name  # noqa: E402
from environments.trajectories import discover, iter_file  # noqa: E402
from environments.trajectory import Trajectory  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAJ_DIR = DATA / "swe_trajectories"
REPOS = DATA / "repos"
# native formats of real runs (hf_dataset_rows and the SWE-agent demos are other repositories)
SUBDIRS = ("minisweagent_traj", "sweagent_traj/coder_swebench_lite", "openhands_llm_completions")


def local_images() -> set[str]:
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def repo_instances() -> set[str]:
    """Instance ids whose base commit is in ../shared/data/repos (its instances.json: {repo: [ids]} or rows)."""
    obj = json.loads((REPOS / "instances.json").read_text())
    ids: set[str] = set()
    for v in (obj.values() if isinstance(obj, dict) else [obj]):
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, str):
                ids.add(x)
            elif isinstance(x, dict) and x.get("instance_id"):
                ids.add(x["instance_id"])
    return ids


def select() -> tuple[list[tuple[str, Trajectory]], dict[str, Any]]:
    wanted = repo_instances()
    images = local_images()
    files, _ = discover([TRAJ_DIR / d for d in SUBDIRS])
    chosen: list[tuple[str, Trajectory]] = []
    no_image: list[str] = []
    for f in files:
        for unit, t in iter_file(f.path):
            if not isinstance(t, Trajectory) or t.instance_id not in wanted:
                continue
            if instance_image_name(t.instance_id) not in images:
                no_image.append(f"{t.format}:{t.instance_id}")
                continue
            chosen.append((str(Path(unit).relative_to(TRAJ_DIR)) if unit.startswith(str(TRAJ_DIR)) else unit, t))
    info = {"repo_instances": len(wanted), "trajectories_selected": len(chosen),
            "instances": len({t.instance_id for _, t in chosen}),
            "per_format": dict(Counter(t.format for _, t in chosen)), "without_local_image": sorted(no_image)}
    return chosen, info


def cache_path(cache: Path, unit: str) -> Path:
    return cache / (re.sub(r"[^A-Za-z0-9_.-]+", "_", unit)[-180:] + ".json")


def replay_one(unit: str, t: Trajectory, cache: Path) -> dict[str, Any]:
    rr = replay_trajectory(t, backend="docker")
    rec = {"unit": unit, "observations": rr.observations, "error": rr.error, "stage": rr.stage,
           "submitted": rr.patch, "tree_patch": rr.tree_patch, "seconds": rr.seconds, "exec": rr.exec_spec,
           "timed_out_steps": rr.timed_out_steps, "unsupported_steps": rr.unsupported_steps}
    cache_path(cache, unit).write_text(json.dumps(rec))
    return rec


def replay_all(items: list[tuple[str, Trajectory]], workers: int, cache: Path, reuse: bool) -> tuple[dict, float]:
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for unit, t in items:
        p = cache_path(cache, unit)
        if reuse and p.exists():
            out[unit] = json.loads(p.read_text())
        else:
            todo.append((unit, t))
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(replay_one, u, t, cache): u for u, t in todo}
        for k, fut in enumerate(futs):
            rec = fut.result()
            out[rec["unit"]] = rec
            print(f"[{k + 1}/{len(todo)}] {rec['unit'][-70:]}  {rec['seconds']}s  error={rec['error']}", flush=True)
    return out, time.monotonic() - t0


# -- causes of diverged steps -------------------------------------------------------------------------------------
CAUSES = {
    "timeout": "the command hit the per-command timeout in one run only",
    "env: recording lacked the repo's dependencies": "the recorded run's `python` had no repo dependencies "
    "(ModuleNotFoundError / pip install of pytz, sqlparse, asgiref…); the local image has them installed",
    "env: pip output": "`pip install` printed other text (the recording: the root-user warning after installing; "
    "here: already installed, or no index offline)",
    "env: Python version": "another interpreter version (3.11 in the recording, the spec's nearest here): traceback "
    "frames, paths, sys.version, warnings",
    "listing: traversal order + truncation": "a listing cut by head/tail: the same command lists the tree in "
    "another directory order, so other lines survive the cut",
    "listing: different lines": "a listing whose lines differ (files the run created, other tree)",
    "test run output": "test runner output (counts, failures, environment-dependent skips)",
    "SWE-agent 0.x edit linter": "SWE-agent 0.x rejected the edit (flake8 found new errors) and left the file "
    "alone; the replay's ACI `edit` has no linter and applies it",
    "state from an earlier divergence": "the file or tree differs because an earlier step diverged (an edit applied "
    "in one run only), so later views, edits and runs differ too",
    "editor/ACI output": "an editor or ACI view that differs without an earlier divergence",
    "script output": "a script's own output differs (environment, nondeterminism)",
}


STATEFUL = ("edit", "create", "str_replace_editor:str_replace", "str_replace_editor:create",
            "str_replace_editor:insert", "file-write", "file-op", "sed")


def cause_of(kind: str, action: str, replayed: str, recorded: str, timed_out: bool,
             earlier_state_divergence: bool = False) -> str:
    """A short class for a diverged step (CAUSES; explained in docs/replay-fidelity.md)."""
    a, r = replayed or "", recorded or ""
    if timed_out or "was cancelled because it took more than" in r or "timed out" in r.lower():
        return "timeout"
    if kind == "edit" and "Your proposed edit has introduced new syntax error" in r and \
            "Your proposed edit has introduced new syntax error" not in a:
        return "SWE-agent 0.x edit linter"
    if earlier_state_divergence:
        return "state from an earlier divergence"
    missing = re.compile(r"No module named '?([\w.]+)")
    if set(missing.findall(r)) - set(missing.findall(a)):
        return "env: recording lacked the repo's dependencies"
    if kind == "pip" or re.search(r"\bpip3? install\b", action or ""):
        return "env: pip output"
    if kind in ("find", "grep -r", "ls", "git status", "ls -l"):
        if re.search(r"\|\s*(head|tail)\b", action or ""):
            return "listing: traversal order + truncation"
        return "listing: different lines"
    if re.search(r"python3\.1[0-9]|<frozen runpy>|\^\^\^", r) and not re.search(r"python3\.1[0-9]", a):
        return "env: Python version"
    if kind == "pytest" or re.search(r"\bRan \d+ tests? in\b|=+ .*(passed|failed)", r + "\n" + a):
        return "test run output"
    if kind.startswith("str_replace_editor") or kind in ("open", "goto", "scroll_up", "scroll_down", "edit",
                                                           "search_file", "search_dir", "find_file", "create"):
        return "editor/ACI output"
    return "script output"


def score(items: list[tuple[str, Trajectory]], replays: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per_traj = []
    causes_by_fmt: dict[str, Counter] = {}
    for unit, t in items:
        rec = replays.get(unit)
        if rec is None:
            continue
        roots = _recorded_roots(t) + ("/testbed",)
        kinds = [_kind(s)[0] for s in t.steps]
        obs = rec["observations"]
        steps = [score_step(kinds[i], obs[i] if not rec["error"] else None, s.observation, roots,
                            "replay failed" if rec["error"] else None) for i, s in enumerate(t.steps)]
        check = (compare_final_patch(t.patch, rec["submitted"], rec["tree_patch"]) if not rec["error"] else {})
        diverged = []
        state_diverged = False
        for i, s in enumerate(steps):
            if s.status != "diverged":
                continue
            c = cause_of(s.kind, t.steps[i].raw_action, obs[i], t.steps[i].observation or "",
                         i in set(rec.get("timed_out_steps") or []), state_diverged)
            if s.kind in STATEFUL and c != "state from an earlier divergence" or c == "SWE-agent 0.x edit linter":
                state_diverged = True
            causes_by_fmt.setdefault(t.format, Counter())[c] += 1
            diverged.append({"step": i, "kind": s.kind, "fidelity": round(s.fidelity or 0, 4),
                             "fidelity_raw": round(s.raw or 0, 4), "cause": c,
                             "action": (t.steps[i].raw_action or t.steps[i].action)[:160]})
        h = histogram(steps)
        per_traj.append({
            "unit": unit, "format": t.format, "instance_id": t.instance_id, "resolved": t.resolved,
            "actions": len(t.steps), "seconds": rec["seconds"], "error": rec["error"], "stage": rec["stage"],
            "exec": {k: v for k, v in (rec.get("exec") or {}).items() if k != "env"},
            "histogram": h, "shares": shares(h["total"]),
            "statuses": "".join({"exact": "e", "near": "n", "diverged": "d", "skipped": "s"}[s.status] for s in steps),
            "mean_fidelity": (round(sum(s.fidelity for s in steps if s.fidelity is not None)
                                    / max(1, sum(1 for s in steps if s.fidelity is not None)), 4)),
            "mean_fidelity_raw": (round(sum(s.raw for s in steps if s.raw is not None)
                                        / max(1, sum(1 for s in steps if s.raw is not None)), 4)),
            "patch": {k: check.get(k) for k in ("recorded", "patch_match", "submission_match", "whole_tree_match",
                                                "submitted_files", "matched_files", "mismatched_files",
                                                "tree_extra_files")},
            "timed_out_steps": rec.get("timed_out_steps") or [],
            "diverged": diverged,
        })
    per_format: dict[str, Any] = {}
    for fmt in sorted({p["format"] for p in per_traj}) + ["all"]:
        rows = [p for p in per_traj if fmt == "all" or p["format"] == fmt]
        ok = [p for p in rows if not p["error"]]
        hist = merge_histograms(p["histogram"] for p in ok)
        with_patch = [p for p in ok if p["patch"]["recorded"]]
        resolved = [p for p in with_patch if p["resolved"] is True]
        causes = Counter()
        for f, c in causes_by_fmt.items():
            if fmt in ("all", f):
                causes.update(c)
        per_format[fmt] = {
            "trajectories": len(rows), "replayed": len(ok), "failed": dict(Counter(p["stage"] for p in rows
                                                                                   if p["error"])),
            "actions": sum(p["actions"] for p in rows), "histogram": hist, "shares": shares(hist["total"]),
            "mean_fidelity": round(sum(p["mean_fidelity"] for p in ok) / len(ok), 4) if ok else None,
            "mean_fidelity_raw": round(sum(p["mean_fidelity_raw"] for p in ok) / len(ok), 4) if ok else None,
            "diverged_causes": dict(causes.most_common()),
            "patch": {"with_recorded_patch": len(with_patch),
                      "match_as_submitted": sum(1 for p in with_patch if p["patch"]["patch_match"]),
                      "submission_match": sum(1 for p in with_patch if p["patch"]["submission_match"]),
                      "whole_tree_match": sum(1 for p in with_patch if p["patch"]["whole_tree_match"]),
                      "with_scratch_files": sum(1 for p in with_patch if p["patch"]["tree_extra_files"]),
                      "resolved_with_patch": len(resolved),
                      "resolved_match_as_submitted": sum(1 for p in resolved if p["patch"]["patch_match"])},
        }
    a = per_format["all"]["patch"]
    rate = a["resolved_match_as_submitted"] / a["resolved_with_patch"] if a["resolved_with_patch"] else None
    goal = {"target": 0.9, "resolved_with_patch": a["resolved_with_patch"],
            "reproduced_as_submitted": a["resolved_match_as_submitted"],
            "rate": round(rate, 4) if rate is not None else None, "met": rate is not None and rate >= 0.9,
            "note": "trajectories that record no final patch (OpenHands llm_completions) are not in the denominator"}
    return {"per_format": per_format, "goal": goal, "trajectories": per_traj}


# -- throughput ---------------------------------------------------------------------------------------------------
def throughput(items: list[tuple[str, Trajectory]], rounds: int, max_actions: int) -> dict[str, Any]:
    """Actions/s at 1 and 2 workers on the same subset (the shortest trajectories of each format, up to
    ``max_actions`` actions), interleaved: each round runs both, the order alternating."""
    subset: list[tuple[str, Trajectory]] = []
    total = 0
    by_len = sorted(items, key=lambda ut: len(ut[1].steps))
    fmts = sorted({t.format for _, t in items})
    while total < max_actions and by_len:
        for f in fmts:
            nxt = next((ut for ut in by_len if ut[1].format == f), None)
            if nxt is not None:
                by_len.remove(nxt)
                subset.append(nxt)
                total += len(nxt[1].steps)
        if not any(ut[1].format in fmts for ut in by_len):
            break
    runs: list[dict[str, Any]] = []

    def one(workers: int) -> dict[str, Any]:
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            res = list(pool.map(lambda ut: replay_trajectory(ut[1], backend="docker"), subset))
        wall = time.monotonic() - t0
        errors = sum(1 for r in res if r.error)
        return {"workers": workers, "wall_s": round(wall, 2), "actions": total, "errors": errors,
                "actions_per_s": round(total / wall, 3), "load_1min_before": round(load0, 2),
                "load_1min_after": round(os.getloadavg()[0], 2)}

    for r in range(rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)
        for w in order:
            runs.append({"round": r, **one(w)})
            print(f"throughput round {r} workers {w}: {runs[-1]['actions_per_s']} actions/s", flush=True)
    return summarize_throughput({"subset": [u for u, _ in subset], "subset_actions": total, "runs": runs})


def summarize_throughput(tp: dict[str, Any]) -> dict[str, Any]:
    """Medians per worker count and the 2-over-1 ratio, per round and overall, from ``tp["runs"]``."""
    runs = tp.get("runs") or []
    med = {w: statistics.median([x["actions_per_s"] for x in runs if x["workers"] == w] or [0]) or None
           for w in (1, 2)}
    per_round = []
    for r in sorted({x["round"] for x in runs}):
        a = {x["workers"]: x["actions_per_s"] for x in runs if x["round"] == r}
        if a.get(1) and a.get(2):
            per_round.append(round(a[2] / a[1], 3))
    return {**tp, "median_actions_per_s": {"1": med[1], "2": med[2]},
            "ratio_2_over_1": round(med[2] / med[1], 3) if med[1] and med[2] else None,
            "ratio_per_round": per_round, "baseline": "1 worker (same subset, same run, interleaved)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="concurrent replays for the full set")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/replay_real_repos_cache"))
    ap.add_argument("--rescore", action="store_true", help="reuse cached replays (replay only the missing ones)")
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds (0: skip throughput)")
    ap.add_argument("--throughput-actions", type=int, default=60)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    items, sel = select()
    if args.limit:
        items = items[:args.limit]
    print(f"{len(items)} trajectories: {sel['per_format']}; without a local image: {len(sel['without_local_image'])}",
          flush=True)
    load0 = os.getloadavg()[0]
    replays, wall = replay_all(items, args.workers, args.cache, args.rescore)
    result = score(items, replays)
    result["selection"] = sel
    result["cause_classes"] = CAUSES
    result["execution"] = {f: execution_spec(t).source for f, t in {t.format: t for _, t in items}.items()}
    result["full_run"] = {"workers": args.workers, "wall_s": round(wall, 1), "reused_cache": args.rescore,
                          "actions": sum(len(t.steps) for _, t in items), "load_1min_before": round(load0, 2),
                          "load_1min_after": round(os.getloadavg()[0], 2)}
    if args.rounds:
        result["throughput"] = throughput(items, args.rounds, args.throughput_actions)
    if not args.no_write:
        prev = Path(__file__).resolve().parent / "results" / "replay_real_repos.json"
        if args.rescore and not args.rounds and prev.exists():
            old = json.loads(prev.read_text())
            for k in ("throughput", "full_run"):
                if k in old:
                    result[k] = old[k]
            if "throughput" in result:
                result["throughput"] = summarize_throughput(result["throughput"])
        print(write_result("replay_real_repos", result))
    g = result["goal"]
    print(json.dumps({f: {k: v for k, v in pf.items() if k in ("trajectories", "failed", "shares", "patch")}
                      for f, pf in result["per_format"].items()}, indent=1))
    print(f"goal: {g['reproduced_as_submitted']}/{g['resolved_with_patch']} = {g['rate']} (met: {g['met']})")


if __name__ == "__main__":
    main()
