"""The step record: one SRL training instance = context so far -> the expert's next action.

A step record is one JSON object per line (JSONL). Schema version 1 fields:

  id              "<instance_id>/<step_index>"
  task            "swe" | "math"
  instance_id     the trajectory / problem id
  step_index      0-based index of the target action in its trajectory
  num_steps       number of actions in the whole trajectory (or steps in the solution)
  prompt          chat messages, a list of {"role": ..., "content": ...}
  target          the expert action as canonical text (what the reward compares against)
  tool            tool name of the target action ("bash", "str_replace_editor", ...) or null for math
  meta            free-form dict: source file, source format, split, anything else
  schema_version  1

This module only uses the standard library so it imports without torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from .errors import SweSrlError

SCHEMA_VERSION = 1
TASKS = ("swe", "math")
ROLES = ("system", "user", "assistant", "tool")


class StepRecordError(SweSrlError, ValueError):
    """A step record that does not follow the schema. The message names the field."""


@dataclass
class StepRecord:
    instance_id: str
    step_index: int
    num_steps: int
    prompt: list[dict[str, str]]
    target: str
    task: str = "swe"
    tool: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{self.instance_id}/{self.step_index}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # stable, readable key order
        order = ("id", "task", "instance_id", "step_index", "num_steps", "prompt", "target", "tool", "meta",
                 "schema_version")
        return {k: d[k] for k in order}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepRecord":
        validate_record(d)
        return cls(
            id=d["id"], task=d["task"], instance_id=d["instance_id"], step_index=d["step_index"],
            num_steps=d["num_steps"], prompt=d["prompt"], target=d["target"], tool=d.get("tool"),
            meta=d.get("meta") or {}, schema_version=d["schema_version"],
        )


def validate_record(d: Any) -> None:
    """Raise StepRecordError naming the first field that is wrong."""
    if not isinstance(d, dict):
        raise StepRecordError("record: expected a JSON object")
    for key, typ in (("id", str), ("task", str), ("instance_id", str), ("step_index", int), ("num_steps", int),
                     ("prompt", list), ("target", str), ("schema_version", int)):
        if key not in d:
            raise StepRecordError(f"{key}: missing")
        if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
            raise StepRecordError(f"{key}: expected {typ.__name__}, got {type(d[key]).__name__}")
    if d["schema_version"] != SCHEMA_VERSION:
        raise StepRecordError(f"schema_version: unsupported version {d['schema_version']} (this build reads "
                              f"{SCHEMA_VERSION})")
    if d["task"] not in TASKS:
        raise StepRecordError(f"task: must be one of {TASKS}, got {d['task']!r}")
    if d["step_index"] < 0 or d["num_steps"] < 1 or d["step_index"] >= d["num_steps"]:
        raise StepRecordError(f"step_index: {d['step_index']} not in [0, num_steps={d['num_steps']})")
    if not d["prompt"]:
        raise StepRecordError("prompt: empty message list")
    for i, m in enumerate(d["prompt"]):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise StepRecordError(f"prompt[{i}]: expected {{role: str, content: str}}")
        if m["role"] not in ROLES:
            raise StepRecordError(f"prompt[{i}].role: unknown role {m['role']!r}")
    if "tool" in d and d["tool"] is not None and not isinstance(d["tool"], str):
        raise StepRecordError("tool: expected str or null")
    if "meta" in d and d["meta"] is not None and not isinstance(d["meta"], dict):
        raise StepRecordError("meta: expected an object")


def iter_steps(path: str | Path, *, strict: bool = True) -> Iterator[StepRecord]:
    """Read a steps.jsonl file. strict=False skips bad lines instead of raising."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield StepRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, StepRecordError) as e:
                if strict:
                    raise StepRecordError(f"{path}:{lineno}: {e}") from None


def read_steps(path: str | Path, *, strict: bool = True) -> list[StepRecord]:
    return list(iter_steps(path, strict=strict))


def write_steps(path: str | Path, records: Iterable[StepRecord]) -> int:
    """Write (overwrite) a steps.jsonl file; returns the number of records."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for r in records:
            f.write(r.to_json() + "\n")
            n += 1
    return n
