"""Replay an expert trajectory: re-execute every action in a fresh sandbox of the repo at its base commit and
compare the regenerated observations (and the final patch) with the recorded ones.

Fidelity of a step = difflib ratio (autojunk=False) of the two observations after `normalize_observation`
(CRLF, trailing blanks, timings, hex ids, memory addresses, temp paths, dates and the repo root masked); long
observations (> LONG_CHARS together) are compared line by line instead. A step is *diverged* when its fidelity is
below DIVERGENCE_THRESHOLD (0.9). Steps whose action cannot be executed (tools such as CodeR's `plan`/`succeed`,
unparsable actions) and steps without a recorded observation get fidelity None.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

from swe_srl.core.toolcall import ToolCallError, parse_single_tool_call

from .sandbox import BASE_IMAGE, SandboxError, make_sandbox
from .sandbox.images import instance_image_name
from .tools import ToolRuntime, UnsupportedTool
from .trajectory import Trajectory

DIVERGENCE_THRESHOLD = 0.9
LONG_CHARS = 12000


@dataclass
class ReplayResult:
    observations: list[str | None]
    step_fidelity: list[float | None]
    patch_match: bool | None
    diverged_steps: list[int]
    error: str | None = None
    patch: str | None = None                       # regenerated patch (at the last submit, else at the end)
    unsupported_steps: list[int] = field(default_factory=list)

    @property
    def mean_fidelity(self) -> float | None:
        vals = [f for f in self.step_fidelity if f is not None]
        return sum(vals) / len(vals) if vals else None


# -- normalization / similarity ---------------------------------------------------------------------------------
_MASKS = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<DATE>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<CLOCK>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<ADDR>"),
    (re.compile(r"(?:/private)?/(?:tmp|var/folders|var/tmp)/[^\s'\"():,]+"), "<TMP>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|µs|us|ns|min)\b"), "<TIME>"),
    (re.compile(r"\bpid[ =:]\s*\d+", re.I), "pid <N>"),
]


def normalize_observation(text: str, roots: tuple[str, ...] = ()) -> str:
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    for r in sorted({r.rstrip("/") for r in roots if r and r != "/"}, key=len, reverse=True):
        t = re.sub(re.escape(r) + r"(?=[/\s:\"'),]|$)", "<ROOT>", t)
    for rx, rep in _MASKS:
        t = rx.sub(rep, t)
    return "\n".join(line.rstrip() for line in t.split("\n")).strip("\n")


def observation_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) + len(b) > LONG_CHARS:
        return difflib.SequenceMatcher(None, a.split("\n"), b.split("\n"), autojunk=False).ratio()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def normalize_patch(patch: str) -> str:
    """Per-file blocks sorted by path, `index` lines dropped, trailing blanks stripped."""
    text = patch.replace("\r\n", "\n")
    blocks = re.split(r"(?m)^(?=diff --git )", text)
    out = []
    for b in blocks:
        if not b.strip().startswith("diff --git"):
            continue
        lines = [ln.rstrip() for ln in b.strip("\n").split("\n") if not ln.startswith("index ")]
        out.append("\n".join(lines))
    return "\n".join(sorted(out))


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


def _bash_style(fmt: str) -> str:
    f = (fmt or "").lower()
    if "mini" in f:
        return "mini"
    if "0x" in f or f in ("sweagent0", "sweagent_0"):
        return "sweagent0"
    return "sweagent"


# -- replay -----------------------------------------------------------------------------------------------------
def replay_trajectory(traj: Trajectory, *, backend: str = "docker", image: str | None = None,
                      repo_path: str | None = None, base_commit: str | None = None, timeout: float = 60,
                      workdir: str = "/testbed", **sandbox_kw) -> ReplayResult:
    """Re-execute every action of ``traj`` in a fresh sandbox and score it against the recording.

    backend "docker": ``image`` (default: swe-srl/sandbox-base:latest when ``repo_path`` is given, else the
    swebench instance image ``instance_image_name(traj.instance_id)``), optionally ``repo_path`` copied to
    ``workdir``; backend "local": a temporary copy of ``repo_path``. ``base_commit`` defaults to
    ``traj.base_commit``. Never raises for a failing action or an infrastructure error: see ``error``.
    """
    n = len(traj.steps)
    obs: list[str | None] = [None] * n
    fid: list[float | None] = [None] * n
    unsupported: list[int] = []
    base_commit = base_commit or traj.base_commit
    if backend == "docker" and image is None:
        image = BASE_IMAGE if repo_path is not None else instance_image_name(traj.instance_id)
    error = None
    patch = None
    roots = _recorded_roots(traj)
    try:
        sb = make_sandbox(backend, image=image, repo_path=repo_path, base_commit=base_commit, workdir=workdir,
                          **sandbox_kw)
        with sb:
            roots = roots + (sb.workdir,)
            rt = ToolRuntime(sb, bash_style=_bash_style(traj.format), timeout=timeout)
            for i, step in enumerate(traj.steps):
                try:
                    call = parse_single_tool_call(step.action)
                    obs[i] = rt.execute(call)
                except (ToolCallError, UnsupportedTool):
                    unsupported.append(i)
                    continue
            patch = rt.submitted if rt.submitted is not None else sb.diff()
    except SandboxError as e:
        error = f"sandbox: {e}"
    except Exception as e:  # noqa: BLE001 - one bad trajectory must not stop a collection run
        error = f"{type(e).__name__}: {e}"
    for i, step in enumerate(traj.steps):
        if obs[i] is not None and step.observation is not None:
            fid[i] = observation_similarity(normalize_observation(obs[i], roots),
                                            normalize_observation(step.observation, roots))
    diverged = [i for i, f in enumerate(fid) if f is not None and f < DIVERGENCE_THRESHOLD]
    patch_match = None
    if traj.patch is not None and patch is not None:
        patch_match = normalize_patch(patch) == normalize_patch(traj.patch)
    return ReplayResult(obs, fid, patch_match, diverged, error, patch, unsupported)
