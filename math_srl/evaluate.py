"""Math benchmark evaluation: greedy accuracy and Avg@k (temperature sampling), resumable.

Data, per benchmark (``load_benchmark``), first match wins:
  1. a .jsonl path given as the benchmark;
  2. ``<data_dir>/<name>/test.jsonl`` (or ``<data_dir>/<name>.jsonl``) when ``data_dir`` is given;
  3. the HF hub, by the paper's dataset names (``HUB_DATASETS``: AMC23 = AI-MO/aimo-validation-amc, AIME24 =
     AI-MO/aimo-validation-aime, AIME25 = math-ai/aime25), when the hub answers (a 3 s probe; with
     HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set, datasets' cache only); cached by ``datasets``;
  4. the default data_dir: $SWE_SRL_MATH_DATA, else ../shared/data/math_eval next to the repository.
Each row needs a problem (``problem`` or ``question``) and an answer (``answer``; when absent, the last
``\\boxed{}`` of ``solution`` — Minerva Math's layout). Rows are indexed 0-based in file (or dataset) order.

Grading an existing predictions file (``grade_predictions``, ``swe-srl eval --task math --predictions FILE``): JSONL,
one row per sample with ``benchmark``, ``index`` (0-based row of the problem in that benchmark's file) and
``completion``; ``mode`` ("greedy" | "avg@K") is optional (absent: "avg@N", N = samples per problem); other fields
are ignored. samples.jsonl written by ``evaluate_math`` has these fields, so any run can be regraded without a model.

Prompt: system = the paper's evaluation prompt (MATH_EVAL_SYSTEM_PROMPT), user = the problem. The prediction is
the last ``\\boxed{}`` of the completion, judged against the answer with math-verify under a hard per-item
timeout (math_srl.reward). Avg@k = mean over problems of the fraction of k samples that are correct.

Output (out_dir): samples.jsonl (one line per generated sample, a swe_srl.core.io.AppendLog: appended and fsynced
batch by batch, a torn tail cut off on resume; a rerun generates only what is missing), config.json (the
generation settings the samples belong to; a rerun with other settings is refused by core.io.ResumeGuard),
report.json and report.md (per benchmark and the mean of all reported columns, like the paper's "Average").

Middle layer: ``evaluate_math`` takes a ready ``Generator`` (swe_srl.core.generation protocol) and never builds
one; ``swe-srl eval --task math`` builds it with swe_srl.generation.make_generator.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from swe_srl.core.generation import Generator, SamplingParams
from swe_srl.core.io import AppendLog, OutputLock, ResumeGuard, iter_jsonl, write_json_atomic

from .prompts import MATH_EVAL_SYSTEM_PROMPT
from .reward import answer_reward, extract_boxed, format_answer

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math_eval"


def default_data_dir() -> Path:
    return Path(os.environ.get("SWE_SRL_MATH_DATA", DEFAULT_DATA_DIR))


# benchmark -> (HF dataset, split, keep rows whose ``url`` names this year). The first three are the paper's names
# (srl-paper-notes §3.1); minerva_math and math500 are common hub copies the paper does not name.
HUB_DATASETS: dict[str, tuple[str, str, str | None]] = {
    "amc23": ("AI-MO/aimo-validation-amc", "train", "2023"),
    "aime24": ("AI-MO/aimo-validation-aime", "train", "2024"),
    "aime25": ("math-ai/aime25", "test", None),
    "minerva_math": ("math-ai/minervamath", "test", None),
    "math500": ("HuggingFaceH4/MATH-500", "test", None),
}
PAPER_BENCHMARKS = ("amc23", "aime24", "aime25", "minerva_math")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers on 443 (False at once without DNS or network)."""
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_hub_rows(name: str) -> list[dict]:
    """The rows of benchmark ``name`` from the HF hub (``HUB_DATASETS``; datasets caches them)."""
    from datasets import load_dataset

    repo, split, year = HUB_DATASETS[name]
    ds = load_dataset(repo)
    part = ds[split] if split in ds else ds[next(iter(ds))]
    rows = [dict(r) for r in part]
    if year and any("url" in r for r in rows):
        rows = [r for r in rows if year in str(r.get("url", ""))]
    return rows


def _items(rows: list[dict], where: str, limit: int | None) -> list[dict]:
    items: list[dict] = []
    for i, row in enumerate(rows):
        if row is None:
            continue
        problem = row.get("problem") or row.get("question")
        answer = row.get("answer")
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            answer = extract_boxed(row.get("solution") or "")
        if not problem or answer is None:
            raise ValueError(f"{where}:{i + 1}: needs a problem/question and an answer (or a boxed solution)")
        items.append({"idx": i, "problem": problem, "answer": format_answer(answer)})
        if limit is not None and len(items) >= limit:
            break
    return items


def _read_jsonl(path: Path) -> list[dict | None]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) if line.strip() else None for line in f]


def locate_benchmark(name: str, data_dir: str | Path | None = None, source: str = "auto") -> tuple[str, Any]:
    """(benchmark name, a Path of a local file or "hub:REPO") — the order of the module doc."""
    p = Path(name)
    if p.suffix == ".jsonl" and p.exists():
        return (p.parent.name if p.stem == "test" else p.stem), p
    roots = [Path(data_dir)] if data_dir else []
    if source in ("auto", "hub") and not data_dir and name in HUB_DATASETS and (_offline() or hub_reachable()):
        return name, "hub:" + HUB_DATASETS[name][0]
    if source == "hub":
        raise FileNotFoundError(f"benchmark {name!r}: the HF hub is not reachable (or {name} has no hub dataset: "
                                f"{', '.join(HUB_DATASETS)})")
    if not data_dir:
        roots.append(default_data_dir())
    for root in roots:
        for c in (root / name / "test.jsonl", root / f"{name}.jsonl"):
            if c.exists():
                return name, c
    root = roots[0]
    hub = f"; the hub copy ({HUB_DATASETS[name][0]}) is used when huggingface.co is reachable" if name in \
        HUB_DATASETS else ""
    raise FileNotFoundError(f"benchmark {name!r}: no {root / name / 'test.jsonl'} nor {root / name}.jsonl{hub}")


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None,
                   source: str = "auto") -> tuple[str, list[dict]]:
    """(benchmark name, [{idx, problem, answer}]) from a .jsonl path, data_dir, the HF hub or the default dir."""
    bname, where = locate_benchmark(name, data_dir, source)
    if isinstance(where, str):
        try:
            return bname, _items(load_hub_rows(bname), where, limit)
        except Exception as e:  # unreachable mid-way, not cached offline, a renamed dataset: fall back, say so
            print(f"[swe-srl] benchmark {bname}: {where} failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                  f"using the local copy", file=sys.stderr)
            bname, where = locate_benchmark(name, data_dir, "local")
    return bname, _items(_read_jsonl(where), str(where), limit)


def eval_messages(problem: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": MATH_EVAL_SYSTEM_PROMPT}, {"role": "user", "content": problem}]


class SampleLog:
    """samples.jsonl (an AppendLog); complete units = (benchmark, idx, mode) with all n samples."""

    def __init__(self, path: Path) -> None:
        self.log = AppendLog(path)
        self.rows: dict[tuple[str, int, str], dict[int, dict]] = {}
        self._index(self.log.records)

    def _index(self, rows: list[dict]) -> None:
        for r in rows:
            self.rows.setdefault((r["benchmark"], r["idx"], r["mode"]), {})[r["sample"]] = r

    def complete(self, bench: str, idx: int, mode: str, n: int) -> bool:
        got = self.rows.get((bench, idx, mode), {})
        return all(s in got for s in range(n))

    def append(self, rows: list[dict]) -> None:
        self.log.extend(rows)
        self._index(rows)

    def close(self) -> None:
        self.log.close()


def evaluate_math(generator: Generator, benchmarks: list[str], *, model_name: str | None = None, k=32,
                  temperature=1.0, greedy=True, avg=True, data_dir=None, out_dir="runs/math_eval", limit=None,
                  max_new_tokens=2048, batch_size=8, timeout=5.0, seed=0, source: str = "auto") -> dict:
    """Evaluate ``generator`` (a ready Generator) on math benchmarks; returns the report (also written to
    out_dir/report.json and report.md). ``model_name`` (default: ``generator.name``) is recorded in config.json,
    so that samples of two models never share an out_dir. ``batch_size`` problems go to one generate() call
    (at least 256 with the vLLM backend)."""
    if not greedy and not avg:
        raise ValueError("greedy/avg: at least one of them must be on")
    with OutputLock(out_dir):   # one writer per output directory (swe_srl.core.io.OutputLock)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        modes: list[tuple[str, int, float]] = []
        if greedy:
            modes.append(("greedy", 1, 0.0))
        if avg:
            modes.append((f"avg@{k}", int(k), float(temperature)))
        prompt_hash = hashlib.sha256(MATH_EVAL_SYSTEM_PROMPT.encode()).hexdigest()[:12]
        config = {"model": model_name or getattr(generator, "name", type(generator).__name__),
                  "max_new_tokens": int(max_new_tokens), "system_prompt_sha": prompt_hash, "seed": seed}
        sources = {b: str(locate_benchmark(b, data_dir, source)[1]) for b in benchmarks}
        ResumeGuard(out, "config.json", what="out_dir").check(config)

        data = [load_benchmark(b, data_dir, limit, source) for b in benchmarks]
        log = SampleLog(out / "samples.jsonl")
        stats = {"problems_generated": 0, "samples_generated": 0, "generation_seconds": 0.0}
        chunk = batch_size if getattr(generator, "name", "") != "vllm" else max(batch_size, 256)
        try:
            for bname, items in data:
                for mode, n, temp in modes:
                    todo = [it for it in items if not log.complete(bname, it["idx"], mode, n)]
                    for c in range(0, len(todo), chunk):
                        part = todo[c:c + chunk]
                        params = SamplingParams(n=n, temperature=temp, max_new_tokens=int(max_new_tokens),
                                                seed=None if temp == 0 else seed + part[0]["idx"])
                        t0 = time.perf_counter()
                        outs = generator.generate([eval_messages(it["problem"]) for it in part], params)
                        stats["generation_seconds"] += time.perf_counter() - t0
                        rows = []
                        for it, comps in zip(part, outs):
                            for s, comp in enumerate(comps):
                                pred = extract_boxed(comp)
                                rows.append({"benchmark": bname, "index": it["idx"], "idx": it["idx"], "mode": mode,
                                             "sample": s,
                                             "temperature": temp, "answer": it["answer"], "pred": pred,
                                             "correct": answer_reward(comp, it["answer"], timeout=timeout),
                                             "completion": comp})
                        log.append(rows)
                        stats["problems_generated"] += len(part)
                        stats["samples_generated"] += len(rows)
            report = _report(config, data, modes, log, stats)
        finally:
            log.close()
        report["sources"] = sources
        write_json_atomic(out / "report.json", report)
        (out / "report.md").write_text(_markdown(report), encoding="utf-8")
        return report


def grade_predictions(predictions: str | Path, *, benchmarks: list[str] | None = None, data_dir=None,
                      out_dir="runs/math_grade", timeout=5.0, source: str = "auto", model_name: str | None = None) -> dict:
    """Grade an existing predictions file without a model (format: module doc); writes report.json/report.md and
    graded.jsonl (each row + pred + correct) into out_dir. ``benchmarks`` defaults to those named in the file."""
    path = Path(predictions)
    if not path.is_file():
        raise FileNotFoundError(f"--predictions: no such file {str(path)!r}")
    rows: list[dict] = []
    for i, r in iter_jsonl(path, label="--predictions"):
        idx = r.get("index", r.get("idx")) if isinstance(r, dict) else None
        if not isinstance(r, dict) or not isinstance(r.get("benchmark"), str) or not isinstance(idx, int) \
                or not isinstance(r.get("completion"), str):
            raise ValueError(f"--predictions {path}:{i}: expected benchmark (str), index (int), completion (str)")
        rows.append({"benchmark": r["benchmark"], "index": idx, "completion": r["completion"],
                     "mode": r.get("mode")})
    names = benchmarks or list(dict.fromkeys(r["benchmark"] for r in rows))
    data = {}
    for b in names:
        bname, items = load_benchmark(b, data_dir, None, source)
        data[b] = (bname, {it["idx"]: it for it in items})
    per: dict[tuple[str, str], dict[int, list[float]]] = {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graded = []
    for r in rows:
        if r["benchmark"] not in data:
            continue
        items = data[r["benchmark"]][1]
        if r["index"] not in items:
            raise ValueError(f"--predictions: {r['benchmark']} has no problem at index {r['index']} "
                             f"(0-based rows 0..{max(items) if items else -1})")
        it = items[r["index"]]
        correct = answer_reward(r["completion"], it["answer"], timeout=timeout)
        per.setdefault((r["benchmark"], r["mode"] or ""), {}).setdefault(r["index"], []).append(correct)
        graded.append({**r, "answer": it["answer"], "pred": extract_boxed(r["completion"]), "correct": correct})
    benches: dict[str, dict] = {}
    columns: list[float] = []
    for (b, mode), by_problem in per.items():
        n = max(len(v) for v in by_problem.values())
        col = mode or f"avg@{n}"          # no mode: the mean over the N samples given (greedy only if said so)
        problems = data[b][1]
        acc = 100.0 * sum(sum(v) / len(v) for v in by_problem.values()) / len(by_problem)
        e = benches.setdefault(data[b][0], {"problems": len(problems)})
        e[col] = round(acc, 2)
        e.setdefault("graded", {})[col] = len(by_problem)
        missing = len(problems) - len(by_problem)
        if missing:
            e.setdefault("missing", {})[col] = missing
            print(f"[swe-srl] {b} {col}: {missing} of {len(problems)} problems have no prediction (accuracy over "
                  f"the {len(by_problem)} graded)", file=sys.stderr)
        columns.append(acc)
    modes = sorted({c for e in benches.values() for c in e if c not in ("problems", "graded", "missing")},
                   key=lambda m: (m != "greedy", m))
    report = {"config": {"model": model_name or f"predictions:{path.name}", "predictions": str(path),
                         "graded_without_model": True},
              "modes": [{"mode": m} for m in modes], "benchmarks": benches,
              "mean": round(sum(columns) / len(columns), 2) if columns else 0.0,
              "sources": {b: str(locate_benchmark(b, data_dir, source)[1]) for b in names},
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with (out / "graded.jsonl").open("w", encoding="utf-8") as f:
        for g in graded:
            f.write(json.dumps(g, ensure_ascii=False) + "\n")
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    return report


def _report(config: dict, data: list[tuple[str, list[dict]]], modes: list[tuple[str, int, float]], log: SampleLog,
            stats: dict) -> dict:
    benches: dict[str, dict] = {}
    columns: list[float] = []
    for bname, items in data:
        entry: dict[str, Any] = {"problems": len(items)}
        for mode, n, temp in modes:
            per = []
            for it in items:
                got = log.rows.get((bname, it["idx"], mode), {})
                per.append(sum(float(got[s]["correct"]) for s in range(n)) / n)
            acc = 100.0 * sum(per) / len(per) if per else 0.0
            entry[mode] = round(acc, 2)
            columns.append(acc)
        benches[bname] = entry
    secs = stats["generation_seconds"]
    return {
        "config": config,
        "modes": [{"mode": m, "samples": n, "temperature": t} for m, n, t in modes],
        "benchmarks": benches,
        "mean": round(sum(columns) / len(columns), 2) if columns else 0.0,
        "throughput": {**stats, "generation_seconds": round(secs, 2),
                       "problems_per_min": round(60.0 * stats["problems_generated"] / secs, 3) if secs else None},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _markdown(report: dict) -> str:
    modes = [m["mode"] for m in report["modes"]]
    lines = [f"# Math evaluation: {report['config']['model']}", "",
             "| benchmark | problems | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for b, e in report["benchmarks"].items():
        lines.append(f"| {b} | {e['problems']} | " + " | ".join(f"{e[m]:.1f}" if m in e else "–" for m in modes)
                     + " |")
    lines += ["", f"Mean of all columns: **{report['mean']:.1f}**", ""]
    if "throughput" in report:
        t = report["throughput"]
        lines += [f"Generated this run: {t['problems_generated']} problem-modes, {t['samples_generated']} samples in "
                  f"{t['generation_seconds']} s ({t['problems_per_min']} problems/min).", ""]
    else:
        lines += [f"Graded without a model from {report['config'].get('predictions')}.", ""]
    if report.get("sources"):
        lines += ["Data: " + ", ".join(f"{b} = {src}" for b, src in report["sources"].items()), ""]
    return "\n".join(lines)
