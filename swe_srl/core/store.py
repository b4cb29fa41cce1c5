"""Resumable, crash-safe step dataset writer shared by every collector (SWE and math).

Layout of an output directory:

  steps.jsonl     step records (see schema.py), appended one unit (trajectory / problem) at a time
  ledger.jsonl    one line per finished unit: {"unit", "status": "ok"|"skipped", "n_steps", "end", ...}
  manifest.json   written atomically by the collector at the end (and on every resume)

Crash safety: a unit's records are written with one write() + fsync, then its ledger line is appended + fsync.
The ledger line carries the byte size of steps.jsonl after the unit ("end"). On open, steps.jsonl is
truncated to the last committed "end", so records of a unit that was interrupted (even by kill -9 between
the two writes) are dropped and that unit is redone; nothing committed is ever lost or duplicated.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Iterable

from .io import AppendLog, read_log, write_json_atomic
from .schema import StepRecord

STEPS_FILE = "steps.jsonl"
LEDGER_FILE = "ledger.jsonl"
MANIFEST_FILE = "manifest.json"


class StepStore:
    def __init__(self, out_dir: str | Path, *, resume: bool = True) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.steps_path = self.dir / STEPS_FILE
        self.ledger_path = self.dir / LEDGER_FILE
        if not resume:
            for p in (self.steps_path, self.ledger_path, self.dir / MANIFEST_FILE):
                p.unlink(missing_ok=True)
        self._ledger = AppendLog(self.ledger_path)
        self.ledger: dict[str, dict[str, Any]] = {e["unit"]: e for e in self._ledger.records}
        self._end = max((int(e.get("end", 0)) for e in self._ledger.records), default=0)
        self._truncate_steps()
        self._steps_f = self.steps_path.open("ab")

    # -- recovery -------------------------------------------------------------------------------------
    def _truncate_steps(self) -> None:
        """Cut steps.jsonl back to the last committed unit (records of an interrupted unit are dropped)."""
        if not self.steps_path.exists():
            self._end = 0
            return
        size = self.steps_path.stat().st_size
        if size > self._end:
            with self.steps_path.open("r+b") as f:
                f.truncate(self._end)
        elif size < self._end:
            raise RuntimeError(f"{self.steps_path}: shorter than its ledger says ({size} < {self._end} bytes); "
                               f"the directory was modified by hand — collect into a fresh --out")

    # -- API --------------------------------------------------------------------------------------------
    def is_done(self, unit: str) -> bool:
        return unit in self.ledger

    def commit(self, unit: str, records: Iterable[StepRecord], **info: Any) -> int:
        """Append all records of one unit atomically and mark the unit finished."""
        lines = [r.to_json() for r in records]
        data = "".join(x + "\n" for x in lines).encode("utf-8")
        if data:
            self._steps_f.write(data)
            self._steps_f.flush()
            os.fsync(self._steps_f.fileno())
        self._end += len(data)
        self._append_ledger({"unit": unit, "status": "ok", "n_steps": len(lines), "end": self._end, **info})
        return len(lines)

    def skip(self, unit: str, reason: str, **info: Any) -> None:
        """Mark a unit as finished without records (bad input, filtered out, ...)."""
        self._append_ledger({"unit": unit, "status": "skipped", "reason": reason, "n_steps": 0, "end": self._end,
                             **info})

    def _append_ledger(self, entry: dict[str, Any]) -> None:
        self._ledger.append(entry)
        self.ledger[entry["unit"]] = entry

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        return write_json_atomic(self.dir / MANIFEST_FILE, manifest)

    def close(self) -> None:
        self._steps_f.close()
        self._ledger.close()

    def __enter__(self) -> "StepStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_ledger(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """unit -> its last ledger entry, read-only (for manifests and resume checks of a collect directory)."""
    return {e["unit"]: e for e in read_log(Path(out_dir) / LEDGER_FILE) if isinstance(e, dict) and "unit" in e}


def length_stats(values: Iterable[float]) -> dict[str, float]:
    """count / mean / p50 / p90 / p99 / max of a list of lengths (for manifests)."""
    xs = sorted(values)
    if not xs:
        return {"count": 0}

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

    return {"count": len(xs), "mean": round(statistics.fmean(xs), 2), "min": xs[0], "p50": q(0.5), "p90": q(0.9),
            "p99": q(0.99), "max": xs[-1]}
