"""Quickstart wall time and peak memory, as a user measures them (issue #17.4).

    python benchmarks/quickstart_timing.py [--out /tmp/qs-timing] [--write docs/quickstart/timing.json] [-- ARGS]

Runs ``/usr/bin/time -v swe-srl quickstart --out OUT ARGS`` (the README command after install) in a fresh --out
and, while it runs, samples every second: /proc/loadavg, the summed RSS of the whole process tree (the quickstart
and any worker processes it starts) and the largest single-process RSS. Stage boundaries come from the
quickstart's own log lines (``[quickstart] <stage> ...`` / ``done in``), so every stage gets its seconds, its peak
RSS and the machine load while it ran. The result JSON (``--write``) records ``wall_s``, ``peak_rss_mb`` (the
peak of /usr/bin/time's "Maximum resident set size", i.e. the largest process), ``peak_tree_rss_mb``, the load
during the run, versions and the held-out step rewards from the run's state.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import environment_info  # noqa: E402

STAGE_START = re.compile(r"^\[quickstart\] (\w+) \.\.\.$")
STAGE_DONE = re.compile(r"^\[quickstart\] (\w+): done in ([\d.]+) s$")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, with_children: bool) -> float:
    """utime + stime of a process (+ cutime + cstime: its waited-for children) in seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if with_children else 0)
    return ticks / TICK


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            tree = _tree(self.pid)
            rss = {p: _rss_kb(p) for p in tree}
            cpu = sum(_cpu_s(p, p == self.pid) for p in tree)
            load = Path("/proc/loadavg").read_text().split()
            self.samples.append({"t": time.time(), "tree_mb": sum(rss.values()) / 1024,
                                 "max_proc_mb": max(rss.values(), default=0) / 1024,
                                 "load1": float(load[0]), "cpu_s": cpu})
            self.stop.wait(self.period)


def _summ(samples: list[dict]) -> dict:
    if not samples:
        return {}
    loads = [s["load1"] for s in samples]
    cpu = max(s["cpu_s"] for s in samples) - min(s["cpu_s"] for s in samples)
    return {"cpu_s": round(cpu, 1),"peak_tree_rss_mb": round(max(s["tree_mb"] for s in samples)),
            "peak_process_rss_mb": round(max(s["max_proc_mb"] for s in samples)),
            "load1_mean": round(statistics.fmean(loads), 2), "load1_max": round(max(loads), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/qs-timing")
    ap.add_argument("--write", default=None, help="result JSON path (e.g. docs/quickstart/timing.json)")
    ap.add_argument("--cmd", default="swe-srl", help="the CLI executable")
    ap.add_argument("args", nargs="*", help="extra quickstart arguments (after --)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", a.cmd, "quickstart", "--out", str(out), *a.args]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    sampler = Sampler(proc.pid)
    sampler.start()
    marks: dict[str, dict] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.time()
        sys.stdout.write(line)
        sys.stdout.flush()
        tail = (tail + [line])[-80:]
        s = line.strip()
        if m := STAGE_START.match(s):
            marks[m.group(1)] = {"start": now}
        elif (m := STAGE_DONE.match(s)) and m.group(1) in marks:
            marks[m.group(1)].update(end=now, seconds=float(m.group(2)))
    rc = proc.wait()
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()
    text = "".join(tail)
    maxrss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    stages = {}
    for name, mk in marks.items():
        end = mk.get("end", time.time())
        stages[name] = {"seconds": mk.get("seconds", round(end - mk["start"], 1)),
                        **_summ([s for s in sampler.samples if mk["start"] <= s["t"] <= end])}
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    st = state.get("stages", {})
    result = {
        "command": " ".join(["swe-srl", "quickstart", *a.args]),
        "exit_code": rc,
        "wall_s": round(wall, 1),
        "time_v_elapsed": elapsed.group(1) if elapsed else None,
        "peak_rss_mb": round(int(maxrss.group(1)) / 1024) if maxrss else None,
        "peak_rss_source": "/usr/bin/time -v 'Maximum resident set size' (largest single process)",
        **{k: v for k, v in _summ(sampler.samples).items()},
        "load": {"loadavg_before": load_before, "sample_period_s": sampler.period,
                 "load1_samples": len(sampler.samples),
                 "load1_mean_during_run": _summ(sampler.samples).get("load1_mean"),
                 "load1_max_during_run": _summ(sampler.samples).get("load1_max"),
                 "note": "load1 includes the quickstart itself (about 2 on 2 cores when it computes)"},
        "cpu_s_note": "CPU seconds (user + system) of the quickstart's process tree (its own waited-for children "
                      "included; work inside Docker containers is not): on an idle 2-core machine the wall time is "
                      "about cpu_s / 2 where both cores are busy",
        "stages": stages,
        "options": state.get("options"),
        "step_reward_heldout": (st.get("step_reward_eval") or {}).get("result"),
        "srl_metrics": _metrics(out / "srl" / "metrics.jsonl"),
        "environment": environment_info(),
        "goal": {"wall_s": 600, "peak_rss_mb": 4096, "machine": "idle 2-core"},
    }
    print(json.dumps({k: result[k] for k in ("wall_s", "peak_rss_mb", "peak_tree_rss_mb", "load", "stages",
                                             "step_reward_heldout")}, indent=1))
    if a.write:
        Path(a.write).write_text(json.dumps(result, indent=2) + "\n")
        print("wrote", a.write)
    return rc


def _metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    keep = ("step", "reward", "reward_std", "srl/format_error_rate", "ds/kept_fraction", "ds/rounds")
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [{k: r[k] for k in keep if k in r} for r in rows if "reward" in r]


if __name__ == "__main__":
    sys.exit(main())
