"""Replay an expert trajectory: re-execute every action in a fresh sandbox of the repo at its base commit and
compare the regenerated observations (and the final patch) with the recorded ones.

Execution semantics follow the agent that recorded the trajectory (``execution_spec``; docs/sandboxes.md):

- mini-swe-agent (v1 and v2): every action is a **fresh** ``bash -c`` in the repo root (``cd`` and ``export`` do not
  persist), its submit command (``echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat patch.txt``, v1
  ``MINI_SWE_AGENT_FINAL_OUTPUT``) is executed as the agent did and its output after the first line is the submission;
- SWE-agent (0.x, 1.x) and OpenHands: one **persistent** shell session: the working directory and exported variables
  carry over from one action to the next (kept in a state file outside the repo, restored before each action);
- the recorded environment variables and per-command timeout when the trajectory has them (mini-swe-agent
  ``info.config.environment.{env,timeout,cwd}``, SWE-agent 1.x ``replay_config.agent.tools.{env_variables,
  execution_timeout}``), else ``DEFAULT_TIMEOUT``; an explicit ``timeout`` overrides both.

A sandbox that cannot start, check out the base commit, or run is an infrastructure failure: ``error`` and
``stage`` (start | checkout | network | run) are set and **no** observation is returned (never recorded ones passed
off as replayed). Per-step fidelity is scored by ``environments.fidelity`` (listing commands as line multisets,
``ls -l`` dates masked, the raw ratio kept beside); the final patch is checked as submitted
(``fidelity.compare_final_patch``).
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

try:                                  # jinja2 comes with torch and transformers; without it: the built-in format
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
except ImportError:  # pragma: no cover
    SandboxedEnvironment = None

from swe_srl.core.toolcall import ToolCallError, parse_single_tool_call

from .fidelity import (DIVERGENCE_THRESHOLD, LONG_CHARS, StepFidelity, command_kind, compare_final_patch,
                       histogram, normalize_observation, normalize_patch, observation_similarity, score_step)
from .images.sandbox import index_only_network
from .sandbox import BASE_IMAGE, SandboxError, make_sandbox
from .sandbox.images import instance_image_name
from .tools import ToolRuntime, UnsupportedTool
from .trajectory import Trajectory

__all__ = ["DEFAULT_TIMEOUT", "DIVERGENCE_THRESHOLD", "LONG_CHARS", "ExecSpec", "ReplayResult", "ReplayRuntime",
           "execution_spec", "normalize_observation", "normalize_patch", "observation_similarity",
           "replay_trajectory"]

DEFAULT_TIMEOUT = 120.0
SHELLS = ("fresh", "persistent")
NETWORKS = ("none", "index")
MINI_SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")


@dataclass
class ExecSpec:
    """How the recording agent executed its actions."""
    shell: str                          # fresh | persistent
    bash_style: str                     # ToolRuntime observation style: mini | sweagent | sweagent0
    timeout: float | None = None        # recorded per-command timeout (seconds), if any
    env: dict[str, str] = field(default_factory=dict)   # recorded environment variables
    cwd: str | None = None              # recorded working directory of a fresh subshell (mini-swe-agent)
    source: str = ""                    # where it came from (for the manifest)
    observation_template: str | None = None   # recorded jinja template output -> observation (mini-swe-agent)
    recorded_root: str | None = None    # the repo root the agent worked in (OpenHands: /workspace/<repo>__<version>)
    openhands_shell: dict[str, str] | None = None   # OpenHands bash framing: {"python": ..., "host": ...}

    def as_dict(self) -> dict[str, Any]:
        return {"shell": self.shell, "bash_style": self.bash_style, "timeout": self.timeout, "env": dict(self.env),
                "source": self.source, "observation_template": self.observation_template is not None,
                "recorded_root": self.recorded_root, "openhands_shell": self.openhands_shell is not None}


def _bash_style(fmt: str) -> str:
    f = (fmt or "").lower()
    if "mini" in f:
        return "mini"
    if "0x" in f or f in ("sweagent0", "sweagent_0"):
        return "sweagent0"
    return "sweagent"


def execution_spec(traj: Trajectory) -> ExecSpec:
    """The execution semantics of ``traj``'s agent, chosen from its format/version and what it recorded
    (``traj.meta["exec_env"]``, ``["exec_timeout"]``, ``["exec_cwd"]``, set by the readers)."""
    fmt = (traj.format or "").lower()
    style = _bash_style(fmt)
    env = {str(k): str(v) for k, v in (traj.meta.get("exec_env") or {}).items()}
    t = traj.meta.get("exec_timeout")
    timeout = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 else None
    cwd = traj.meta.get("exec_cwd") if isinstance(traj.meta.get("exec_cwd"), str) else None
    if "mini" in fmt:
        ver = traj.meta.get("mini_version") or traj.meta.get("trajectory_format") or "?"
        tmpl = traj.meta.get("exec_observation_template")
        return ExecSpec("fresh", style, timeout, env, cwd, f"mini-swe-agent {ver}: fresh subshell per action",
                        tmpl if isinstance(tmpl, str) else None)
    if fmt.startswith("openhands"):
        roots = Counter(m.group(0) for s in traj.steps for m in _OH_ROOT.finditer(s.action or ""))
        shell = None
        for s in traj.steps:
            m = _OH_FRAME.search(s.observation or "")
            if m:
                shell = {"python": m.group(1), "host": m.group(2)}
                break
        return ExecSpec("persistent", style, timeout, env, None, "OpenHands: one persistent bash session",
                        None, roots.most_common(1)[0][0] if roots else None, shell)
    # SWE-agent 0.x images (CodeR) kept the repo at /<owner>__<name>; actions naming it are mapped to the sandbox root
    rroot = "/" + traj.repo.replace("/", "__") if traj.repo else None
    if rroot and not any(rroot in (s.action or "") for s in traj.steps):
        rroot = None
    return ExecSpec("persistent", style, timeout, env, None, f"SWE-agent ({fmt or 'unknown'}): one persistent shell",
                    None, rroot)


_OH_ROOT = re.compile(r"/workspace/[A-Za-z0-9_.-]+")
_OH_FRAME = re.compile(r"\[Python Interpreter: ([^\]\n]+)\]\n([^@\s]+@[^:\s]+):")


def map_root(call: Any, recorded_root: str | None, root: str) -> Any:
    """The call with the recorded repo root (OpenHands' /workspace/<repo>) rewritten to the sandbox's root in its
    string arguments."""
    if not recorded_root or recorded_root == root:
        return call
    rx = re.compile(re.escape(recorded_root) + r"(?=[/\s\"'):;,|&]|$)")
    args = {k: rx.sub(root, v) if isinstance(v, str) else v for k, v in dict(call.arguments).items()}
    return type(call).make(call.name, args)


OH_MAX_VIEW_CHARS = 16000
OH_CLIPPED = ("<response clipped><NOTE>To save on context only part of this file has been shown to you. You should "
              "retry this tool after you have searched inside the file with `grep -n` in order to find the line "
              "numbers of what you are looking for.</NOTE>")
_NUMBERED = re.compile(r"^ *(\d+)\t(.*)$")


def clip_openhands_view(out: str) -> str:
    """OpenHands (openhands-aci) clips a viewed file's content at 16,000 characters before numbering it, appending
    its `<response clipped><NOTE>…` notice: the same applied to an editor `view` observation."""
    head, sep, body = out.partition(":\n")
    if not sep or not head.startswith("Here's the result of running `cat -n`"):
        return out
    lines = body.split("\n")
    trailing = lines and lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    parsed = [_NUMBERED.match(x) for x in lines]
    if not parsed or not all(parsed):
        return out
    start = int(parsed[0].group(1))
    content = "\n".join(m.group(2) for m in parsed)
    if len(content) <= OH_MAX_VIEW_CHARS:
        return out
    clipped = content[:OH_MAX_VIEW_CHARS] + OH_CLIPPED
    return head + sep + "\n".join(f"{i + start:6}\t{x}" for i, x in enumerate(clipped.split("\n"))) + (
        "\n" if trailing else "")


class ReplayRuntime(ToolRuntime):
    """ToolRuntime with the recording agent's shell semantics (``ExecSpec.shell``):

    fresh: each bash action runs in a new ``bash -c`` started in the repo root; nothing carries over.
    persistent: the working directory and the exported variables carry over (``export -p`` saved after each action
    to a state file under /tmp, outside the repository, and sourced before the next one)."""

    def __init__(self, sandbox: Any, *, spec: ExecSpec, timeout: float):
        super().__init__(sandbox, bash_style=spec.bash_style, timeout=timeout)
        self.spec = spec
        self.state_file = f"/tmp/.swe-srl-shell-{uuid.uuid4().hex[:12]}.env"
        self.last_timed_out = False
        self.display_command: str | None = None     # the recorded command text (before root mapping)

    def execute(self, call: Any) -> str:
        out = super().execute(call)
        args = dict(call.arguments)
        if (self.spec.openhands_shell is not None and call.name == "str_replace_editor"
                and args.get("command") == "view" and not args.get("view_range")):
            out = clip_openhands_view(out)
        return out

    def bash(self, command: str) -> str:
        if self.spec.shell == "fresh":
            return self._fresh(command)
        return self._persistent(command)

    def _fresh(self, command: str) -> str:
        self.cwd = self.root
        res = self.sandbox.run(command, timeout=self.timeout, workdir=self.root)
        self.last_timed_out = res.timed_out
        return self._format(command, res.output, res.exit_code, res.timed_out)

    def _persistent(self, command: str) -> str:
        marker = f"__SWESRL_CWD_{uuid.uuid4().hex[:8]}__"
        state = shlex.quote(self.state_file)
        script = (f"if [ -f {state} ]; then . {state} 2>/dev/null; fi\n"
                  f"cd {shlex.quote(self.cwd)} 2>/dev/null || cd {shlex.quote(self.root)}\n{command}\n"
                  f"__rc=$?; export -p 2>/dev/null | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_)(=|$)' > {state}; "
                  f"printf '\\n{marker}%s' \"$(pwd)\"; exit $__rc")
        res = self.sandbox.run(script, timeout=self.timeout, workdir=self.cwd)
        self.last_timed_out = res.timed_out
        return self._format(command, self._take_cwd(res.output, marker), res.exit_code, res.timed_out)

    def _format(self, command: str, out: str, rc: int, timed_out: bool) -> str:
        oh = self.spec.openhands_shell
        if oh is not None and not timed_out:
            # OpenHands 0.x: the command echoed, the output, then the interpreter / prompt / exit code frame
            shown = self.display_command or command
            cwd = self.cwd
            if self.spec.recorded_root and (cwd == self.root or cwd.startswith(self.root + "/")):
                cwd = self.spec.recorded_root + cwd[len(self.root):]
            return (f"{shown}\n{out.rstrip(chr(10))}[Python Interpreter: {oh['python']}]\n{oh['host']}:{cwd} # \n"
                    f"[Command finished with exit code {rc}]")
        if self.spec.observation_template and not timed_out:
            rendered = render_observation(self.spec.observation_template, out, rc)
            if rendered is not None:
                return rendered
        return super()._format(command, out, rc, timed_out)

    def mini_submit(self, command: str) -> str | None:
        """mini-swe-agent's submit: run the command (fresh subshell); when its output's first line is the marker
        (and it succeeded), the rest is the submission. Returns the observation text otherwise (not submitted)."""
        res = self.sandbox.run(command, timeout=self.timeout, workdir=self.root)
        lines = res.output.lstrip().splitlines(keepends=True)
        if res.exit_code == 0 and lines and lines[0].strip() in MINI_SUBMIT_MARKERS:
            self.submitted = "".join(lines[1:])
            return None
        return self._format(command, res.output, res.exit_code, res.timed_out)


_JINJA: list[Any] = []


def render_observation(template: str, output: str, returncode: int) -> str | None:
    """The agent's own observation template (jinja, rendered in a sandboxed environment as mini-swe-agent does with
    ``output = {output, returncode, exception_info}``); None when it cannot be rendered."""
    if SandboxedEnvironment is None:
        return None
    if not _JINJA:
        _JINJA.append(SandboxedEnvironment(undefined=StrictUndefined))
    try:
        return _JINJA[0].from_string(template).render(
            output={"output": output, "returncode": returncode, "exception_info": ""})
    except Exception:  # noqa: BLE001 - a template we cannot render: fall back to the built-in format
        return None


@dataclass
class ReplayResult:
    observations: list[str | None]
    step_fidelity: list[float | None]
    patch_match: bool | None
    diverged_steps: list[int]
    error: str | None = None
    patch: str | None = None                       # what the replayed agent submitted (else the tree diff at the end)
    unsupported_steps: list[int] = field(default_factory=list)
    stage: str | None = None                       # with error: start | checkout | network | run
    steps: list[dict[str, Any]] = field(default_factory=list)     # per step: StepFidelity.as_meta()
    patch_check: dict[str, Any] = field(default_factory=dict)     # fidelity.compare_final_patch
    tree_patch: str | None = None                  # whole-tree diff at the end
    exec_spec: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    timed_out_steps: list[int] = field(default_factory=list)

    @property
    def mean_fidelity(self) -> float | None:
        vals = [f for f in self.step_fidelity if f is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def failed(self) -> bool:
        """An infrastructure failure: nothing was replayed."""
        return self.error is not None


def _recorded_roots(traj: Trajectory) -> tuple[str, ...]:
    roots = ["/testbed"]
    if traj.repo:
        roots.append("/" + traj.repo.replace("/", "__"))
    seen: Counter = Counter()
    for s in traj.steps:
        for m in re.finditer(r"\[File: (/[^/\s]+)/|\bin (/[^/\s\"]+)(?:[/:\s]|$)", s.observation or ""):
            seen[m.group(1) or m.group(2)] += 1
    roots += [r for r, _ in seen.most_common(2)]
    if traj.meta.get("workdir"):
        roots.append(str(traj.meta["workdir"]))
    return tuple(dict.fromkeys(roots))


def _stage_of(msg: str) -> str:
    m = msg.lower()
    if "setup failed" in m or "checkout" in m or "base commit" in m or "pathspec" in m or "reference is not a tree" in m:
        return "checkout"
    return "start"


def _kind(step: Any) -> tuple[str, Any]:
    try:
        call = parse_single_tool_call(step.action)
    except ToolCallError:
        return "unparsable", None
    return command_kind(call.name, dict(call.arguments)), call


# -- replay -----------------------------------------------------------------------------------------------------
def replay_trajectory(traj: Trajectory, *, backend: str = "docker", image: str | None = None,
                      repo_path: str | None = None, base_commit: str | None = None, timeout: float | None = None,
                      workdir: str = "/testbed", network: str = "none", **sandbox_kw) -> ReplayResult:
    """Re-execute every action of ``traj`` in a fresh sandbox and score it against the recording.

    backend "docker": ``image`` (default: swe-srl/sandbox-base:latest when ``repo_path`` is given, else the
    swebench instance image ``instance_image_name(traj.instance_id)``), optionally ``repo_path`` copied to
    ``workdir``; backend "local": a temporary copy of ``repo_path``. ``base_commit`` defaults to
    ``traj.base_commit``. ``timeout``: per-command seconds (default: the recorded one, else DEFAULT_TIMEOUT).
    ``network``: "none" (default) or "index" (docker only: the container reaches only the package index).
    Never raises for a failing action or an infrastructure error: see ``error`` / ``stage``.
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
    t0 = time.monotonic()
    n = len(traj.steps)
    obs: list[str | None] = [None] * n
    unsupported: list[int] = []
    timed_out: list[int] = []
    spec = execution_spec(traj)
    per_cmd = float(timeout) if timeout is not None else (spec.timeout or DEFAULT_TIMEOUT)
    base_commit = base_commit or traj.base_commit
    if backend == "docker" and image is None:
        image = BASE_IMAGE if repo_path is not None else instance_image_name(traj.instance_id)
    kw = dict(sandbox_kw)
    env = {**spec.env, **(kw.pop("env", None) or {})}
    if network == "index":
        if backend != "docker":
            raise ValueError("network='index' needs the docker backend")
        kw["network"] = True
        env.setdefault("PIP_NO_INDEX", "0")        # built instance images set PIP_NO_INDEX=1 for offline tests
    if env:
        kw["env"] = env
    error = stage = None
    submitted = tree = None
    roots = _recorded_roots(traj) + ((spec.recorded_root,) if spec.recorded_root else ())
    kinds = [_kind(s) for s in traj.steps]
    try:
        sb = make_sandbox(backend, image=image, repo_path=repo_path, base_commit=base_commit, workdir=workdir, **kw)
    except (SandboxError, ValueError, TypeError) as e:
        sb, error, stage = None, f"sandbox: {e}", "start"
    if sb is not None:
        stage = "start"
        try:
            sb.start()
            try:
                if network == "index":
                    stage = "network"
                    index_only_network(sb)
                stage = "run"
                roots = roots + (sb.workdir,)
                rt = ReplayRuntime(sb, spec=spec, timeout=per_cmd)
                for i, step in enumerate(traj.steps):
                    call = kinds[i][1]
                    if call is None:
                        unsupported.append(i)
                        continue
                    try:
                        if call.name == "submit" and spec.shell == "fresh" and _is_mini_submit(step.raw_action):
                            obs[i] = rt.mini_submit(step.raw_action)
                            if obs[i] is None and step.observation is not None:
                                obs[i] = rt.submitted
                        else:
                            mapped = map_root(call, spec.recorded_root, sb.workdir)
                            args = dict(call.arguments)
                            rt.display_command = args.get("command") if call.name == "bash" else None
                            obs[i] = rt.execute(mapped)
                    except UnsupportedTool:
                        unsupported.append(i)
                        continue
                    if rt.last_timed_out:
                        timed_out.append(i)
                        rt.last_timed_out = False
                submitted = rt.submitted
                tree = sb.diff()
                if submitted is None:
                    submitted = tree
                stage = None
            finally:
                sb.close()
        except SandboxError as e:
            error = f"sandbox: {e}"
            if stage == "start":
                stage = _stage_of(str(e))
            _close_quietly(sb)
        except Exception as e:  # noqa: BLE001 - one bad trajectory must not stop a collection run
            error = f"{type(e).__name__}: {e}"
            stage = stage or "run"
            _close_quietly(sb)
    if error is not None:
        obs = [None] * n                            # nothing recorded is ever passed off as replayed
        submitted = tree = None
    steps: list[StepFidelity] = []
    for i, step in enumerate(traj.steps):
        reason = ("replay failed" if error else "unsupported action" if i in unsupported else None)
        steps.append(score_step(kinds[i][0], obs[i], step.observation, roots, reason))
    fid = [s.fidelity for s in steps]
    diverged = [i for i, s in enumerate(steps) if s.status == "diverged"]
    check = compare_final_patch(traj.patch, submitted, tree) if error is None else {}
    return ReplayResult(obs, fid, check.get("patch_match"), diverged, error, submitted, unsupported,
                        stage if error else None, [s.as_meta() for s in steps], check, tree, spec.as_dict(),
                        round(time.monotonic() - t0, 3), timed_out)


def _close_quietly(sb: Any) -> None:
    try:
        sb.close()
    except Exception:  # noqa: BLE001 - already failing; the original error is the one reported
        pass


def _is_mini_submit(raw: str) -> bool:
    s = (raw or "").lstrip()
    return s.startswith("echo") and any(m in s.split("\n", 1)[0] for m in MINI_SUBMIT_MARKERS)


def replay_histogram(rr: ReplayResult) -> dict[str, dict[str, int]]:
    return histogram(rr.steps)
