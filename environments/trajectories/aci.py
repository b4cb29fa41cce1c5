"""SWE-agent action strings -> canonical tool calls.

0.x ACI commands get one tool each (open, goto, scroll_up, scroll_down, search_dir, search_file, find_file,
create, edit, submit); ``edit N:M`` blocks end with ``end_of_edit``. 1.x ``str_replace_editor`` command lines
(``str_replace_editor view /p --view_range 1 5``) are parsed into the tool's parameters. Anything else is a
shell command -> ``bash``.
"""

from __future__ import annotations

import re
import shlex

from swe_srl.core.toolcall import ToolCall, from_shell

_EDIT_RE = re.compile(r"^edit\s+(\d+)\s*:\s*(\d+)\s*\n(.*?)(?:\n?end_of_edit\s*)?$", re.DOTALL)

# command -> (positional param names, min args, max args)
_ACI_ARGS: dict[str, tuple[tuple[str, ...], int]] = {
    "open": (("path", "line_number"), 1),
    "goto": (("line_number",), 1),
    "scroll_up": ((), 0),
    "scroll_down": ((), 0),
    "search_dir": (("search_term", "dir"), 1),
    "search_file": (("search_term", "file"), 1),
    "find_file": (("file_name", "dir"), 1),
    "create": (("filename",), 1),
    "submit": ((), 0),
}

_SRE_FLAGS = ("file_text", "old_str", "new_str", "insert_line", "view_range")


def _split(text: str) -> list[str] | None:
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return None


def parse_str_replace_editor(text: str) -> ToolCall | None:
    """``str_replace_editor <command> <path> [--flag value...]`` -> ToolCall, None if it does not parse."""
    parts = _split(text)
    if not parts or parts[0] != "str_replace_editor" or len(parts) < 3:
        return None
    params: dict[str, str] = {"command": parts[1], "path": parts[2]}
    i = 3
    while i < len(parts):
        flag = parts[i]
        if not flag.startswith("--") or flag[2:] not in _SRE_FLAGS:
            return None
        key = flag[2:]
        vals = []
        i += 1
        while i < len(parts) and not (parts[i].startswith("--") and parts[i][2:] in _SRE_FLAGS):
            vals.append(parts[i])
            i += 1
        if key == "view_range":
            if not vals or not all(re.fullmatch(r"-?\d+", v) for v in vals):
                return None
            params[key] = "[" + ", ".join(vals) + "]"
        else:
            params[key] = " ".join(vals)
    return ToolCall.make("str_replace_editor", params)


_DOC_LINE_RE = re.compile(r"^([A-Za-z_][\w-]*)((?:\s+\[?<[^>\n]+>\]?)*)\s+-\s", re.MULTILINE)
_DOC_SIG_RE = re.compile(r"^\s*signature:\s*([A-Za-z_][\w-]*)((?:\s+\[?<[^>\n]+>\]?)*)", re.MULTILINE)
_ARG_RE = re.compile(r"<([^>\n]+)>")


def documented_commands(system_prompt: str) -> dict[str, tuple[str, ...]]:
    """Commands an SWE-agent 0.x system prompt documents beyond the built-in ACI (e.g. CodeR's ``rover_search_*``):
    {name: parameter names from the signature}. Read from ``COMMANDS:`` lines (``name <a> [<b>] - doc``) and
    ``signature: name <a>`` entries."""
    out: dict[str, tuple[str, ...]] = {}
    if "COMMANDS:" not in system_prompt and "signature:" not in system_prompt:
        return out
    for rx in (_DOC_LINE_RE, _DOC_SIG_RE):
        for m in rx.finditer(system_prompt):
            name = m.group(1)
            if name in _ACI_ARGS or name in ("edit", "str_replace_editor", "bash") or name in out:
                continue
            out[name] = tuple(re.sub(r"\W+", "_", a).strip("_") or f"arg{i}"
                              for i, a in enumerate(_ARG_RE.findall(m.group(2))))
    return out


def _documented_call(head: str, stripped: str, names: tuple[str, ...]) -> ToolCall | None:
    parts = _split(stripped)
    if parts is None or "\n" in stripped:
        return None
    args = parts[1:]
    if not names:
        return ToolCall.make(head, {"args": " ".join(args)} if args else {})
    if len(args) > len(names):       # the last parameter takes the rest (free text such as a code snippet)
        args = args[:len(names) - 1] + [" ".join(args[len(names) - 1:])]
    return ToolCall.make(head, dict(zip(names, args)))


def parse_sweagent_action(text: str, extra_commands: dict[str, tuple[str, ...]] | None = None) -> ToolCall:
    """Canonical call of one SWE-agent action string (0.x ACI or 1.x command line).

    ``extra_commands``: commands the trajectory's own system prompt documents (``documented_commands``), e.g.
    CodeR's ``rover_search_class <project_path> <class_name>``; they become tools of their own name. Without it
    an unknown command is a shell command (``bash``)."""
    action = text.strip("\n").rstrip()
    stripped = action.strip()
    if not stripped:
        return from_shell("")
    head = stripped.split(None, 1)[0]
    if head == "edit":
        m = _EDIT_RE.match(stripped)
        if m:
            return ToolCall.make("edit", {"start_line": m.group(1), "end_line": m.group(2),
                                          "replacement_text": m.group(3)})
        return from_shell(stripped)
    if head == "str_replace_editor":
        call = parse_str_replace_editor(stripped)
        return call if call is not None else from_shell(stripped)
    if head in _ACI_ARGS and "\n" not in stripped:
        names, min_args = _ACI_ARGS[head]
        parts = _split(stripped)
        if parts is not None:
            args = parts[1:]
            if head in ("search_dir", "search_file", "find_file") and len(args) > len(names):
                return from_shell(stripped)
            if min_args <= len(args) <= len(names):
                return ToolCall.make(head, dict(zip(names, args)))
    if extra_commands and head in extra_commands:
        call = _documented_call(head, stripped, extra_commands[head])
        if call is not None:
            return call
    return from_shell(stripped)
