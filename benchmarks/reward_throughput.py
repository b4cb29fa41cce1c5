"""Reward throughput: pairs/s of each similarity backend on real SWE agent actions.

    python benchmarks/reward_throughput.py [--rounds-typical 5] [--rounds-long 3] [--long 40] [--no-write]

Actions come from the real trajectories in ../shared/data/swe_trajectories, in every native format we read:
SWE-agent ``.traj`` (``trajectory[i]["action"]``), mini-swe-agent ``.traj.json`` (assistant ``tool_calls``),
OpenHands ``llm_completions`` (last completion per instance, assistant ``tool_calls``) and the SWE-smith SFT
jsonl (``<function=...>`` calls in assistant messages). Tool calls are rendered as canonical XML text, the
form the reward sees.

Two sets of (model prediction, expert action) pairs:
  typical    ordinary actions (< 2,000 chars), an equal share from each format
  long_tail  actions >= 2,000 chars (file creations, big edits)
For every expert action there are two predictions: a perturbed copy of it (a few random span edits, as a
near-miss rollout) and another action of the same tool (a wrong rollout).

Backends are timed interleaved (every round runs every backend once, in a rotated order) and the median is
reported, so the speedups stay fair while other processes share the CPU. Every exact backend is checked to
equal difflib on every pair; indel is checked to be >= difflib. The batch API ``score_batch`` is timed
with processes=1 and 2 on completions wrapped in ``<think>…</think>``.

Issue #17.5 (difflib-fast): when the PyPI package ``difflib-fast`` is installed, its scalar ``ratio`` is one more
backend of the interleaved rounds (``difflib-fast``), and so is ``exact`` (which then routes long pairs to it); a
third set ``perturbations`` (unicode, NUL, 3,000-char repeats, lone surrogates, around real actions) checks exactness;
``batch_api`` times whole-set scoring, interleaved: our C backend in 1 process and in 2 processes (a pool of 2, fixed
before timing), difflib-fast's batch call ``ratio(pairs, threads=1|2)``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import write_result  # noqa: E402
from swe_srl.core import reward as R  # noqa: E402
from swe_srl.core import score_batch  # noqa: E402
from swe_srl.core.toolcall import ToolCall, ToolCallError, from_openai, parse_tool_calls  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "swe_trajectories"
LONG = 2000

Action = tuple[str, str, str]  # (source format, tool, canonical text)


# -- loading ------------------------------------------------------------------------------------------------
def _openai_calls(messages: list, fmt: str) -> list[Action]:
    out: list[Action] = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        for tc in m.get("tool_calls") or []:
            try:
                call = from_openai(tc)
            except (ToolCallError, AttributeError):
                continue
            out.append((fmt, call.name, call.to_text()))
    return out


def load_actions(root: Path = DATA) -> list[Action]:
    actions: list[Action] = []
    for f in sorted(root.glob("**/*.traj")):
        try:
            steps = json.loads(f.read_text()).get("trajectory", [])
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for s in steps:
            a = (s.get("action") or "").strip()
            if a:
                calls = parse_tool_calls(a) if "<function" in a else []
                if len(calls) == 1:
                    actions.append(("sweagent.traj", calls[0].name, calls[0].to_text()))
                else:
                    actions.append(("sweagent.traj", a.split(None, 1)[0], a))
    for f in sorted(root.glob("**/*.traj.json")):
        try:
            actions += _openai_calls(json.loads(f.read_text()).get("messages", []), "minisweagent.traj.json")
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    for inst in sorted(p for p in root.glob("openhands_llm_completions/*/llm_completions/*") if p.is_dir()):
        files = sorted(inst.glob("*.json"), key=lambda p: float(p.stem.rsplit("-", 1)[-1]))
        if files:
            actions += _openai_calls(json.loads(files[-1].read_text()).get("messages", []),
                                     "openhands.llm_completions")
    for f in sorted(root.glob("**/*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            for m in row.get("messages") or []:
                if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str):
                    actions += [("swesmith.jsonl", c.name, c.to_text()) for c in parse_tool_calls(m["content"])]
    return actions


# -- pairs --------------------------------------------------------------------------------------------------
NOISE = ["", "x", " ", "\n", "    ", "self.", "_", "()", "import os\n", "return None", "=", "'"]


def perturb_text(s: str, rnd: random.Random) -> str:
    out = s
    for _ in range(1 + min(len(s) // 200, 12)):
        p = rnd.randrange(len(out) + 1)
        out = out[:p] + rnd.choice(NOISE) + out[p + rnd.randint(0, 25):]
    return out


def perturb_action(text: str, rnd: random.Random) -> str:
    """A near-miss prediction: random span edits inside the parameter values, the call stays well-formed."""
    if text.startswith("<function="):
        calls = parse_tool_calls(text)
        if len(calls) == 1:
            args = {k: (perturb_text(v, rnd) if len(v) > 3 else v) for k, v in calls[0].arguments.items()}
            return ToolCall.make(calls[0].name, args).to_text()
    return perturb_text(text, rnd)


def make_pairs(actions: list[Action], rnd: random.Random) -> list[tuple[str, str]]:
    by_tool: dict[str, list[str]] = defaultdict(list)
    for _, tool, text in actions:
        by_tool[tool].append(text)
    pairs = []
    for _, tool, text in actions:
        pairs.append((perturb_action(text, rnd), text))
        others = [t for t in by_tool[tool] if t != text] or [t for _, _, t in actions if t != text]
        pairs.append((rnd.choice(others), text))
    return pairs


def select(actions: list[Action], rnd: random.Random, n_typical: int, n_long: int):
    seen = set()
    uniq = []
    for a in actions:
        if a[2] not in seen:
            seen.add(a[2])
            uniq.append(a)
    by_fmt: dict[str, list[Action]] = defaultdict(list)
    for a in uniq:
        if len(a[2]) < LONG:
            by_fmt[a[0]].append(a)
    typical: list[Action] = []
    share = n_typical // max(len(by_fmt), 1)
    for fmt in sorted(by_fmt):
        typical += rnd.sample(by_fmt[fmt], min(share, len(by_fmt[fmt])))
    longs = [a for a in uniq if len(a[2]) >= LONG]
    long_sel = rnd.sample(longs, min(n_long, len(longs)))
    return typical, long_sel, len(longs)


# -- timing -------------------------------------------------------------------------------------------------
MIN_PASS_S = 0.25
"""A timed sample repeats the pass over all pairs until it lasts at least this long (fast backends)."""


def time_backend(fn: Callable[[str, str], float], pairs: list[tuple[str, str]], reps: int = 1
                 ) -> tuple[float, list[float]]:
    """Seconds per pass over all pairs (mean of ``reps`` passes) and the values of the last pass."""
    t0 = time.perf_counter()
    for _ in range(reps):
        out = [fn(a, b) for a, b in pairs]
    return (time.perf_counter() - t0) / reps, out


def bench_set(name: str, pairs: list[tuple[str, str]], backends: list[str], rounds: int) -> dict:
    fns = {b: R.get_similarity(b) for b in backends}
    secs: dict[str, list[float]] = {b: [] for b in backends}
    values: dict[str, list[float]] = {}
    reps = {}
    for b in backends:  # warm-up (lazy imports, caches) and number of passes per timed sample
        dt, _ = time_backend(fns[b], pairs[:5])
        if dt / 5 * len(pairs) < 4 * MIN_PASS_S:   # quick backend: calibrate on a full pass
            dt, _ = time_backend(fns[b], pairs)
        reps[b] = max(1, math.ceil(MIN_PASS_S / max(dt, 1e-9)))
    for r in range(rounds):
        order = backends[r % len(backends):] + backends[: r % len(backends)]
        for b in order:
            dt, out = time_backend(fns[b], pairs, reps[b])
            secs[b].append(dt)
            if b in values:
                assert out == values[b], f"{b}: results changed between rounds"
            values[b] = out
        print(f"  [{name}] round {r + 1}/{rounds}: " + ", ".join(f"{b} {len(pairs) / secs[b][-1]:.1f}/s"
                                                                 for b in backends), flush=True)
    ref = values["difflib"]
    agree = {}
    for b in backends:
        if b in ("difflib", "indel"):
            continue
        bad = [i for i, (x, y) in enumerate(zip(values[b], ref)) if x != y]
        agree[b] = {"pairs_equal_to_difflib": len(pairs) - len(bad), "pairs": len(pairs)}
        if bad:
            raise SystemExit(f"{name}: backend {b} differs from difflib on {len(bad)} pairs, e.g. #{bad[0]}")
    if "indel" in values:
        agree["indel"] = {"pairs_ge_difflib": sum(x >= y - 1e-12 for x, y in zip(values["indel"], ref)),
                          "pairs_equal_to_difflib": sum(x == y for x, y in zip(values["indel"], ref)),
                          "pairs": len(pairs), "mean_indel_minus_difflib":
                              statistics.fmean(x - y for x, y in zip(values["indel"], ref))}
    lens = [len(a) + len(b) for a, b in pairs]
    result = {
        "pairs": len(pairs),
        "rounds": rounds,
        "chars_per_pair": {"mean": round(statistics.fmean(lens), 1), "median": statistics.median(lens),
                           "max": max(lens)},
        "mean_difflib_ratio": round(statistics.fmean(ref), 4),
        "pairs_per_s": {b: round(len(pairs) / statistics.median(secs[b]), 2) for b in backends},
        "speedup_vs_difflib": {b: round(statistics.median(d / s for d, s in zip(secs["difflib"], secs[b])), 2)
                               for b in backends},
        "seconds_per_pass": {b: [round(s, 5) for s in secs[b]] for b in backends},
        "passes_per_sample": reps,
        "agreement": agree,
        "_difflib_values": ref,
    }
    return result


def bench_batch(pairs: list[tuple[str, str]], rounds: int, ref: list[float]) -> dict:
    """``ref``: difflib ratio of every pair (from bench_set), reused where canonicalization changes nothing."""
    completions = [f"<think>step {i}: compare and act</think>{p}" for i, (p, _) in enumerate(pairs)]
    targets = [t for _, t in pairs]
    secs: dict[int, list[float]] = {1: [], 2: []}
    results = {}
    score_batch(completions[:3], targets[:3], processes=1, backend="exact")  # warm-up
    for r in range(rounds):
        for procs in ((1, 2) if r % 2 == 0 else (2, 1)):
            t0 = time.perf_counter()
            results[procs] = score_batch(completions, targets, processes=procs, backend="exact")
            secs[procs].append(time.perf_counter() - t0)
    assert results[1] == results[2], "score_batch: processes=1 and 2 disagree"
    scored = [(res, p, t, r) for res, (p, t), r in zip(results[1], pairs, ref) if res.similarity is not None]
    mismatches = sum(res.similarity != (r if (res.action, R.canonicalize_action(t)) == (p, t)
                                        else R._difflib(res.action, R.canonicalize_action(t)))
                     for res, p, t, r in scored)
    if mismatches:
        raise SystemExit(f"score_batch(exact): {mismatches} similarities differ from difflib")
    total_chars = sum(map(len, completions)) + sum(map(len, targets))
    return {
        "pairs": len(pairs),
        "rounds": rounds,
        "backend": "exact (" + ("fast" if R.fast_available() else R.get_similarity("exact").__name__.lstrip("_"))
                   + (f" + difflib-fast batch call from {R.DIFFLIB_FAST_MIN_CHARS} chars/pair"
                      if R.difflib_fast_available() else "") + ")",
        "format_violations": len(pairs) - len(scored),
        "total_chars": total_chars,
        "parallelism_with_2": ("difflib-fast batch call, threads=2 (no process pool)" if R.difflib_fast_available()
                               else "process pool" if total_chars >= (R.PARALLEL_MIN_CHARS_COMPILED if
                                                                      R.fast_available() else R.PARALLEL_MIN_CHARS)
                               else "none (batch below the pool threshold: in-process)"),
        "pairs_per_s": {f"processes={p}": round(len(pairs) / statistics.median(s), 2) for p, s in secs.items()},
        "seconds_per_round": {f"processes={p}": [round(x, 4) for x in s] for p, s in secs.items()},
        "similarities_equal_to_difflib": len(scored),
    }


def perturbation_pairs(actions: list[Action], rnd: random.Random, n: int = 30) -> list[tuple[str, str]]:
    """Held-out-style perturbations around real actions: unicode, NUL, 3,000-char repeats, lone surrogates."""
    texts = [t for _, _, t in actions if len(t) >= 40]
    pairs: list[tuple[str, str]] = []
    for base in rnd.sample(texts, min(n, len(texts))):
        uni = "".join(rnd.choice(["é", "中", "\U0001F600", "ß", "\u200b", "\U0010FFFF", c]) for c in base[:600])
        nul = base[:600].replace(" ", "\x00", 9) + "\x00" * 4
        unit = base[:rnd.randint(2, 40)]
        rep = (unit * (3000 // len(unit) + 2))[:3000]
        pairs += [(uni, base[:600]), (base[:600], uni), (nul, base[:600]), (rep, rep[1:] + "x"),
                  (rep, base[:3000]), (perturb_text(rep, rnd), rep), ("\ud800" + base[:200] + "\udfff", base[:200])]
    pairs += [("a" * 3000, "a" * 2999 + "b"), ("ab" * 1500, "ba" * 1500), ("\x00" * 3000, "\x00" * 2990)]
    return pairs


def check_exact(name: str, pairs: list[tuple[str, str]], backends: list[str]) -> dict:
    """Every exact backend equals difflib on every pair (no timing)."""
    ref = [R._difflib(a, b) for a, b in pairs]
    out = {}
    for b in backends:
        fn = R.get_similarity(b)
        bad = [i for i, (x, y) in enumerate(zip(pairs, ref)) if fn(*x) != y]
        out[b] = {"pairs_equal_to_difflib": len(pairs) - len(bad), "pairs": len(pairs)}
        if bad:
            raise SystemExit(f"{name}: backend {b} differs from difflib on {len(bad)} pairs, e.g. #{bad[0]}")
    return {"pairs": len(pairs), "max_chars_per_pair": max(len(a) + len(b) for a, b in pairs),
            "lone_surrogate_pairs": sum(any(0xD800 <= ord(c) <= 0xDFFF for c in a + b) for a, b in pairs),
            "agreement": out}


def _ours_chunk(pairs: list[tuple[str, str]]) -> list[float]:
    f = R.get_similarity("fast")
    return [f(a, b) for a, b in pairs]


def bench_batch_api(name: str, pairs: list[tuple[str, str]], rounds: int, ref: list[float]) -> dict:
    """Whole-set scoring, interleaved: ours in 1 / 2 processes, difflib-fast's batch call with 1 / 2 threads."""
    from concurrent.futures import ProcessPoolExecutor

    import difflib_fast

    half = len(pairs) // 2
    per = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    # two chunks of about equal characters (greedy, longest first), order restored afterwards
    chunks: list[list[int]] = [[], []]
    load = [0, 0]
    for i in per:
        k = 0 if load[0] <= load[1] else 1
        chunks[k].append(i)
        load[k] += len(pairs[i][0]) + len(pairs[i][1])
    del half
    pool = ProcessPoolExecutor(2)
    list(pool.map(_ours_chunk, [pairs[:2], pairs[2:4]]))     # start both workers before timing

    def ours2() -> list[float]:
        parts = list(pool.map(_ours_chunk, [[pairs[i] for i in c] for c in chunks]))
        out = [0.0] * len(pairs)
        for c, vals in zip(chunks, parts):
            for i, v in zip(c, vals):
                out[i] = v
        return out

    variants: dict[str, Callable[[], list[float]]] = {
        "ours 1 process": lambda: _ours_chunk(pairs),
        "ours 2 processes": ours2,
        "difflib-fast batch threads=1": lambda: difflib_fast.ratio(pairs, threads=1),
        "difflib-fast batch threads=2": lambda: difflib_fast.ratio(pairs, threads=2),
    }
    secs: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            vals = variants[k]()
            secs[k].append(time.perf_counter() - t0)
            if vals != ref:
                raise SystemExit(f"{name}: batch variant {k!r} differs from difflib")
    pool.shutdown()
    base = secs["ours 1 process"]
    return {"pairs": len(pairs), "rounds": rounds,
            "pairs_per_s": {k: round(len(pairs) / statistics.median(v), 2) for k, v in secs.items()},
            "speedup_vs_ours_1_process": {k: round(statistics.median(b / x for b, x in zip(base, v)), 2)
                                          for k, v in secs.items()},
            "seconds_per_round": {k: [round(x, 4) for x in v] for k, v in secs.items()},
            "values_equal_to_difflib": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--typical", type=int, default=200, help="number of typical expert actions (2 pairs each)")
    ap.add_argument("--long", type=int, default=40, help="number of long expert actions (2 pairs each)")
    ap.add_argument("--rounds-typical", type=int, default=5)
    ap.add_argument("--rounds-long", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    if not DATA.is_dir():
        print(f"{DATA} missing", file=sys.stderr)
        return 2
    backends = ["difflib", "cydifflib", "indel"]
    if R.fast_available():
        backends.insert(2, "fast")
    else:
        print("WARNING: swe_srl.core._ratcliff not built; the fast backend is skipped", file=sys.stderr)
    has_df = R.difflib_fast_available()
    if has_df:
        backends[-1:-1] = ["difflib-fast", "exact"]
    else:
        print("NOTE: difflib-fast not installed (or failed its self-check); its rows are skipped", file=sys.stderr)
    rnd = random.Random(args.seed)
    actions = load_actions()
    typical, longs, n_long_available = select(actions, rnd, args.typical, args.long)
    fmt_counts: dict[str, int] = defaultdict(int)
    for a in actions:
        fmt_counts[a[0]] += 1
    print(f"{len(actions)} actions loaded ({dict(fmt_counts)}); {n_long_available} are >= {LONG} chars")
    typical_pairs = make_pairs(typical, rnd)
    long_pairs = make_pairs(longs, rnd)

    results: dict = {
        "data": {"root": "shared/data/swe_trajectories", "actions_loaded": dict(fmt_counts),
                 "long_actions_available": n_long_available, "long_threshold_chars": LONG,
                 "typical_actions": len(typical), "long_actions": len(longs),
                 "typical_actions_per_format": {f: sum(a[0] == f for a in typical) for f in sorted(fmt_counts)},
                 "long_actions_per_format": {f: sum(a[0] == f for a in longs) for f in sorted(fmt_counts)},
                 "pairing": "each expert action vs (a) a perturbed copy of itself, (b) another action of the same "
                            "tool; argument order (prediction, expert)",
                 "long_observations_used": False},
        "sets": {},
    }
    print(f"typical: {len(typical_pairs)} pairs")
    results["sets"]["typical"] = bench_set("typical", typical_pairs, backends, args.rounds_typical)
    print(f"long_tail: {len(long_pairs)} pairs")
    results["sets"]["long_tail"] = bench_set("long_tail", long_pairs, backends, args.rounds_long)
    refs = {s: results["sets"][s].pop("_difflib_values") for s in ("typical", "long_tail")}
    if has_df:
        print("perturbations (exactness)")
        results["perturbations"] = check_exact("perturbations", perturbation_pairs(actions, rnd),
                                               [b for b in backends if b not in ("difflib", "indel")])
        print("batch API")
        results["batch_api"] = {
            s: bench_batch_api(s, p, max(r, 3), refs[s])
            for s, p, r in (("typical", typical_pairs, args.rounds_typical), ("long_tail", long_pairs, args.rounds_long))}
        import importlib.metadata as md

        results["difflib_fast"] = {"version": md.version("difflib-fast"), "exact_routes_from_chars":
                                   R.DIFFLIB_FAST_MIN_CHARS}
    print("score_batch")
    results["score_batch"] = {
        s: bench_batch(p, r, refs[s])
        for s, p, r in (("typical", typical_pairs, args.rounds_typical), ("long_tail", long_pairs, args.rounds_long))}
    summary = {s: {b: {"pairs_per_s": v["pairs_per_s"][b], "speedup_vs_difflib": v["speedup_vs_difflib"][b]}
                   for b in backends} for s, v in results["sets"].items()}
    results["summary"] = summary
    if has_df:
        summary["batch_api"] = {s: v["pairs_per_s"] for s, v in results["batch_api"].items()}
    print(json.dumps({"summary": summary,
                      "score_batch": {k: v["pairs_per_s"] for k, v in results["score_batch"].items()}}, indent=2))
    if not args.no_write:
        print("wrote", write_result("reward_throughput", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
