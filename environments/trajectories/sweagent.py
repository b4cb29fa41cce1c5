"""SWE-agent ``.traj`` (0.x ACI text commands incl. CodeR's multi-role runs; 1.x tools / function calling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from environments.trajectory import Trajectory, TrajectoryStep
from swe_srl.core.toolcall import PARAM_ORDER

from ._util import (TrajectoryFormatError, call_from_openai, content_text, extract_issue, loads_loose,
                    lookup_resolved, repo_from_instance_id, tool_calls_of)
from .aci import documented_commands, parse_sweagent_action

#: CodeR multi-agent protocol: the Manager's ``plan`` hands work to roles; roles end with ``succeed``/``fail``.
ROLE_PROTOCOL = frozenset({"plan", "succeed", "fail"})
#: Actions SWE-agent writes itself when it stops a run (cost/context limits, errors), not model decisions.
AUTO_EXITS = frozenset({"exit_cost", "exit_context", "exit_error", "exit_format", "exit_api", "exit_forfeit",
                        "exit_command", "exit_total_execution_time"})


def looks_like(obj: Any) -> bool:
    return isinstance(obj, dict) and (isinstance(obj.get("trajectory"), list) or (
        isinstance(obj.get("history"), list) and "messages" not in obj and "info" in obj or
        isinstance(obj.get("history"), list) and obj.get("history") and isinstance(obj["history"][0], dict)
        and "role" in obj["history"][0] and "message_type" in obj["history"][0]))


def _head(action: str) -> str:
    s = action.strip()
    return s.split(None, 1)[0] if s else ""


def _history_actions(history: list[Any]) -> list[dict[str, Any]]:
    return [h for h in history if isinstance(h, dict) and h.get("role") == "assistant" and "action" in h
            and str(h.get("is_demo", "")).lower() != "true"]


def _first_task(history: list[Any]) -> str:
    for h in history:
        if isinstance(h, dict) and h.get("role") == "user" and str(h.get("is_demo", "")).lower() != "true":
            text = content_text(loads_loose(h.get("content")) if isinstance(h.get("content"), str)
                                and h["content"].startswith("[{") else h.get("content"))
            if text.strip():
                return text
    return ""


def _steps_from_history_only(history: list[Any], where: str) -> list[dict[str, Any]]:
    """Old demonstration files without ``trajectory``: rebuild (action, observation, thought) from messages."""
    out: list[dict[str, Any]] = []
    for i, h in enumerate(history):
        if not (isinstance(h, dict) and h.get("role") == "assistant" and "action" in h):
            continue
        obs = None
        for nxt in history[i + 1:]:
            if isinstance(nxt, dict) and nxt.get("role") in ("user", "tool"):
                obs = content_text(loads_loose(nxt.get("content")) if str(nxt.get("content", "")).startswith("[{")
                                   else nxt.get("content"))
                break
            if isinstance(nxt, dict) and nxt.get("role") == "assistant":
                break
        out.append({"action": h.get("action", ""), "thought": h.get("thought", h.get("content", "")),
                    "observation": obs, "response": h.get("content", "")})
    if not out:
        raise TrajectoryFormatError(f"{where}: no 'trajectory' and no assistant actions in 'history'")
    return out


def read(path: Path, obj: dict[str, Any]) -> Iterator[Trajectory]:
    where = str(path)
    traj = obj.get("trajectory")
    history = obj.get("history") if isinstance(obj.get("history"), list) else []
    info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
    if traj is None or (isinstance(traj, list) and not traj):
        if not history:
            raise TrajectoryFormatError(f"{where}: 'trajectory' is empty and there is no 'history'")
        raw_steps = _steps_from_history_only(history, where)
    elif not isinstance(traj, list):
        raise TrajectoryFormatError(f"{where}: 'trajectory' must be a list, got {type(traj).__name__}")
    else:
        raw_steps = traj
    hist_actions = _history_actions(history)
    function_calling = any(tool_calls_of(h) for h in hist_actions)
    v1 = function_calling or "swe_agent_version" in info or "replay_config" in obj or any(
        _head(str(s.get("action", ""))) == "str_replace_editor" for s in raw_steps if isinstance(s, dict))
    fmt = "sweagent_1x" if v1 else "sweagent_0x"

    # instance id: replay config / agent name / file name
    rc = loads_loose(obj.get("replay_config")) if obj.get("replay_config") else None
    exec_meta: dict[str, Any] = {}   # recorded execution settings (replay: environments.replay.execution_spec)
    iid = None
    image = None
    base_commit = None
    if isinstance(rc, dict):
        agent = rc.get("agent") if isinstance(rc.get("agent"), dict) else {}
        env = rc.get("env") if isinstance(rc.get("env"), dict) else {}
        iid = agent.get("name") if isinstance(agent.get("name"), str) else None
        dep = env.get("deployment") if isinstance(env.get("deployment"), dict) else {}
        image = dep.get("image") if isinstance(dep.get("image"), str) else None
        repo_cfg = env.get("repo") if isinstance(env.get("repo"), dict) else {}
        tools_cfg = agent.get("tools") if isinstance(agent.get("tools"), dict) else {}
        if isinstance(tools_cfg.get("env_variables"), dict):
            exec_meta["exec_env"] = {str(k): str(v) for k, v in tools_cfg["env_variables"].items()}
        t = tools_cfg.get("execution_timeout")
        if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0:
            exec_meta["exec_timeout"] = float(t)
        base_commit = repo_cfg.get("base_commit") if isinstance(repo_cfg.get("base_commit"), str) else None
    name = path.name
    file_iid = name[:-len(".traj")] if name.endswith(".traj") else path.stem
    if not iid or iid == "main":
        iid = file_iid

    task_text = _first_task(history)
    # commands the run's own system prompts document beyond the ACI (CodeR's rover_search_*): tools of their own
    extra: dict[str, tuple[str, ...]] = {}
    for h in history:
        if isinstance(h, dict) and h.get("role") == "system":
            for k, v in documented_commands(content_text(h.get("content"))).items():
                extra.setdefault(k, v)
    steps: list[TrajectoryStep] = []
    excluded: dict[str, int] = {}
    hp = 0  # pointer into history assistant actions, to pair steps with recorded tool calls
    role = None
    roles_seen: list[str] = []
    for i, s in enumerate(raw_steps):
        if not isinstance(s, dict):
            raise TrajectoryFormatError(f"{where}: trajectory[{i}] must be an object")
        action = s.get("action")
        if not isinstance(action, str):
            raise TrajectoryFormatError(f"{where}: trajectory[{i}].action missing or not a string")
        # pair with the history message that recorded this action
        hmsg = None
        for j in range(hp, len(hist_actions)):
            if str(hist_actions[j].get("action", "")).strip() == action.strip():
                hmsg, hp = hist_actions[j], j + 1
                break
        if hmsg is not None and hmsg.get("agent"):
            role = str(hmsg["agent"])
            if role not in roles_seen:
                roles_seen.append(role)
        head = _head(action)
        if head in ROLE_PROTOCOL or head in AUTO_EXITS or not action.strip():
            key = head or "<empty>"
            excluded[key] = excluded.get(key, 0) + 1
            continue
        call = None
        if hmsg is not None:
            tcs = tool_calls_of(hmsg)
            if len(tcs) == 1:
                fn = tcs[0].get("function", tcs[0])
                if isinstance(fn, dict) and fn.get("name") in PARAM_ORDER:
                    call = call_from_openai(tcs[0], f"{where}: history tool_calls of trajectory[{i}]")
        if call is None:
            call = parse_sweagent_action(action, extra_commands=extra)
        obs = s.get("observation")
        meta: dict[str, Any] = {}
        if role and role != "main":
            meta["role"] = role
        query = s.get("query", s.get("messages"))
        if query is not None:
            query = loads_loose(query)
            if isinstance(query, list):
                meta["query"] = query  # the exact model input of the expert at this step (not written to steps)
        steps.append(TrajectoryStep(action=call.to_text(), tool=call.name, thought=str(s.get("thought") or ""),
                                    observation=obs if isinstance(obs, str) else None, raw_action=action,
                                    meta=meta))
    if not task_text:
        q = next((st.meta["query"] for st in steps if "query" in st.meta), None)
        if q:
            task_text = next((content_text(m.get("content")) for m in q if isinstance(m, dict)
                              and m.get("role") == "user"), "")
    if not task_text:
        raise TrajectoryFormatError(f"{where}: no task/issue text (no user message in 'history')")
    # issue from the expert's exact first query when recorded (1.x), else from history
    first_q = next((st.meta["query"] for st in steps if "query" in st.meta), None)
    if first_q:
        qtask = next((content_text(m.get("content")) for m in first_q if isinstance(m, dict)
                      and m.get("role") == "user" and str(m.get("is_demo", "")).lower() != "true"), "")
        if qtask.strip():
            task_text = qtask
    patch = info.get("submission") if isinstance(info.get("submission"), str) else None
    meta: dict[str, Any] = {"excluded_actions": excluded, "exit_status": info.get("exit_status"),
                            "function_calling": function_calling, "has_query": first_q is not None}
    if extra:
        meta["documented_commands"] = {k: list(v) for k, v in extra.items()}
    if roles_seen and roles_seen != ["main"]:
        meta["roles"] = roles_seen
    if image:
        meta["image"] = image
    meta.update(exec_meta)
    system_prompt = next((content_text(h.get("content")) for h in history if isinstance(h, dict)
                          and h.get("role") == "system"), None)
    yield Trajectory(instance_id=iid, issue=extract_issue(task_text), steps=steps, source=where, format=fmt,
                     repo=repo_from_instance_id(iid), base_commit=base_commit, patch=patch,
                     resolved=lookup_resolved(path, iid), system_prompt=system_prompt, meta=meta)
