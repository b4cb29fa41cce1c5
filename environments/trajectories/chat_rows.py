"""Dataset rows of chat messages -> Trajectory: one generic reader for OpenAI-style chat rows and small adapters
where a dataset really differs.

Row formats (``detect_row`` picks one from the columns / message protocol; ``--format`` forces one):

  chat_tools      OpenAI chat with assistant ``tool_calls`` (arguments a JSON string or an object) and ``tool`` role
                  observations (matched by ``tool_call_id``, SWE-agent's ``tool_call_ids``, else in order); an
                  optional ``tools`` schema column. SWE-Gym OpenHands, nebius SWE-rebench-openhands, nvidia SWE-Zero /
                  SWE-Hero / Open-SWE-Traces, CoderForge, the SWE-smith ``tool`` split.
  swesmith_sft    ``<function=…>`` XML calls in the assistant text (SWE-smith ``xml`` split; see swesmith.py).
  openhands_text  OpenHands' non-native function calling: ``<function=execute_bash>`` text calls, observations
                  ``EXECUTION RESULT of [tool]:`` (SWE-Play); the in-context example before the task is cut off.
  r2egym          R2E-Gym: ``<function=file_editor|execute_bash|search|finish>`` text calls, observations
                  ``Execution output of [tool]:``; ``file_editor`` is R2E-Gym's copy of str_replace_editor.
  swesmith_ticks  SWE-agent thought + one fenced command block, 1.x commands (SWE-smith ``ticks`` split).
  sweagent_text   SWE-agent thought + one fenced command block, 0.x ACI commands (nebius SWE-agent-trajectories,
                  roles system/user/ai, ``text`` / ``system_prompt`` fields).
  minisweagent    mini-swe-agent text protocol rows: ``THOUGHT`` + one ```` ```bash ```` block, observations
                  ``<returncode>…`` (Kwai-Klear mini_swe_agent_plus, AlienKevin SWE-ZERO, mini-coder).
  moatless        SWE-Gym MoatlessTools search/identify loop: each assistant reply (a JSON object) is one action of
                  the step kind its system prompt names (``search`` / ``identify`` / ``decide``).

Tool names: ``execute_bash`` -> ``bash`` (swe_srl.core alias), ``str_replace_editor``, ``finish``/``submit`` kept,
``think`` is not an action (its text joins the next action's thought, counted under ``excluded_actions``); any other
tool keeps its own name. Assistant turns without an action are counted as ``message``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from environments.trajectory import Trajectory, TrajectoryStep
from swe_srl.core.toolcall import ToolCall, ToolCallError, canonical_tool_name, from_openai, parse_tool_calls

from ._util import TrajectoryFormatError, content_text, extract_issue, loads_loose, repo_from_instance_id
from .aci import documented_commands, parse_sweagent_action
from .minisweagent import _BASH_BLOCK, _canonical as _mini_canonical
from .sweagent import AUTO_EXITS, ROLE_PROTOCOL

ROW_FORMATS = ("chat_tools", "swesmith_sft", "openhands_text", "r2egym", "swesmith_ticks", "sweagent_text",
               "minisweagent", "moatless")
MESSAGE_KEYS = ("messages", "trajectory", "conversations", "conversation")
_ROLE = {"ai": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant", "chatbot": "assistant",
         "human": "user", "function": "tool", "observation": "tool", "ipython": "tool", "environment": "tool"}
_ID_KEYS = ("instance_id", "task_id", "instance", "problem_id", "id")
_MODEL_KEYS = ("model", "model_name", "agent_model", "run_id", "exp_name")
_PATCH_KEYS = ("patch", "model_patch", "generated_patch", "submission", "git_patch")
R2E_TOOL_MAP = {"file_editor": "str_replace_editor"}
_OBS_PREFIX_RE = re.compile(r"^(?:OBSERVATION:[ \t]*\n?|Observation: ?\n?|EXECUTION RESULT of \[[^\]\n]*\]:\n?|"
                            r"Execution output of \[[^\]\n]*\]:\n?)")
_FENCE_RE = re.compile(r"^```[^\n`]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_EXAMPLE_END = "--------------------- END OF EXAMPLE ---------------------"
_NEW_TASK_RE = re.compile(r"-{5,} NEW TASK DESCRIPTION -{5,}\n?")


# -- messages --------------------------------------------------------------------------------------------------
def messages_of(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """(column, messages) of a row whose messages are a list of {role|from, ...} objects."""
    for k in MESSAGE_KEYS:
        v = row.get(k)
        if isinstance(v, str) and v[:1] == "[":
            v = loads_loose(v)
        if isinstance(v, list) and v and isinstance(v[0], dict) and ("role" in v[0] or "from" in v[0]):
            return k, v
    return None


def _norm(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise TrajectoryFormatError(f"{where}: expected a message object, got {type(m).__name__}")
    role = m.get("role", m.get("from"))
    if not isinstance(role, str):
        raise TrajectoryFormatError(f"{where}: message without a role")
    role = _ROLE.get(role, role)
    if "content" in m:
        text = content_text(m.get("content"))
    elif "text" in m:
        text = content_text(m.get("text"))
    else:
        text = content_text(m.get("value"))
    if role == "system" and not text and isinstance(m.get("system_prompt"), str):
        text = m["system_prompt"]
    tcs = loads_loose(m.get("tool_calls"))
    tcs = [t for t in tcs if isinstance(t, dict)] if isinstance(tcs, list) else []
    ids = loads_loose(m.get("tool_call_ids"))
    ids = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
    if isinstance(m.get("tool_call_id"), str) and m["tool_call_id"] not in ("", "None"):
        ids = [m["tool_call_id"], *ids]
    return {"role": role, "text": text, "tool_calls": tcs, "ids": ids}


def _strip_obs(text: str) -> str:
    m = _OBS_PREFIX_RE.match(text)
    return text[m.end():] if m else text


def _task_text(text: str) -> str:
    """The task part of a first user message (an OpenHands in-context example before it is cut off)."""
    if _EXAMPLE_END in text:
        text = text.split(_EXAMPLE_END, 1)[1]
        m = _NEW_TASK_RE.search(text)
        if m:
            text = text[m.end():]
    return text


# -- detection -------------------------------------------------------------------------------------------------
def detect_row(row: Any) -> str | None:
    """Row format of a decoded dataset row (None: not a chat-trajectory row)."""
    if not isinstance(row, dict) or "history" in row:
        return None
    found = messages_of(row)
    if found is None:
        return None
    msgs = found[1]
    roles = [_ROLE.get(str(m.get("role", m.get("from"))), m.get("role", m.get("from"))) for m in msgs
             if isinstance(m, dict)]
    asst = [m for m, r in zip(msgs, roles) if r == "assistant"]
    if any(loads_loose(m.get("tool_calls")) for m in asst):
        return "chat_tools"
    texts = [content_text(m.get("content", m.get("text", m.get("value")))) for m in asst]
    others = [content_text(m.get("content", m.get("text", m.get("value")))) for m, r in zip(msgs, roles)
              if r in ("user", "tool")]
    system = next((content_text(m.get("content")) or str(m.get("system_prompt") or "") for m, r in zip(msgs, roles)
                   if r == "system"), "")
    if any(t.lstrip().startswith("{") and '"scratch_pad"' in t for t in texts) or "<file_context>" in system:
        return "moatless"
    tf = str(row.get("trajectory_format") or "")
    if tf.startswith("mini-swe-agent") or any(o.startswith("<returncode>") for o in others) or (
            "bash code block" in system and any("```bash" in t for t in texts)):
        return "minisweagent"
    if any("<function=" in t for t in texts):
        if any(o.startswith("Execution output of [") for o in others) or any("<function=file_editor>" in t
                                                                             for t in texts):
            return "r2egym"
        if system.startswith("You are OpenHands agent") or any(o.startswith("EXECUTION RESULT of [") for o in others):
            return "openhands_text"
        return "swesmith_sft"
    if any("```" in t for t in texts):
        return "swesmith_ticks" if "str_replace_editor" in system else "sweagent_text"
    return None


# -- row fields ------------------------------------------------------------------------------------------------
def _first_str(row: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = row.get(k)
        if isinstance(v, str) and v.strip():
            return v
    return None


def row_fields(row: dict[str, Any]) -> dict[str, Any]:
    tr = row.get("test_result") if isinstance(row.get("test_result"), dict) else {}
    patch = _first_str(row, _PATCH_KEYS) or (tr.get("git_patch") if isinstance(tr.get("git_patch"), str) else None)
    return {"instance_id": _first_str(row, _ID_KEYS), "repo": _first_str(row, ("repo",)),
            "base_commit": _first_str(row, ("base_commit", "environment_setup_commit")),
            "patch": patch, "model": _first_str(row, _MODEL_KEYS)}


def tool_schemas(tools: Any) -> dict[str, dict[str, Any]]:
    """{canonical tool name: {description, params, required}} of an OpenAI ``tools`` column."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(tools, list):
        return out
    for t in tools:
        if not isinstance(t, dict):
            continue
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        desc = fn.get("description") if isinstance(fn.get("description"), str) else ""
        out[canonical_tool_name(fn["name"])] = {
            "description": desc.strip().split("\n", 1)[0][:300],
            "params": [k for k, v in props.items() if v is not None],
            "required": [r for r in (params.get("required") or []) if isinstance(r, str)]}
    return out


# -- readers ---------------------------------------------------------------------------------------------------
class _Builder:
    """Accumulates steps and non-actions of one row."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.steps: list[TrajectoryStep] = []
        self.excluded: dict[str, int] = {}
        self.carry = ""
        self.by_id: dict[str, TrajectoryStep] = {}
        self.open: list[TrajectoryStep] = []      # steps waiting for their observation, in order

    def exclude(self, kind: str, thought: str = "") -> None:
        self.excluded[kind] = self.excluded.get(kind, 0) + 1
        if thought:
            self.carry = "\n\n".join(x for x in (self.carry, thought) if x)

    def add(self, call: ToolCall, thought: str, raw: str, call_id: Any = None, meta: dict | None = None
            ) -> TrajectoryStep:
        if self.carry:
            thought = "\n\n".join(x for x in (self.carry, thought) if x)
            self.carry = ""
        st = TrajectoryStep(action=call.to_text(), tool=call.name, thought=thought, raw_action=raw,
                            meta=meta or {})
        self.steps.append(st)
        self.open.append(st)
        if isinstance(call_id, str) and call_id:
            self.by_id[call_id] = st
        return st

    def observe(self, text: str, ids: list[str] = ()) -> bool:
        """Give an observation to the step it answers (by id, else the oldest open step)."""
        st = None
        for i in ids:
            st = self.by_id.pop(i, None)
            if st is not None:
                break
        if st is None:
            st = next((s for s in self.open if s.observation is None), None)
        if st is None:
            return False
        st.observation = _strip_obs(text)
        self.open = [s for s in self.open if s is not st and s.observation is None]
        return True

    def close_all(self) -> None:
        self.open = []


def _openai_call(tc: dict[str, Any], where: str, tool_map: dict[str, str]) -> ToolCall:
    try:
        call = from_openai(tc)
    except ToolCallError as e:
        raise TrajectoryFormatError(f"{where}: {e}") from None
    return _mapped(call, tool_map)


def _mapped(call: ToolCall, tool_map: dict[str, str]) -> ToolCall:
    """Dataset-specific tool names -> canonical ones; the mini-swe-agent submit echo -> submit."""
    if call.name in tool_map:
        call = ToolCall.make(tool_map[call.name], call.arguments)
    if call.name == "bash":
        if "command" not in call.arguments and "cmd" in call.arguments:      # R2E-Gym's execute_bash(cmd)
            args = dict(call.arguments)
            args["command"] = args.pop("cmd")
            call = ToolCall.make("bash", args)
        sub = _mini_canonical(call.arguments.get("command", ""))
        if sub.name == "submit":
            return sub
    return call


def _read_chat_tools(msgs: list[dict[str, Any]], b: _Builder) -> None:
    for i, m in enumerate(msgs):
        role, text = m["role"], m["text"]
        if role == "assistant":
            if m["tool_calls"]:
                b.close_all()
                for k, tc in enumerate(m["tool_calls"]):
                    call = _openai_call(tc, f"{b.where}: messages[{i}].tool_calls[{k}]", {})
                    thought = text.strip() if k == 0 else ""
                    if call.name == "think":
                        b.exclude("think", "\n\n".join(x for x in (thought, call.arguments.get("thought", "")) if x))
                        st = TrajectoryStep(action="", tool="think")
                        if isinstance(tc.get("id"), str):
                            b.by_id[tc["id"]] = st
                        b.open.append(st)
                        continue
                    fn = tc.get("function", tc)
                    raw = fn.get("arguments", "") if isinstance(fn, dict) else ""
                    b.add(call, thought, raw if isinstance(raw, str) else json.dumps(raw), tc.get("id"))
            elif "<function=" in text:
                _xml_calls(text, b, {})
            else:
                b.exclude("message", text.strip())
        elif role == "tool":
            b.observe(text, m["ids"])
        # user turns after the task (nudges such as "Please continue") are not observations of a tool call
    b.steps = [s for s in b.steps if s.tool != "think"]


def _parse_text_calls(text: str) -> list[ToolCall]:
    """XML calls of an assistant text; a last call cut at the stop sequence (OpenHands stops generation at
    ``</function``, so the closing tags of the final call are often missing) is closed first."""
    calls = parse_tool_calls(text)
    last = text.rfind("<function=")
    if last >= 0 and "</function>" not in text[last:]:
        tail = text[last:]
        if tail.count("<parameter=") > tail.count("</parameter>"):
            tail += "</parameter>"
        calls = parse_tool_calls(text[:last]) + parse_tool_calls(tail + "\n</function>")
    return calls


def _xml_calls(text: str, b: _Builder, tool_map: dict[str, str]) -> int:
    calls = _parse_text_calls(text)
    if not calls:
        b.exclude("message", text.strip())
        return 0
    b.close_all()
    cut = text.find("<function")
    thought = text[:cut].strip()
    for k, call in enumerate(calls):
        call = _mapped(call, tool_map)
        if call.name == "think":
            b.exclude("think", "\n\n".join(x for x in (thought, call.arguments.get("thought", "")) if x))
            continue
        b.add(call, thought if k == 0 else "", text[cut:] if k == 0 else "")
    return len(calls)


def _read_xml(msgs: list[dict[str, Any]], b: _Builder, tool_map: dict[str, str]) -> None:
    for m in msgs[1:]:
        if m["role"] == "assistant":
            _xml_calls(m["text"], b, tool_map)
        elif m["role"] in ("user", "tool"):
            b.observe(m["text"], m["ids"])
            b.close_all()


def _read_fenced(msgs: list[dict[str, Any]], b: _Builder, extra: dict[str, tuple[str, ...]]) -> None:
    for m in msgs[1:]:
        if m["role"] == "assistant":
            blocks = _FENCE_RE.findall(m["text"])
            b.close_all()
            if not blocks:
                b.exclude("message", m["text"].strip())
                continue
            action = blocks[-1]
            head = action.strip().split(None, 1)[0] if action.strip() else ""
            thought = m["text"][: m["text"].find("```")].strip()
            if head in ROLE_PROTOCOL or head in AUTO_EXITS or not head:
                b.exclude(head or "<empty>", thought)
                continue
            call = parse_sweagent_action(action, extra_commands=extra)
            b.add(call, thought, action)
        elif m["role"] in ("user", "tool"):
            b.observe(m["text"], m["ids"])
            b.close_all()


def _read_mini(msgs: list[dict[str, Any]], b: _Builder) -> None:
    for m in msgs[1:]:
        if m["role"] == "assistant":
            b.close_all()
            blocks = _BASH_BLOCK.findall(m["text"])
            if not blocks:
                if "<function=" in m["text"]:
                    _xml_calls(m["text"], b, {})
                else:
                    b.exclude("message", m["text"].strip())
                continue
            call = _mini_canonical(blocks[0])
            b.add(call, m["text"][: m["text"].find("```")].strip(), blocks[0],
                  meta={"extra_blocks": len(blocks) - 1} if len(blocks) > 1 else None)
        elif m["role"] in ("user", "tool"):
            b.observe(m["text"], m["ids"])
            b.close_all()


def _moatless_kind(system: str) -> str:
    s = system.lower()
    if "identify the relevant code spans" in s:
        return "identify"
    if "locate the code relevant" in s or "search_requests" in s:
        return "search"
    if "decide" in s:
        return "decide"
    return "moatless_step"


def _read_moatless(msgs: list[dict[str, Any]], b: _Builder) -> None:
    kind = "moatless_step"
    for m in msgs:
        if m["role"] == "system":
            kind = _moatless_kind(m["text"])
        elif m["role"] == "assistant":
            b.close_all()
            text = m["text"].strip()
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                obj = None
            args = obj if isinstance(obj, dict) else {"reply": text}
            b.add(ToolCall.make(kind, args), str(args.get("scratch_pad") or "") if obj else "", text,
                  meta={} if obj else {"invalid_json": True})
        elif m["role"] == "user" and b.open:
            b.observe(m["text"])
            b.close_all()


def read_row(row: dict[str, Any], where: str, fmt: str, *, source: str, meta: dict[str, Any] | None = None
             ) -> Trajectory:
    """One decoded dataset row of row format ``fmt`` -> Trajectory (``where`` names the row in errors)."""
    found = messages_of(row)
    if found is None:
        raise TrajectoryFormatError(f"{where}: no messages column ({', '.join(MESSAGE_KEYS)}) with chat messages")
    col, raw_msgs = found
    msgs = [_norm(m, f"{where}: {col}[{i}]") for i, m in enumerate(raw_msgs)]
    f = row_fields(row)
    iid = f["instance_id"]
    if not iid:
        raise TrajectoryFormatError(f"{where}: instance_id: missing (looked for {', '.join(_ID_KEYS)})")
    system = next((m["text"] for m in msgs if m["role"] == "system"), None)
    first_user = next((m["text"] for m in msgs if m["role"] == "user" and m["text"].strip()), "")
    if not first_user.strip():
        raise TrajectoryFormatError(f"{where}: {col}: no user message with the task")
    b = _Builder(where)
    extra: dict[str, tuple[str, ...]] = {}
    # the conversation after the task message
    start = next(i for i, m in enumerate(msgs) if m["role"] == "user" and m["text"].strip())
    rest = msgs[start:]
    if fmt == "chat_tools":
        _read_chat_tools(rest, b)
    elif fmt in ("openhands_text", "swesmith_sft"):
        _read_xml(rest, b, {})
    elif fmt == "r2egym":
        _read_xml(rest, b, R2E_TOOL_MAP)
    elif fmt in ("swesmith_ticks", "sweagent_text"):
        extra = documented_commands(system or "")
        _read_fenced(rest, b, extra)
    elif fmt == "minisweagent":
        _read_mini(rest, b)
    elif fmt == "moatless":
        _read_moatless(msgs, b)
    else:
        raise TrajectoryFormatError(f"{where}: unknown row format {fmt!r}")
    m_out: dict[str, Any] = {"excluded_actions": b.excluded, "messages_column": col, "model": f["model"],
                             **(meta or {})}
    schemas = tool_schemas(row.get("tools"))
    if schemas:
        m_out["tools_available"] = [n for n in schemas if n != "think"]
        m_out["tool_schemas"] = {n: s for n, s in schemas.items() if n not in _KNOWN_DOC_TOOLS}
    if extra:
        m_out["documented_commands"] = {k: list(v) for k, v in extra.items()}
    if isinstance(row.get("exit_status"), str):
        m_out["exit_status"] = row["exit_status"]
    return Trajectory(instance_id=iid, issue=extract_issue(_task_text(first_user)), steps=b.steps, source=source,
                      format=fmt, repo=f["repo"] or repo_from_instance_id(iid), base_commit=f["base_commit"],
                      patch=f["patch"], system_prompt=system, meta=m_out)


#: tools documented by environments.prompting itself (a schema column adds nothing for them)
_KNOWN_DOC_TOOLS = frozenset({"bash", "str_replace_editor", "submit", "finish", "think", "open", "goto", "scroll_up",
                              "scroll_down", "search_dir", "search_file", "find_file", "create", "edit"})
