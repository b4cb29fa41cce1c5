"""Math step data: solutions file -> steps.jsonl + manifest.json (through swe_srl.core.StepStore).

For an N-step solution, the paper's N−1 instances: for k = 2..N, context = problem + steps 1..k−1, target = step k
(``include_first_step=True`` adds k = 1: context = the problem alone). ``title_hint=True`` appends the next
step's title line (e.g. ``2. **Coprime Pairs**``) to the context and makes the step body (without that line)
the target (paper footnote 1); steps without a title keep their full text as the target and get no hint.
Text before the first numbered step (a preamble) is always context, never a target.

One StepStore unit = one question; the held-out validation split (``val_size`` questions, the paper's 60) and an
optional test split (``test_size`` questions, disjoint from it) are chosen by question (seeded) among the questions
that yield at least one instance, and recorded in the manifest and in every record's meta["split"] ("train" | "val" |
"test"); the trainer reads only "train". The first record of each question also carries the whole expert solution
(meta["solution"], for the outline SFT baseline and the holistic ablation) and, when the input has one (s1K-1.1's
``deepseek_thinking_trajectory``), the R1 reasoning trace (meta["reasoning_trace"], for the reasoning SFT baseline).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from swe_srl.core import SCHEMA_VERSION, StepRecord, StepStore, iter_steps, length_stats
from swe_srl.core.generation import Generator
from swe_srl.core.io import OutputLock, ResumeGuard, deferred_interrupts, file_sha256, reraise_interrupted
from swe_srl.core.store import read_ledger
from swe_srl.core.errors import NothingUsable, SweSrlError

from .decompose import MAX_CHARS, MIN_CHARS, Decomposition, decompose, rewrite_solutions
from .prompts import MATH_SRL_SYSTEM_PROMPT, step_user_message
from .reward import extract_boxed, format_answer

QUESTION_FIELDS = ("problem", "question", "prompt", "input", "query", "instruction")
# deepseek_attempt first: the paper's expert = the R1 final solution of s1K-1.1 (see docs/paper-fidelity.md)
SOLUTION_FIELDS = ("deepseek_attempt", "solution", "reference_solution", "response", "output", "completion",
                   "gemini_attempt", "answer")
ID_FIELDS = ("id", "unique_id", "idx", "problem_id", "uid")
ANSWER_FIELDS = ("answer", "final_answer", "gold", "target")
# the paper's "SFT (R1 reasoning)" trains on DeepSeek-R1's thinking trace (s1K-1.1)
REASONING_FIELDS = ("deepseek_thinking_trajectory",)


# -- input ---------------------------------------------------------------------------------------------------
class MathInputError(SweSrlError, ValueError):
    """A math input that cannot be read at all (one line: ``<file>[:<line>]: <field>: <reason>``)."""


class MathNothingUsable(MathInputError, NothingUsable):
    """No record of the input could be read (exit code 3)."""


#: skip reasons of rows that are errors of the input (errors.jsonl, on screen), not filter decisions
ERROR_REASONS = ("malformed:",)
ERRORS_FILE = "errors.jsonl"


def _jsonl_rows(path: Path, data: bytes) -> list[tuple[int, Any]]:
    """(1-based line, row) of a JSONL file; a bad line is (line, ``BadRow``) — decoded per line."""
    out: list[tuple[int, Any]] = []
    for i, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.append((i, BadRow(path, i, f"not UTF-8 text (byte {e.start})")))
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            out.append((i, BadRow(path, i, f"not valid JSON ({e.msg}, column {e.colno})")))
            continue
        out.append((i, row if isinstance(row, dict) else BadRow(path, i, f"expected a JSON object, got "
                                                                         f"{type(row).__name__}")))
    return out


class BadRow:
    """A row of the input that cannot be used: skipped as ``malformed: <file>:<line>: <reason>``, not fatal."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason

    def __str__(self) -> str:
        return f"{self.path}{'' if self.line is None else f':{self.line}'}: {self.reason}"


def read_rows(path: str | Path) -> list[tuple[int | None, Any]]:
    """(line, row) for each record of a JSON (a list of objects, or an object holding one such list), JSONL or
    parquet file; a record that is not a readable JSON object is a ``BadRow`` (the caller skips it). A file that
    cannot be read as a whole raises ``MathInputError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise MathInputError(file=path, field="--input", reason="no such file" if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(None, r) for r in pq.read_table(path).to_pylist()]
    data = path.read_bytes()
    if suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path, data)
    else:
        try:
            whole = json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            rows = _jsonl_rows(path, data)          # a .json file holding JSON lines
            if not any(not isinstance(r, BadRow) for _, r in rows):
                if isinstance(e, UnicodeDecodeError):
                    raise MathInputError(file=path, line=data[:e.start].count(b"\n") + 1, field="--input",
                                         reason="not UTF-8 text") from None
                raise MathInputError(file=path, line=e.lineno, field="--input",
                                     reason=f"not valid JSON ({e.msg}, column {e.colno})") from None
        else:
            if isinstance(whole, dict):
                lists = [v for v in whole.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
                if len(lists) != 1:
                    raise MathInputError(file=path, field="--input", reason=f"a JSON object must hold exactly one "
                                                                           f"list of records (found {len(lists)})")
                whole = lists[0]
            if not isinstance(whole, list):
                raise MathInputError(file=path, field="--input", reason="expected a list of records")
            rows = [(None, r if isinstance(r, dict) else BadRow(path, None, f"record {k}: expected a JSON object, "
                                                                            f"got {type(r).__name__}"))
                    for k, r in enumerate(whole)]
    return rows


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON / JSONL / parquet file; the first unreadable one raises ``MathInputError``."""
    rows = []
    for _, r in read_rows(path):
        if isinstance(r, BadRow):
            raise MathInputError(file=r.path, line=r.line, field="--input", reason=r.reason)
        rows.append(r)
    return rows


def _nonempty_share(rows: list[dict[str, Any]], name: str) -> float:
    sample = rows[:200]
    return sum(1 for r in sample if isinstance(r.get(name), str) and r[name].strip()) / max(1, len(sample))


def detect_fields(rows: list[dict[str, Any]], question_field: str | None = None,
                  solution_field: str | None = None) -> tuple[str, str]:
    """Pick the question and solution columns: the first candidate present and non-empty in most rows."""
    keys: set[str] = set()
    for r in rows[:200]:
        keys.update(r)

    def pick(given: str | None, cands: Iterable[str], what: str, exclude: str | None = None) -> str:
        if given:
            if given not in keys:
                raise ValueError(f"{what}_field: {given!r} is not a field of the input (fields: {sorted(keys)})")
            return given
        for c in cands:
            if c in keys and c != exclude and _nonempty_share(rows, c) >= 0.5:
                return c
        raise ValueError(f"{what}_field: could not detect it among {sorted(keys)}; pass {what}_field=")

    q = pick(question_field, QUESTION_FIELDS, "question")
    s = pick(solution_field, SOLUTION_FIELDS, "solution", exclude=q)
    return q, s


def _row_id(row: dict[str, Any], index: int) -> str:
    for f in ID_FIELDS:
        v = row.get(f)
        if v is not None and str(v).strip():
            return re.sub(r"[/\s]+", "_", str(v).strip())
    return str(index)


def _row_answer(row: dict[str, Any], solution: str, solution_field: str) -> str | None:
    for f in ANSWER_FIELDS:
        if f != solution_field and row.get(f) is not None and str(row[f]).strip():
            return format_answer(row[f])
    return extract_boxed(solution)


def is_answer_only(solution: str) -> bool:
    """A bare final answer (s1K has 375 of them): short and on one line."""
    s = solution.strip()
    return len(s) < 100 and "\n" not in s


# -- instances -----------------------------------------------------------------------------------------------
def build_records(instance_id: str, question: str, dec: Decomposition, *, title_hint: bool = False,
                  include_first_step: bool = False, meta: dict[str, Any] | None = None) -> list[StepRecord]:
    steps = dec.steps
    n = len(steps)
    pre = [dec.preamble] if dec.preamble else []
    out: list[StepRecord] = []
    for k in range(0 if include_first_step else 1, n):  # k = 0-based index of the target step
        step = steps[k]
        hint = step.hint if (title_hint and step.title and step.hint and step.body) else None
        target = step.body if hint else step.text
        user = step_user_message(question, pre + [s.text for s in steps[:k]], hint)
        m = dict(meta or {})
        m.update(source_format=dec.style, step_title=step.title, title_hint=bool(hint))
        out.append(StepRecord(instance_id=instance_id, step_index=k, num_steps=n, task="math", tool=None,
                              prompt=[{"role": "system", "content": MATH_SRL_SYSTEM_PROMPT},
                                      {"role": "user", "content": user}],
                              target=target.strip(), meta=m))
    return out


def collect_math(input_path, out_dir, *, solution_field=None, question_field=None, title_hint=False,
                 include_first_step=False, val_size=60, seed=0, resume=True, limit=None,
                 structured_only=False, min_chars=MIN_CHARS, max_chars=MAX_CHARS,
                 rewrite_generator: Generator | None = None, rewrite="none", prefix="", test_size=0) -> dict:
    """Build math SRL step data; returns the manifest written to out_dir/manifest.json.

    structured_only: drop solutions without a numbered/step structure (the paper drops non-conforming items)
    instead of using the fallback splitter. rewrite ("none" | "unstructured" | "all") with rewrite_generator
    (a ready Generator, any backend; the caller builds it): restate solutions in the App. B.3 numbered format first; a rewrite that
    fails the format check is skipped with reason "rewrite_failed"."""
    input_path = Path(input_path)
    if rewrite not in ("none", "unstructured", "all"):
        raise ValueError(f"rewrite: expected none|unstructured|all, got {rewrite!r}")
    if rewrite != "none" and rewrite_generator is None:
        raise ValueError("rewrite_generator: required when rewrite is not 'none'")
    rows = [r for _, r in read_rows(input_path)]       # unreadable rows are BadRow: skipped as malformed, counted
    if limit is not None:
        rows = rows[:limit]
    good = [r for r in rows if not isinstance(r, BadRow)]
    if not good:
        first = next((r for r in rows if isinstance(r, BadRow)), None)
        raise MathNothingUsable(file=input_path, line=first.line if first else None, field="--input",
                             reason=f"no readable record ({len(rows)} bad; first: {first.reason})" if first
                             else "no records (empty file)")
    qf, sf = detect_fields(good, question_field, solution_field)
    options = dict(question_field=qf, solution_field=sf, title_hint=bool(title_hint),
                   include_first_step=bool(include_first_step), val_size=int(val_size), seed=int(seed),
                   limit=limit, structured_only=bool(structured_only), min_chars=min_chars, max_chars=max_chars,
                   rewrite=rewrite, prefix=prefix)
    if test_size:
        options["test_size"] = int(test_size)   # only when asked: older out_dirs resume unchanged
    with OutputLock(out_dir):   # one writer per output directory (swe_srl.core.io.OutputLock)
        out = Path(out_dir)
        guard = ResumeGuard(out, "options.json", what="out_dir (or resume=False)")
        if not resume:
            guard.path.unlink(missing_ok=True)
        guard.check({**options, "input": str(input_path)})   # ResumeMismatch (a ValueError) on other inputs/options

        # 1. decompose everything (pure text processing; cheap), so the split can be drawn among usable questions
        plan: list[dict[str, Any]] = []
        seen: set[str] = set()
        to_rewrite: list[int] = []
        for i, row in enumerate(rows):
            if isinstance(row, BadRow):          # one bad row is skipped and counted, never fatal
                plan.append({"unit": f"{prefix}{i}@malformed", "row": i, "skip": f"malformed: {row}"})
                continue
            iid = prefix + _row_id(row, i)
            q, s = row.get(qf), row.get(sf)
            item: dict[str, Any] = {"unit": iid, "row": i}
            if iid in seen:
                item["skip"] = "duplicate_id"
            elif not isinstance(q, str) or not q.strip():
                item["skip"] = "missing_question"
            elif not isinstance(s, str) or not s.strip():
                item["skip"] = "missing_solution"
            elif is_answer_only(s):
                item["skip"] = "answer_only"
            else:
                item.update(question=q, solution=s, answer=_row_answer(row, s, sf))
                trace = next((row[f] for f in REASONING_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
                if trace is not None:
                    item["trace"] = trace
                dec = decompose(s, min_chars=min_chars, max_chars=max_chars)
                item["dec"] = dec
                if rewrite == "all" or (rewrite == "unstructured" and dec.style == "fallback"):
                    to_rewrite.append(len(plan))
            seen.add(iid)
            plan.append(item)
        if to_rewrite:
            done = set(read_ledger(out)) if resume else set()
            pending = [j for j in to_rewrite if plan[j]["unit"] not in done]
            texts = rewrite_solutions(rewrite_generator, [(plan[j]["question"], plan[j]["solution"]) for j in pending])
            for j, t in zip(pending, texts):
                if t is None:
                    plan[j]["skip"] = "rewrite_failed"
                else:
                    plan[j]["dec"] = decompose(t, min_chars=min_chars, max_chars=max_chars)
                    plan[j]["rewritten"] = True
                    plan[j]["solution"] = t
        need = 1 if include_first_step else 2
        for item in plan:
            if "skip" in item:
                continue
            dec = item["dec"]
            if structured_only and dec.style == "fallback":
                item["skip"] = "unstructured"
            elif len(dec.steps) < need:
                item["skip"] = "too_few_steps"
        usable = [it["unit"] for it in plan if "skip" not in it]
        n_val = max(0, min(int(val_size), len(usable) // 2))
        val = set(random.Random(seed).sample(usable, n_val)) if n_val else set()
        rest = [u for u in usable if u not in val]
        n_test = max(0, min(int(test_size), len(rest) // 2))
        test = set(random.Random(seed + 1).sample(rest, n_test)) if n_test else set()

        # 2. write, one unit per question
        with StepStore(out, resume=resume) as store:
            before = len(store.ledger)
            try:
                manifest = _manifest(input_path, options, store, plan, val, status="in_progress", test=test)
                store.write_manifest(manifest)
                for item in plan:
                    unit = item["unit"]
                    if store.is_done(unit):
                        continue
                    with deferred_interrupts():   # SIGINT/SIGTERM: this question is committed whole first
                        if "skip" in item:
                            store.skip(unit, item["skip"], row=item["row"])
                            continue
                        split = "val" if unit in val else ("test" if unit in test else "train")
                        meta = {"source": input_path.name, "row": item["row"], "split": split,
                                "answer": item["answer"], "rewritten": bool(item.get("rewritten"))}
                        recs = build_records(unit, item["question"], item["dec"], title_hint=title_hint,
                                             include_first_step=include_first_step, meta=meta)
                        if recs:
                            recs[0].meta["solution"] = item["solution"].strip()
                            if "trace" in item:
                                recs[0].meta["reasoning_trace"] = item["trace"].strip()
                        store.commit(unit, recs, style=item["dec"].style, split=split,
                                     n_solution_steps=len(item["dec"].steps))
            except KeyboardInterrupt as e:     # Interrupted (SIGINT/SIGTERM, swe_srl.core.io) or a bare Ctrl-C
                with deferred_interrupts():
                    store.write_manifest(_manifest(input_path, options, store, plan, val, status="interrupted",
                                                   test=test))
                detail = (f"{len(store.ledger) - before} questions committed by this run, {len(store.ledger)} of "
                          f"{len(plan)} in {out} (manifest status: interrupted)")
                reraise_interrupted(e, detail)
            with deferred_interrupts():
                manifest = _manifest(input_path, options, store, plan, val, status="complete", test=test)
                manifest["errors"] = write_errors_file(out, store.ledger)
                store.write_manifest(manifest)
        return manifest


def write_errors_file(out: Path, ledger: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``<out>/errors.jsonl``: the rows skipped as ``malformed`` (file, line, reason), rebuilt from the ledger."""
    entries = [e for e in ledger.values() if str(e.get("reason", "")).startswith(ERROR_REASONS)]
    tmp = out / (ERRORS_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps({"unit": e.get("unit"), "row": e.get("row"), "reason": e.get("reason")},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, out / ERRORS_FILE)
    return {"total": len(entries), "file": ERRORS_FILE}


def _manifest(input_path: Path, options: dict[str, Any], store: StepStore, plan: list[dict[str, Any]],
              val: set[str], *, status: str, test: set[str] = frozenset()) -> dict[str, Any]:
    ledger = store.ledger
    ok = [e for e in ledger.values() if e.get("status") == "ok"]
    skipped = [e for e in ledger.values() if e.get("status") == "skipped"]
    reasons = Counter("malformed" if str(e["reason"]).startswith(ERROR_REASONS) else e["reason"] for e in skipped)
    targets: list[int] = []
    prompts: list[int] = []
    split_steps: Counter[str] = Counter()
    if store.steps_path.exists() and store.steps_path.stat().st_size:
        for r in iter_steps(store.steps_path):
            targets.append(len(r.target))
            prompts.append(sum(len(m["content"]) for m in r.prompt))
            split_steps[r.meta.get("split", "train")] += 1
    return {
        "task": "math",
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "source": {"path": str(input_path), "sha256": file_sha256(input_path), "rows": len(plan)},
        "options": options,
        "system_prompt": "MATH_SRL_SYSTEM_PROMPT (math_srl.prompts)",
        "counts": {
            "rows": len(plan),
            "questions_done": len(ledger),
            "questions_ok": len(ok),
            "questions_skipped": len(skipped),
            "steps": sum(e.get("n_steps", 0) for e in ok),
            "train_steps": split_steps.get("train", 0),
            "val_steps": split_steps.get("val", 0),
            "train_questions": sum(1 for e in ok if e.get("split") == "train"),
            "val_questions": sum(1 for e in ok if e.get("split") == "val"),
            "test_steps": split_steps.get("test", 0),
            "test_questions": sum(1 for e in ok if e.get("split") == "test"),
        },
        "skipped": dict(sorted(reasons.items())),
        "skipped_examples": [{"unit": e["unit"], "reason": e["reason"]} for e in skipped[:20]],
        "styles": dict(Counter(e.get("style") for e in ok).most_common()),
        "solution_steps": length_stats(e.get("n_solution_steps", 0) for e in ok),
        "target_chars": length_stats(targets),
        "prompt_chars": length_stats(prompts),
        "split": {"val_size_requested": options["val_size"], "val_questions": sorted(val), "seed": options["seed"],
                  "test_size_requested": options.get("test_size", 0), "test_questions": sorted(test)},
        "files": {"steps": "steps.jsonl", "ledger": "ledger.jsonl"},
    }
