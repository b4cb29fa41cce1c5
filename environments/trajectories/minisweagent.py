"""mini-swe-agent ``.traj.json``: {info, messages, trajectory_format, instance_id}.

Actions are either OpenAI tool calls (``bash``) on assistant messages (mini-swe-agent >= 2) or one
```` ```bash ```` block in the assistant text (1.x text mode). Observations are the following ``tool``/``user``
message (``<returncode>…</returncode><output>…</output>``). The submit convention
``echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT …`` (or ``MINI_SWE_AGENT_FINAL_OUTPUT``) becomes ``submit``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from environments.trajectory import Trajectory, TrajectoryStep
from swe_srl.core.toolcall import ToolCall, from_shell

from ._util import (TrajectoryFormatError, call_from_openai, content_text, extract_issue, lookup_resolved,
                    repo_from_instance_id, tool_calls_of)

_BASH_BLOCK = re.compile(r"```(?:bash|sh)\s*\n(.*?)\n?```", re.DOTALL)
SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")


def looks_like(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        return False
    tf = str(obj.get("trajectory_format", ""))
    info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
    return tf.startswith("mini-swe-agent") or "mini_version" in info


def _is_submit(cmd: str) -> bool:
    s = cmd.lstrip()
    return s.startswith("echo") and any(m in s.split("\n", 1)[0] for m in SUBMIT_MARKERS)


def _canonical(cmd: str) -> ToolCall:
    return ToolCall.make("submit", {}) if _is_submit(cmd) else from_shell(cmd)


def read(path: Path, obj: dict[str, Any]) -> Iterator[Trajectory]:
    where = str(path)
    msgs = obj["messages"]
    info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
    iid = obj.get("instance_id")
    if not isinstance(iid, str) or not iid:
        name = path.name
        iid = name[:-len(".traj.json")] if name.endswith(".traj.json") else path.stem
    task = next((content_text(m.get("content")) for m in msgs if isinstance(m, dict) and m.get("role") == "user"),
                "")
    if not task.strip():
        raise TrajectoryFormatError(f"{where}: messages: no user message with the task")
    steps: list[TrajectoryStep] = []
    first_user_seen = False
    pending: dict[str, TrajectoryStep] = {}
    last: TrajectoryStep | None = None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise TrajectoryFormatError(f"{where}: messages[{i}] must be an object")
        role = m.get("role")
        text = content_text(m.get("content"))
        if role == "assistant":
            tcs = tool_calls_of(m)
            last = None
            if tcs:
                for k, tc in enumerate(tcs):
                    call = call_from_openai(tc, f"{where}: messages[{i}].tool_calls[{k}]")
                    cmd = call.arguments.get("command", "") if call.name == "bash" else None
                    if cmd is not None:
                        call = _canonical(cmd)
                    st = TrajectoryStep(action=call.to_text(), tool=call.name, thought=text.strip(),
                                        raw_action=cmd if cmd is not None else call.to_text())
                    steps.append(st)
                    if isinstance(tc.get("id"), str):
                        pending[tc["id"]] = st
                    last = st
            else:
                blocks = _BASH_BLOCK.findall(text)
                if len(blocks) >= 1:
                    cmd = blocks[0]
                    call = _canonical(cmd)
                    thought = text[: text.find("```")].strip()
                    st = TrajectoryStep(action=call.to_text(), tool=call.name, thought=thought, raw_action=cmd,
                                        meta={"extra_blocks": len(blocks) - 1} if len(blocks) > 1 else {})
                    steps.append(st)
                    last = st
        elif role == "tool":
            st = pending.pop(m.get("tool_call_id"), None) if m.get("tool_call_id") else None
            st = st or last
            if st is not None and st.observation is None:
                st.observation = text
        elif role == "user":
            if not first_user_seen:
                first_user_seen = True
                continue
            if last is not None and last.observation is None:
                last.observation = text
                last = None
    patch = info.get("submission") if isinstance(info.get("submission"), str) else None
    yield Trajectory(instance_id=iid, issue=extract_issue(task), steps=steps, source=where, format="minisweagent",
                     repo=repo_from_instance_id(iid), patch=patch, resolved=lookup_resolved(path, iid),
                     system_prompt=next((content_text(m.get("content")) for m in msgs if isinstance(m, dict)
                                         and m.get("role") == "system"), None),
                     meta={"exit_status": info.get("exit_status"), "mini_version": info.get("mini_version"),
                           "trajectory_format": obj.get("trajectory_format"), **recorded_execution(info)})


def recorded_execution(info: dict[str, Any]) -> dict[str, Any]:
    """What the run recorded about executing actions (``info.config.environment``: ``env``, ``timeout``, ``cwd``)
    as ``exec_env`` / ``exec_timeout`` / ``exec_cwd`` (read by environments.replay.execution_spec)."""
    cfg = info.get("config") if isinstance(info.get("config"), dict) else {}
    env = cfg.get("environment") if isinstance(cfg.get("environment"), dict) else {}
    out: dict[str, Any] = {}
    if isinstance(env.get("env"), dict):
        out["exec_env"] = {str(k): str(v) for k, v in env["env"].items()}
    t = env.get("timeout")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0:
        out["exec_timeout"] = float(t)
    if isinstance(env.get("cwd"), str) and env["cwd"]:
        out["exec_cwd"] = env["cwd"]
    # the template that turned a command's output into the observation (v2: model.observation_template, v1:
    # agent.action_observation_template); replay renders it so long outputs are elided exactly as recorded
    for section, key in (("model", "observation_template"), ("agent", "action_observation_template")):
        sec = cfg.get(section) if isinstance(cfg.get(section), dict) else {}
        if isinstance(sec.get(key), str) and sec[key].strip():
            out["exec_observation_template"] = sec[key]
            break
    return out
