"""Patch generation: oracle file edit, end-to-end (localize then repair), agent. Predictions are appended to
``predictions.jsonl`` (swebench format) as they are produced, with the details in ``generations.jsonl``;
a rerun skips instances already present (resume).

An infrastructure failure while preparing an instance (its image missing, the sandbox failing to start, a file
that cannot be read from the source) is NOT a prediction: it goes to ``prediction_errors.jsonl`` (and
``generations.jsonl``), the instance is graded ``error`` with that reason, and a rerun generates it again. What the
model got wrong (format violations, edits that do not apply, nothing localized, a prompt over the limit) is an
empty patch, kept on rerun."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core.errors import SweSrlError
from ..core.io import AppendLog, read_json_rows, read_log
from ..generation import Generator, SamplingParams
from .dataset import oracle_files
from .edits import answer_to_patch
from .prompts import localize_messages, parse_localization, repair_messages, split_answer
from .sources import FileSource

MODES = ("oracle", "e2e", "agent")
ERRORS_FILE = "prediction_errors.jsonl"


class PredictionWriter:
    """``predictions.jsonl`` (swebench format) and ``generations.jsonl`` (details) as ``core.io.AppendLog``s: whole
    lines, fsynced, a torn tail cut off on open. ``done`` holds the ids already in ``predictions.jsonl`` (resume);
    the details are written first, so an id is done only once both lines are on disk."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pred_path = self.dir / "predictions.jsonl"
        self.gen_path = self.dir / "generations.jsonl"
        self._preds = AppendLog(self.pred_path)
        self._gens = AppendLog(self.gen_path)
        self._gens.records.clear()             # details are never read back: keep them out of memory
        self._errs = AppendLog(self.dir / ERRORS_FILE)
        self.done: set[str] = {r["instance_id"] for r in self._preds.records if "instance_id" in r}

    def write(self, pred: dict[str, Any], details: dict[str, Any]) -> None:
        self._gens.write_lines([json.dumps({**pred, **details}, ensure_ascii=False, default=str)])
        self._preds.append(pred)
        self.done.add(pred["instance_id"])

    def write_error(self, instance_id: str, reason: str, details: dict[str, Any] | None = None) -> None:
        """An infrastructure failure of this instance's prediction step: not a prediction, retried on rerun."""
        rec = {"instance_id": instance_id, "error": reason}
        self._gens.write_lines([json.dumps({**rec, **(details or {})}, ensure_ascii=False, default=str)])
        self._errs.append({**rec, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def close(self) -> None:
        self._gens.close()
        self._preds.close()
        self._errs.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PredictionsError(SweSrlError, ValueError):
    """A predictions file that cannot be graded (one line: ``<file>[:<line>]: --predictions: <reason>``)."""


def _prediction(p: Path, line: int | None, r: Any) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise PredictionsError(file=p, line=line, field="--predictions",
                               reason=f"expected a JSON object (instance_id, model_patch), got {type(r).__name__}")
    if not isinstance(r.get("instance_id"), str) or not r["instance_id"]:
        raise PredictionsError(file=p, line=line, field="--predictions", reason="instance_id: missing or not a string")
    if not isinstance(r.get("model_patch", ""), (str, type(None))):
        raise PredictionsError(file=p, line=line, field="--predictions",
                               reason=f"model_patch: expected a string, got {type(r['model_patch']).__name__}")
    return r


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """instance_id -> prediction of a swebench predictions file (JSONL, a JSON list, or a JSON object of rows);
    every row is checked and the first bad one raises ``PredictionsError`` naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise PredictionsError(file=p, field="--predictions", reason="no such file" if not p.exists() else "not a file")
    out: dict[str, dict[str, Any]] = {}
    for line, value in read_json_rows(p, error=PredictionsError, field="--predictions"):
        rows = [value]
        if line is None:            # a .json document: a list of rows or an object of rows
            rows = list(value.values()) if isinstance(value, dict) else value
            if not isinstance(rows, list):
                raise PredictionsError(file=p, field="--predictions", reason="expected a JSON list or object of rows")
        for r in rows:
            r = _prediction(p, line, r)
            out[r["instance_id"]] = r
    return out


def read_prediction_errors(out_dir: str | Path) -> dict[str, str]:
    """instance_id -> the reason of its last prediction-step infrastructure failure (``prediction_errors.jsonl``)."""
    return {r["instance_id"]: r["error"] for r in read_log(Path(out_dir) / ERRORS_FILE)}


def _pred(inst: dict[str, Any], model_name: str, patch: str) -> dict[str, Any]:
    return {"instance_id": inst["instance_id"], "model_name_or_path": model_name, "model_patch": patch}


def _batches(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), max(1, n)):
        yield items[i:i + n]


def repair_from_completion(completion: str, files: dict[str, str]) -> dict[str, Any]:
    answer, violation = split_answer(completion)
    if answer is None:
        return {"model_patch": "", "reason": f"format:{violation}", "notes": []}
    pr = answer_to_patch(answer, files)
    return {"model_patch": pr.patch, "reason": pr.reason, "notes": pr.notes, "n_edits": pr.edits}


def generate_single_turn(instances: list[dict[str, Any]], generator: Generator, source: FileSource, *,
                         mode: str, writer: PredictionWriter, model_name: str, params: SamplingParams,
                         batch_size: int = 8, top_n: int = 3, max_prompt_chars: int | None = 240_000,
                         log: Callable[[str], None] = lambda s: None) -> None:
    todo = [i for i in instances if i["instance_id"] not in writer.done]
    for batch in _batches(todo, batch_size):
        t0 = time.time()
        ready: list[tuple[dict[str, Any], dict[str, str], dict[str, Any]]] = []
        for inst in batch:
            det: dict[str, Any] = {"mode": mode}
            try:
                if mode == "oracle":
                    paths = oracle_files(inst)
                else:
                    file_list = source.list_files(inst)
                    msgs = localize_messages(inst, file_list, n=top_n)
                    loc = generator.generate([msgs], params)[0][0]
                    answer, violation = split_answer(loc)
                    paths = parse_localization(answer, file_list, n=top_n) if answer else []
                    det.update(localization=loc, localization_violation=violation)
                det["files"] = paths
                files = source.read(inst, paths) if paths else {}
            except Exception as e:               # the files could not be read: infrastructure, not the model
                reason = f"source_error: {type(e).__name__}: {str(e)[:300]}"
                writer.write_error(inst["instance_id"], reason, det)
                log(f"{inst['instance_id']}: error ({reason})")
                continue
            if not paths:                        # nothing localized (e2e) / no modified .py file (oracle)
                writer.write(_pred(inst, model_name, ""), {**det, "reason": "no_files"})
                log(f"{inst['instance_id']}: empty patch (no_files)")
                continue
            msgs = repair_messages(inst, files)
            if max_prompt_chars and len(msgs[0]["content"]) > max_prompt_chars:
                writer.write(_pred(inst, model_name, ""), {**det, "reason": "prompt_too_long",
                                                           "prompt_chars": len(msgs[0]["content"])})
                log(f"{inst['instance_id']}: empty patch (prompt_too_long)")
                continue
            ready.append((inst, files, {**det, "messages": msgs}))
        if not ready:
            continue
        outs = generator.generate([d["messages"] for _, _, d in ready], params)
        secs = (time.time() - t0) / len(ready)
        for (inst, files, det), comps in zip(ready, outs):
            comp = comps[0]
            r = repair_from_completion(comp, files)
            det.pop("messages")
            writer.write(_pred(inst, model_name, r["model_patch"]),
                         {**det, **{k: v for k, v in r.items() if k != "model_patch"}, "completion": comp,
                          "seconds": round(secs, 2)})
            log(f"{inst['instance_id']}: {'patch' if r['model_patch'] else 'empty patch'}"
                f"{'' if not r.get('reason') else ' (' + str(r['reason']) + ')'}")
