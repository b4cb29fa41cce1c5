"""Helpers shared by the trajectory readers (standard library only)."""

from __future__ import annotations

import ast
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from swe_srl.core.toolcall import PARAM_ORDER, ToolCall, ToolCallError, from_openai
from swe_srl.core.errors import SweSrlError


class TrajectoryFormatError(SweSrlError, ValueError):
    """A file that cannot be read as a trajectory; the message is one line naming the file/field."""


KNOWN_TOOLS = frozenset(PARAM_ORDER) | {"execute_bash"}

_OBS_PREFIXES = ("OBSERVATION:\n", "OBSERVATION:", "Observation: ", "Observation:\n")


def content_text(content: Any) -> str:
    """Text of an OpenAI-style message content: a string or a list of {type: text, text} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                if p.get("type", "text") == "text" and isinstance(p.get("text"), str):
                    parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
        return "\n".join(parts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return str(content)


def loads_loose(value: Any) -> Any:
    """A field that some writers store as JSON text or as a Python repr (SWE-agent's tool_calls)."""
    if not isinstance(value, str):
        return value
    s = value.strip()
    if not s or s == "None":
        return None
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    tcs = loads_loose(message.get("tool_calls"))
    if not isinstance(tcs, list):
        return []
    return [t for t in tcs if isinstance(t, dict)]


def call_from_openai(tc: dict[str, Any], where: str) -> ToolCall:
    try:
        return from_openai(tc)
    except ToolCallError as e:
        raise TrajectoryFormatError(f"{where}: {e}") from None


def strip_obs_prefix(text: str) -> str:
    for p in _OBS_PREFIXES:
        if text.startswith(p):
            return text[len(p):]
    return text


_TAG_RES = [re.compile(rf"<{t}>\s*(.*?)\s*</{t}>", re.DOTALL) for t in ("pr_description", "issue_description", "issue")]
_ISSUE_RE = re.compile(r"ISSUE:\s*\n(.*?)(?:\n\s*INSTRUCTIONS?:|\Z)", re.DOTALL)
_CONSIDER_RE = re.compile(r"^Consider the following (?:PR|issue) description:\s*", re.IGNORECASE)


def extract_issue(task_text: str) -> str:
    """The problem statement inside an agent's instance prompt (falls back to the whole text)."""
    for rx in _TAG_RES:
        m = rx.search(task_text)
        if m and m.group(1).strip():
            return _CONSIDER_RE.sub("", m.group(1).strip()).strip()
    m = _ISSUE_RE.search(task_text)
    if m and m.group(1).strip():
        return m.group(1).strip()
    return task_text.strip()


def repo_from_instance_id(iid: str) -> str | None:
    """SWE-bench style ids: ``owner__name-1234`` -> ``owner/name``; SWE-smith ``owner__name.hash.pr_N`` too."""
    m = re.match(r"^([A-Za-z0-9_.-]+?)__([A-Za-z0-9_-]+?)(?:[-.].*)?$", iid)
    if not m:
        return None
    return f"{m.group(1)}/{m.group(2)}"


# -- resolved flags from sidecar evaluation reports ---------------------------------------------------------
def _parse_loose_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(re.sub(r",\s*([\]}])", r"\1", text))  # trailing commas (CodeR results.json)


@lru_cache(maxsize=256)
def _dir_resolution(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """(resolved ids, known-unresolved ids) from the evaluation reports found in one directory."""
    d = Path(directory)
    resolved: set[str] = set()
    unresolved: set[str] = set()
    for p in sorted(d.glob("*.json")):
        if p.name.endswith(".traj.json") or "llm_completions" in p.parts or not p.is_file() or p.stat().st_size > 20_000_000:
            continue
        try:
            obj = _parse_loose_json(p.read_text(encoding="utf-8", errors="replace"))
        except (json.JSONDecodeError, OSError):
            continue
        if not isinstance(obj, dict):
            continue
        for key in ("resolved", "ids_resolved", "resolved_ids"):
            if isinstance(obj.get(key), list):
                resolved.update(x for x in obj[key] if isinstance(x, str))
        for key in ("ids_unresolved", "unresolved_ids", "applied", "generated"):
            if isinstance(obj.get(key), list):
                unresolved.update(x for x in obj[key] if isinstance(x, str))
    for p in d.glob("*.md"):
        if "eval" not in p.name:
            continue
        section = None
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("## "):
                section = line[3:].strip().lower()
            elif line.startswith("- [") and section in ("resolved instances", "unresolved instances"):
                iid = line[3:].split("]", 1)[0]
                (resolved if section == "resolved instances" else unresolved).add(iid)
    unresolved -= resolved
    return frozenset(resolved), frozenset(unresolved)


def lookup_resolved(source: Path, instance_id: str, levels: int = 3) -> bool | None:
    """Resolved flag of an instance from evaluation reports next to the trajectory or up to ``levels`` above."""
    d = source.resolve().parent
    for _ in range(levels + 1):
        rep = d / "run_evaluation" / instance_id / "report.json"
        if rep.is_file():
            try:
                obj = json.loads(rep.read_text(encoding="utf-8"))
                if isinstance(obj, dict) and isinstance(obj.get("resolved"), bool):
                    return obj["resolved"]
                if isinstance(obj, dict) and isinstance(obj.get(instance_id), dict):
                    return bool(obj[instance_id].get("resolved"))
            except (json.JSONDecodeError, OSError):
                pass
        res, unres = _dir_resolution(str(d))
        if instance_id in res:
            return True
        if instance_id in unres:
            return False
        if d.parent == d:
            break
        d = d.parent
    return None
