"""Math benchmark evaluation: greedy accuracy and Avg@k (temperature sampling), resumable.

Data: ``<data_dir>/<name>/test.jsonl`` (default data_dir: $SWE_SRL_MATH_DATA, else ../shared/data/math_eval next to
the repository), or any .jsonl path given as a benchmark. Each row needs a problem (``problem`` or ``question``)
and an answer (``answer``; when absent, the last ``\\boxed{}`` of ``solution`` — Minerva Math's layout).

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
import time
from pathlib import Path
from typing import Any

from swe_srl.core.generation import Generator, SamplingParams
from swe_srl.core.io import AppendLog, ResumeGuard, write_json_atomic

from .prompts import MATH_EVAL_SYSTEM_PROMPT
from .reward import answer_reward, extract_boxed, format_answer

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math_eval"


def default_data_dir() -> Path:
    return Path(os.environ.get("SWE_SRL_MATH_DATA", DEFAULT_DATA_DIR))


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> tuple[str, list[dict]]:
    """(benchmark name, [{idx, problem, answer}]) from a folder name under data_dir or a .jsonl path."""
    p = Path(name)
    if p.suffix == ".jsonl" and p.exists():
        path, bname = p, (p.parent.name if p.stem == "test" else p.stem)
    else:
        root = Path(data_dir) if data_dir else default_data_dir()
        path = next((c for c in (root / name / "test.jsonl", root / f"{name}.jsonl") if c.exists()), None)
        if path is None:
            raise FileNotFoundError(f"benchmark {name!r}: no {root / name / 'test.jsonl'} nor {root / name}.jsonl")
        bname = name
    items: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            problem = row.get("problem") or row.get("question")
            answer = row.get("answer")
            if answer is None or (isinstance(answer, str) and not answer.strip()):
                answer = extract_boxed(row.get("solution") or "")
            if not problem or answer is None:
                raise ValueError(f"{path}:{i + 1}: needs a problem/question and an answer (or a boxed solution)")
            items.append({"idx": i, "problem": problem, "answer": format_answer(answer)})
            if limit is not None and len(items) >= limit:
                break
    return bname, items


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
                  max_new_tokens=2048, batch_size=8, timeout=5.0, seed=0) -> dict:
    """Evaluate ``generator`` (a ready Generator) on math benchmarks; returns the report (also written to
    out_dir/report.json and report.md). ``model_name`` (default: ``generator.name``) is recorded in config.json,
    so that samples of two models never share an out_dir. ``batch_size`` problems go to one generate() call
    (at least 256 with the vLLM backend)."""
    if not greedy and not avg:
        raise ValueError("greedy/avg: at least one of them must be on")
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
    ResumeGuard(out, "config.json", what="out_dir").check(config)

    data = [load_benchmark(b, data_dir, limit) for b in benchmarks]
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
                            rows.append({"benchmark": bname, "idx": it["idx"], "mode": mode, "sample": s,
                                         "temperature": temp, "answer": it["answer"], "pred": pred,
                                         "correct": answer_reward(comp, it["answer"], timeout=timeout),
                                         "completion": comp})
                    log.append(rows)
                    stats["problems_generated"] += len(part)
                    stats["samples_generated"] += len(rows)
        report = _report(config, data, modes, log, stats)
    finally:
        log.close()
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
        lines.append(f"| {b} | {e['problems']} | " + " | ".join(f"{e[m]:.1f}" for m in modes) + " |")
    lines += ["", f"Mean of all columns: **{report['mean']:.1f}**", "",
              f"Generated this run: {report['throughput']['problems_generated']} problem-modes, "
              f"{report['throughput']['samples_generated']} samples in {report['throughput']['generation_seconds']} s "
              f"({report['throughput']['problems_per_min']} problems/min).", ""]
    return "\n".join(lines)
