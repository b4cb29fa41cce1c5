"""SWE-smith SFT jsonl: one row = {"instance_id", "messages"} (messages a list or a JSON string); assistant turns
carry one ``<function=…>`` XML call after free text; the next ``user`` turn is the observation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from environments.trajectory import Trajectory, TrajectoryStep
from swe_srl.core.toolcall import parse_tool_calls

from ._util import (TrajectoryFormatError, content_text, extract_issue, lookup_resolved, repo_from_instance_id,
                    strip_obs_prefix)


def looks_like_row(row: Any) -> bool:
    return isinstance(row, dict) and "messages" in row and "history" not in row and "trajectory" not in row


def read_row(path: Path, lineno: int, row: dict[str, Any], meta: dict[str, Any] | None = None) -> Trajectory:
    """One row; its own ``resolved`` column wins over evaluation reports found next to the file."""
    where = f"{path}:{lineno}"
    msgs = row.get("messages")
    if isinstance(msgs, str):
        try:
            msgs = json.loads(msgs)
        except json.JSONDecodeError as e:
            raise TrajectoryFormatError(f"{where}: messages: invalid JSON string ({e.msg})") from None
    if not isinstance(msgs, list) or not msgs:
        raise TrajectoryFormatError(f"{where}: messages: expected a non-empty list")
    iid = row.get("instance_id")
    if not isinstance(iid, str) or not iid:
        raise TrajectoryFormatError(f"{where}: instance_id: missing")
    task = ""
    excluded: dict[str, int] = {}
    steps: list[TrajectoryStep] = []
    last: TrajectoryStep | None = None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise TrajectoryFormatError(f"{where}: messages[{i}]: expected {{role, content}}")
        text = content_text(m.get("content"))
        if m["role"] == "user":
            if not task:
                task = text
            elif last is not None and last.observation is None:
                last.observation = strip_obs_prefix(text)
            last = None
        elif m["role"] == "assistant":
            calls = parse_tool_calls(text)
            last = None
            cut = text.find("<function")
            thought = text[:cut].strip() if cut >= 0 else text.strip()
            if not calls:
                excluded["message"] = excluded.get("message", 0) + 1
            for k, call in enumerate(calls):
                st = TrajectoryStep(action=call.to_text(), tool=call.name, thought=thought if k == 0 else "",
                                    raw_action=text[cut:] if k == 0 else "")
                steps.append(st)
                last = st
    if not task.strip():
        raise TrajectoryFormatError(f"{where}: messages: no user message with the task")
    flag = row.get("resolved")
    if isinstance(flag, (bool, int)) and flag in (0, 1):
        resolved: bool | None = bool(flag)
    else:
        resolved = lookup_resolved(path, iid)
    patch = row.get("patch") if isinstance(row.get("patch"), str) else None
    model = row.get("model") if isinstance(row.get("model"), str) else None
    return Trajectory(instance_id=iid, issue=extract_issue(task), steps=steps, source=where, format="swesmith_sft",
                      repo=repo_from_instance_id(iid), resolved=resolved, patch=patch,
                      system_prompt=next((content_text(m.get("content")) for m in msgs
                                          if m.get("role") == "system"), None),
                      meta={"line": lineno, "excluded_actions": excluded, "model": model, **(meta or {})})


def read(path: Path, rows: list[tuple[int, Any]]) -> Iterator[Trajectory]:
    for lineno, row in rows:
        yield read_row(path, lineno, row)
