"""The SWE step prompt: system prompt (tools + output format), the issue, then the expert's previous actions
(assistant turns, action only) each followed by its observation (user turn).

``build_messages`` is shared by ``swe-srl collect`` (training prompts) and the SWE evaluation's agent mode, so
a model is evaluated on exactly the prompt layout it was trained on.

``SYSTEM_PROMPT`` documents every tool of every supported agent (the evaluation's default). The collector uses
``system_prompt_for_trajectory``: the same header, but only the tools this trajectory's format offers (plus any
tool it used that the format table does not name, documented from the row's ``tools`` schema or the agent's own
command list), and the format's shell semantics (a fresh subshell per command for mini-swe-agent, one persistent
shell for SWE-agent / OpenHands).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

SYSTEM_PROMPT = """\
You are a software engineering agent working in a code repository to resolve an issue. You act one step at a \
time: at each turn you see the issue, your previous actions and their outputs, and you choose the next action.

# Output format
First think privately inside <think>...</think>. Then write exactly ONE tool call and nothing after it:

<think>
your reasoning
</think>
<function=TOOL_NAME>
<parameter=PARAM_NAME>value</parameter>
</function>

Parameters are written in the order listed below; omit optional parameters you do not use.

# Tools
- bash: run a shell command in the repository.
    <parameter=command> the command line (required)
- str_replace_editor: view, create and edit files.
    <parameter=command> one of view, create, str_replace, insert, undo_edit (required)
    <parameter=path> absolute path of a file or directory (required)
    <parameter=file_text> content of the file to create (create)
    <parameter=old_str> exact text to replace, must be unique in the file (str_replace)
    <parameter=new_str> replacement text (str_replace) or text to insert (insert)
    <parameter=insert_line> insert new_str after this line number (insert)
    <parameter=view_range> [start, end] line range to view (view, optional)
- open: open a file in the windowed viewer.  <parameter=path> (required)  <parameter=line_number> (optional)
- goto: move the viewer window to a line.  <parameter=line_number> (required)
- scroll_up / scroll_down: move the viewer window by one window (no parameters)
- search_dir: search for a term in all files of a directory.  <parameter=search_term> <parameter=dir> (optional)
- search_file: search for a term in a file (default: the open file).  <parameter=search_term> <parameter=file> (optional)
- find_file: find files by name.  <parameter=file_name> <parameter=dir> (optional)
- create: create and open an empty file.  <parameter=filename>
- edit: replace lines start_line..end_line (inclusive) of the open file.
    <parameter=start_line> <parameter=end_line> <parameter=replacement_text>
- submit: submit the current changes as the final patch (no parameters)
- finish: end the task.  <parameter=message> a short summary

# Example
<think>
I should look at the module named in the traceback first.
</think>
<function=str_replace_editor>
<parameter=command>view</parameter>
<parameter=path>/testbed/src/pkg/module.py</parameter>
</function>
"""

_HEADER, _rest = SYSTEM_PROMPT.split("# Tools\n", 1)
_EXAMPLE_SRE = _rest[_rest.index("# Example"):]
_EXAMPLE_BASH = """# Example
<think>
I should look at the module named in the traceback first.
</think>
<function=bash>
<parameter=command>sed -n '1,80p' /testbed/src/pkg/module.py</parameter>
</function>
"""

#: one documentation entry per tool (the lines of SYSTEM_PROMPT, scroll_up/scroll_down split)
TOOL_DOCS: dict[str, str] = {
    "bash": "- bash: run a shell command in the repository.\n    <parameter=command> the command line (required)",
    "str_replace_editor": _rest[_rest.index("- str_replace_editor"):_rest.index("- open:")].rstrip("\n"),
    "open": "- open: open a file in the windowed viewer.  <parameter=path> (required)  <parameter=line_number> "
            "(optional)",
    "goto": "- goto: move the viewer window to a line.  <parameter=line_number> (required)",
    "scroll_up": "- scroll_up: move the viewer window up by one window (no parameters)",
    "scroll_down": "- scroll_down: move the viewer window down by one window (no parameters)",
    "search_dir": "- search_dir: search for a term in all files of a directory.  <parameter=search_term> "
                  "<parameter=dir> (optional)",
    "search_file": "- search_file: search for a term in a file (default: the open file).  <parameter=search_term> "
                   "<parameter=file> (optional)",
    "find_file": "- find_file: find files by name.  <parameter=file_name> <parameter=dir> (optional)",
    "create": "- create: create and open an empty file.  <parameter=filename>",
    "edit": "- edit: replace lines start_line..end_line (inclusive) of the open file.\n"
            "    <parameter=start_line> <parameter=end_line> <parameter=replacement_text>",
    "submit": "- submit: submit the current changes as the final patch (no parameters)",
    "finish": "- finish: end the task.  <parameter=message> a short summary",
}
ACI_TOOLS = ("open", "goto", "scroll_up", "scroll_down", "search_dir", "search_file", "find_file", "create", "edit")
SHELL_PERSISTENT = ("# Shell\nbash commands run in one persistent shell session: the working directory and "
                    "environment variables carry over from one command to the next.")
SHELL_FRESH = ("# Shell\nEvery bash command runs in a fresh subshell: `cd` and environment variables do NOT carry "
               "over to the next command, so chain what belongs together in one command "
               "(e.g. `cd /testbed && python -m pytest tests/test_x.py`).")
#: format -> (tools it offers, shell semantics); None tools = taken from the row's tools column / the actions
FORMAT_PROFILES: dict[str, tuple[tuple[str, ...] | None, str | None]] = {
    "sweagent_0x": (("bash", *ACI_TOOLS, "submit"), SHELL_PERSISTENT),
    "sweagent_text": (("bash", *ACI_TOOLS, "submit"), SHELL_PERSISTENT),
    "sweagent_1x": (("bash", "str_replace_editor", "submit"), SHELL_PERSISTENT),
    "swesmith_sft": (("bash", "str_replace_editor", "submit"), SHELL_PERSISTENT),
    "swesmith_ticks": (("bash", "str_replace_editor", "submit"), SHELL_PERSISTENT),
    "minisweagent": (("bash", "submit"), SHELL_FRESH),
    "openhands_completions": (("bash", "str_replace_editor", "finish"), SHELL_PERSISTENT),
    "openhands_output": (("bash", "str_replace_editor", "finish"), SHELL_PERSISTENT),
    "openhands_text": (("bash", "str_replace_editor", "finish"), SHELL_PERSISTENT),
    "r2egym": (("bash", "str_replace_editor", "search", "finish"), None),
    "chat_tools": (None, None),
    "moatless": (None, None),
}
_TOOL_ORDER = {t: i for i, t in enumerate(TOOL_DOCS)}


def _other_tool_doc(name: str, schema: dict[str, Any] | None, params: Sequence[str]) -> str:
    desc = (schema or {}).get("description") or "a tool of this agent"
    names = list((schema or {}).get("params") or params)
    req = set((schema or {}).get("required") or ())
    ps = "  ".join(f"<parameter={p}>" + (" (required)" if p in req else "") for p in names)
    return f"- {name}: {desc.rstrip('.')}." + (f"  {ps}" if ps else " (no parameters)")


@lru_cache(maxsize=256)
def system_prompt_for(tools: tuple[str, ...], shell: str | None = None,
                      others: tuple[tuple[str, str], ...] = ()) -> str:
    """The system prompt documenting ``tools`` only (known ones from TOOL_DOCS, others from ``others`` =
    ((name, doc line), ...)), then the shell semantics."""
    other = dict(others)
    known = sorted((t for t in tools if t in TOOL_DOCS), key=_TOOL_ORDER.__getitem__)
    lines = [TOOL_DOCS[t] for t in known] + [other.get(t) or _other_tool_doc(t, None, ()) for t in tools
                                             if t not in TOOL_DOCS]
    example = _EXAMPLE_SRE if "str_replace_editor" in tools else _EXAMPLE_BASH
    parts = [_HEADER + "# Tools\n" + "\n".join(lines) + "\n"]
    if shell:
        parts.append(shell + "\n")
    parts.append(example)
    return "\n".join(parts)


def system_prompt_for_trajectory(traj: Any) -> str:
    """The system prompt of one trajectory's steps: its format's tools (or the row's tools schema), every tool it
    actually used, and its format's shell semantics."""
    fmt = getattr(traj, "format", "")
    base, shell = FORMAT_PROFILES.get(fmt, (None, None))
    meta = getattr(traj, "meta", {}) or {}
    tools: list[str] = list(base or meta.get("tools_available") or ())
    params: dict[str, list[str]] = {}
    for st in traj.steps:
        if st.tool and st.tool not in tools:
            tools.append(st.tool)
        if st.tool and st.tool not in TOOL_DOCS and st.tool not in params:
            params[st.tool] = _params_of(st.action)
    if not tools:
        tools = ["bash"]
    schemas = meta.get("tool_schemas") or {}
    documented = meta.get("documented_commands") or {}
    others = []
    for t in tools:
        if t in TOOL_DOCS:
            continue
        sch = schemas.get(t) or ({"description": "a command of this agent", "params": documented[t]}
                                 if t in documented else None)
        others.append((t, _other_tool_doc(t, sch, params.get(t, ()))))
    return system_prompt_for(tuple(tools), shell, tuple(others))


def _params_of(action: str) -> list[str]:
    out = []
    for line in action.split("\n"):
        if line.startswith("<parameter="):
            name = line[len("<parameter="):].split(">", 1)[0]
            if name not in out:
                out.append(name)
    return out


ISSUE_TEMPLATE = "Resolve the following issue in the repository.\n\n<issue>\n{issue}\n</issue>"
OMITTED_NOTE = "\n\n[{n} earlier action/observation round(s) omitted]"
NO_OUTPUT = "[no output]"
NOT_RECORDED = "[no observation recorded]"
TRUNC_MARKER = "\n[... {n} {unit} truncated ...]\n"


def truncate_middle_chars(text: str, max_chars: int) -> str:
    """Head + tail of ``text`` with an explicit marker when longer than ``max_chars`` (marker not counted)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    head = max_chars // 2
    tail = max_chars - head
    cut = len(text) - head - tail
    return text[:head] + TRUNC_MARKER.format(n=cut, unit="chars") + (text[-tail:] if tail else "")


def truncate_middle_tokens(text: str, max_tokens: int, tokenizer: Any) -> str:
    """Token version of truncate_middle_chars (needs a tokenizer with encode/decode)."""
    if max_tokens is None or len(text) <= max_tokens:  # a token has at least one char
        return text
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    head = max_tokens // 2
    tail = max_tokens - head
    cut = len(ids) - head - tail
    return (tokenizer.decode(ids[:head]) + TRUNC_MARKER.format(n=cut, unit="tokens")
            + (tokenizer.decode(ids[-tail:]) if tail else ""))


def observation_text(obs: str | None, *, obs_max_chars: int | None = None, obs_max_tokens: int | None = None,
                     tokenizer: Any = None) -> str:
    if obs is None:
        return NOT_RECORDED
    if not obs.strip():
        return NO_OUTPUT
    if obs_max_chars is not None:
        obs = truncate_middle_chars(obs, obs_max_chars)
    if obs_max_tokens is not None:
        if tokenizer is None:
            raise ValueError("obs_max_tokens: needs a tokenizer")
        obs = truncate_middle_tokens(obs, obs_max_tokens, tokenizer)
    return obs


def build_messages(issue: str, history: Sequence[tuple[str, str | None]], *, history_k: int | None = None,
                   obs_max_chars: int | None = None, obs_max_tokens: int | None = None,
                   tokenizer: Any = None, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Chat messages for the next action.

    history: the previous (canonical action, observation) rounds in order; ``history_k`` keeps only the last K
    rounds (None = all; 0 = none) and notes how many were omitted; observations are truncated head + tail with
    an explicit marker (``obs_max_chars`` and/or ``obs_max_tokens``).
    """
    if history_k is not None and history_k < 0:
        raise ValueError(f"history_k: must be >= 0 or None, got {history_k}")
    rounds = list(history)
    omitted = 0
    if history_k is not None and len(rounds) > history_k:
        omitted = len(rounds) - history_k
        rounds = rounds[omitted:] if history_k else []
    user = ISSUE_TEMPLATE.format(issue=issue.strip())
    if omitted:
        user += OMITTED_NOTE.format(n=omitted)
    msgs = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
    for action, obs in rounds:
        msgs.append({"role": "assistant", "content": action})
        msgs.append({"role": "user", "content": observation_text(obs, obs_max_chars=obs_max_chars,
                                                                 obs_max_tokens=obs_max_tokens,
                                                                 tokenizer=tokenizer)})
    return msgs
