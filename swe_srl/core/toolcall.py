"""Canonical tool-call text, shared by expert targets and model outputs.

Canonical form (the SWE-agent / SWE-smith XML function-calling form):

    <function=NAME>
    <parameter=KEY>VALUE</parameter>
    ...
    </function>

Rules (applied identically to expert actions and to model outputs before scoring):
- tool names go through TOOL_ALIASES (e.g. OpenHands' ``execute_bash`` -> ``bash``);
- parameters come in the fixed order of PARAM_ORDER for that tool, unknown ones after, sorted by name;
- "scalar" parameters (paths, sub-commands, line numbers, a bash command) are stripped of surrounding
  whitespace; text-block parameters (file_text, old_str, new_str) lose at most ONE leading and ONE trailing
  newline (the XML layout newline), every other character is kept since whitespace is meaningful there;
- non-string JSON values: lists/dicts are dumped as compact JSON with ", " separators, numbers/bools as text;
- parameters whose value is null/None are dropped.

Parsing: a parameter's value runs to the first ``</parameter>`` that is followed (after optional whitespace) by the
next ``<parameter=…>`` or by the call's ``</function>``; so a value may itself contain ``</parameter>``,
``<parameter=…>``, ``<function=…>`` or ``</function>`` (a shell heredoc, a file about tool calls) and round-trips.
The one text a value cannot contain is ``</parameter>`` immediately followed by ``<parameter=…>`` or ``</function>``
(there the call's own layout is the only reading; the XML form has no escaping).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from .errors import SweSrlError

TOOL_ALIASES: dict[str, str] = {
    "execute_bash": "bash",
    "run_bash": "bash",
    "shell": "bash",
}

PARAM_ORDER: dict[str, tuple[str, ...]] = {
    "bash": ("command",),
    "str_replace_editor": ("command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range"),
    "submit": (),
    "finish": ("message",),
    "think": ("thought",),
    # SWE-agent 0.x ACI commands (one tool per command; see environments.tools.aci)
    "open": ("path", "line_number"),
    "goto": ("line_number",),
    "scroll_up": (),
    "scroll_down": (),
    "search_dir": ("search_term", "dir"),
    "search_file": ("search_term", "file"),
    "find_file": ("file_name", "dir"),
    "create": ("filename",),
    "edit": ("start_line", "end_line", "replacement_text"),
}

TEXT_BLOCK_PARAMS = frozenset({"file_text", "old_str", "new_str", "content", "message", "thought", "replacement_text"})

_FUNC_OPEN_RE = re.compile(r"<function\s*=", re.DOTALL)
_FUNC_TAG_RE = re.compile(r"<function\s*=\s*([^>\s]+)\s*>")
_PARAM_TAG_RE = re.compile(r"\s*<parameter\s*=\s*([^>\s]+)\s*>")
_FUNC_CLOSE_RE = re.compile(r"\s*</function\s*>")
# the end of a value: a </parameter> that the call's layout continues after (next parameter or </function>)
_PARAM_END_RE = re.compile(r"</parameter\s*>(?=\s*(?:<parameter\s*=\s*[^>\s]+\s*>|</function\s*>))")
_NEXT_TAG_RE = re.compile(r"<parameter\s*=\s*[^>\s]+\s*>|</function\s*>")


def _scan_call(text: str, start: int, strict: bool) -> tuple[str, list[tuple[str, str]], int] | None:
    """The call whose ``<function=…>`` tag is at ``start``: (name, [(key, value)], end index), or None when it is
    unterminated or (strict) holds text outside its parameters."""
    m = _FUNC_TAG_RE.match(text, start)
    if m is None:
        return None
    name, pos = m.group(1), m.end()
    params: list[tuple[str, str]] = []
    while True:
        close = _FUNC_CLOSE_RE.match(text, pos)
        if close:
            return name, params, close.end()
        tag = _PARAM_TAG_RE.match(text, pos)
        if tag is None:
            if strict:
                return None
            nxt = _NEXT_TAG_RE.search(text, pos)       # tolerant: skip text between parameters
            if nxt is None:
                return None
            pos = nxt.start()
            continue
        end = _PARAM_END_RE.search(text, tag.end())
        if end is None:
            return None
        params.append((tag.group(1), text[tag.end():end.start()]))
        pos = end.end()


class ToolCallError(SweSrlError, ValueError):
    pass


def canonical_tool_name(name: str) -> str:
    name = name.strip()
    return TOOL_ALIASES.get(name, name)


def _value_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if key in TEXT_BLOCK_PARAMS:
        if text.startswith("\r\n"):
            text = text[2:]
        elif text.startswith("\n"):
            text = text[1:]
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        return text
    return text.strip()


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, name: str, arguments: Mapping[str, Any] | None = None) -> "ToolCall":
        """Normalize name and argument values (see module doc) and order the arguments."""
        name = canonical_tool_name(name)
        args = {str(k).strip(): _value_text(str(k).strip(), v) for k, v in (arguments or {}).items() if v is not None}
        order = PARAM_ORDER.get(name, ())
        known = [k for k in order if k in args]
        extra = sorted(k for k in args if k not in order)
        return cls(name, {k: args[k] for k in known + extra})

    def to_text(self) -> str:
        parts = [f"<function={self.name}>"]
        parts += [f"<parameter={k}>{v}</parameter>" for k, v in self.arguments.items()]
        parts.append("</function>")
        return "\n".join(parts)

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


def parse_tool_calls(text: str) -> list[ToolCall]:
    """All XML calls in ``text`` (tolerant of whitespace inside tags and of text between parameters)."""
    calls = []
    pos = 0
    while True:
        m = _FUNC_TAG_RE.search(text, pos)
        if m is None:
            return calls
        got = _scan_call(text, m.start(), strict=False)
        if got is None:
            pos = m.end()
            continue
        name, params, pos = got
        calls.append(ToolCall.make(name, dict(params)))


def parse_single_tool_call(text: str) -> ToolCall:
    """Exactly one XML call and nothing but whitespace around it; raises ToolCallError with the reason."""
    first = _FUNC_TAG_RE.search(text)
    if first is None:
        raise ToolCallError("malformed_tool_call" if _FUNC_OPEN_RE.search(text) else "no_tool_call")
    got = _scan_call(text, first.start(), strict=True)
    if got is None:
        raise ToolCallError("malformed_tool_call")
    name, params, end = got
    rest = text[end:]
    nxt = _FUNC_TAG_RE.search(rest)
    if nxt is not None:
        raise ToolCallError("multiple_tool_calls" if _scan_call(rest, nxt.start(), strict=False) else
                            "malformed_tool_call")
    if text[:first.start()].strip() or rest.strip():
        raise ToolCallError("text_outside_tool_call")
    keys = [k for k, _ in params]
    if len(set(keys)) != len(keys):
        raise ToolCallError("duplicate_parameter")
    return ToolCall.make(name, dict(params))


def from_openai(tool_call: Mapping[str, Any]) -> ToolCall:
    """OpenAI-style tool call: {"function": {"name", "arguments": JSON string or dict}} or {"name", "arguments"}."""
    fn = tool_call.get("function", tool_call)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ToolCallError("tool_call.function.name: missing")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        args = args.strip()
        try:
            args = json.loads(args) if args else {}
        except json.JSONDecodeError as e:
            raise ToolCallError(f"tool_call.function.arguments: invalid JSON ({e.msg})") from None
    if not isinstance(args, dict):
        raise ToolCallError("tool_call.function.arguments: expected an object")
    return ToolCall.make(name, args)


def from_shell(command: str) -> ToolCall:
    return ToolCall.make("bash", {"command": command})


def canonicalize_action(text: str) -> str:
    """Canonical text of an action: one XML call -> canonical XML; an OpenAI JSON call -> canonical XML;
    anything else (math steps, prose) -> the text stripped of surrounding whitespace."""
    stripped = text.strip()
    if "<function" in stripped:
        try:
            return parse_single_tool_call(stripped).to_text()
        except ToolCallError:
            return stripped
    if stripped.startswith("{") and '"name"' in stripped:
        try:
            obj = json.loads(stripped)
            if isinstance(obj, dict):
                return from_openai(obj).to_text()
        except (json.JSONDecodeError, ToolCallError):
            pass
    return stripped


def looks_like_tool_call(text: str) -> bool:
    return bool(_FUNC_OPEN_RE.search(text))
