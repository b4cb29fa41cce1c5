"""Agent mode: the model acts as the SWE agent it was trained to be. Each turn it sees exactly the step prompt of
the collect step (``environments.prompting.build_messages``: issue + previous (action, observation) rounds), writes
one ``<think>`` + one canonical tool call, which ``environments.tools.ToolRuntime`` executes in a sandbox of the
instance; the final ``git diff`` of the sandbox is the patch."""

from __future__ import annotations

import time
from typing import Any, Callable

from environments.prompting import build_messages, system_prompt_for
from environments.tools import ToolRuntime

from ..core.format import parse_completion
from ..core.toolcall import parse_single_tool_call
from ..generation import Generator, SamplingParams
from .grading import docker_sandbox_factory

STOP_TOOLS = ("submit", "finish")
#: the tools the agent-mode runtime offers the model, documented alone (not every tool the collect step prompts know),
#: with the runtime's shell semantics (``ToolRuntime`` keeps the working directory between bash calls)
AGENT_TOOLS = ("bash", "str_replace_editor", "submit")
AGENT_SHELL = ("# Shell\nThe working directory carries over from one bash command to the next (a `cd` stays in effect); "
               "environment variables do not, so set them in the command that needs them.")
AGENT_SYSTEM_PROMPT = system_prompt_for(AGENT_TOOLS, AGENT_SHELL)
FORMAT_ERROR_OBS = ("Your last answer was not valid ({violation}). Answer with <think>...</think> followed by "
                    "exactly one tool call.")


def make_instance_sandbox(instance: dict[str, Any], *, namespace: str | None = None) -> Any:
    """A DockerSandbox of the instance image (custom ``image`` field, else its swebench instance image name), the
    same sandbox the grader uses (``grading.docker_sandbox_factory``)."""
    return docker_sandbox_factory(namespace)(instance)


def run_agent(instance: dict[str, Any], generator: Generator, params: SamplingParams, *, max_steps: int = 30,
              sandbox_factory: Callable[[dict[str, Any]], Any] | None = None, history_k: int | None = None,
              obs_max_chars: int | None = 10_000, command_timeout: int = 120,
              system_prompt: str = AGENT_SYSTEM_PROMPT) -> dict[str, Any]:
    """Run one episode. Returns {model_patch, reason, steps, trajectory, seconds}; never raises."""
    t0 = time.time()
    history: list[tuple[str, str | None]] = []
    traj: list[dict[str, Any]] = []
    reason = "max_steps"
    patch = ""
    sb = None
    try:
        sb = (sandbox_factory or make_instance_sandbox)(instance)
        sb.start()
        runtime = ToolRuntime(sb)
        for step in range(max_steps):
            msgs = build_messages(instance["problem_statement"], history, history_k=history_k,
                                  obs_max_chars=obs_max_chars, system_prompt=system_prompt)
            completion = generator.generate([msgs], params)[0][0]
            parsed = parse_completion(completion, expect_tool_call=True)
            if not parsed.ok:
                obs = FORMAT_ERROR_OBS.format(violation=parsed.violation)
                traj.append({"step": step, "completion": completion, "violation": parsed.violation})
                history.append((completion.strip(), obs))
                continue
            call = parse_single_tool_call(parsed.action)
            if call.name in STOP_TOOLS:
                traj.append({"step": step, "action": parsed.action, "stop": True})
                reason = call.name
                break
            try:
                obs = runtime.execute(call)
            except Exception as e:  # a tool error is an observation, not a crash
                obs = f"Error: {type(e).__name__}: {e}"
            traj.append({"step": step, "action": parsed.action, "observation": obs[:2000]})
            history.append((parsed.action, obs))
        patch = sb.diff()
    except Exception as e:
        reason = f"error: {type(e).__name__}: {str(e)[:300]}"
    finally:
        if sb is not None:
            try:
                sb.close()
            except Exception:
                pass
    return {"model_patch": patch, "reason": reason if patch.strip() or reason.startswith("error") else
            f"{reason}; no_change", "steps": len(traj), "trajectory": traj, "seconds": round(time.time() - t0, 2)}
