"""A small, runnable mini-benchmark shipped inside the package (no registry, no Docker needed).

- 4 SWE tasks (SWE-bench-like instances): a tiny Python repo with a real bug, an issue text, a gold patch,
  a test patch that adds the failing test, FAIL_TO_PASS / PASS_TO_PASS unittest ids and a test command.
  Each has one expert trajectory in a real agent format (2 mini-swe-agent ``.traj.json``, 2 SWE-agent 1.x ``.traj``).
- 6 math problems with numbered expert solutions (``math/problems.jsonl``: question, solution, answer).

Repo files are stored under ``swe/<task_id>/repo/`` with a ``.txt`` suffix (``intervals.py.txt``) so that the
buggy sources and their tests are never imported, linted or collected by accident; ``dot-NAME.txt`` stands for
``.NAME``. :func:`materialize_repo` writes them back under their real names and commits them.
See docs/sample-tasks.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from environments.sandbox import BASE_IMAGE, build_repo_image

SAMPLE_DIR = Path(__file__).resolve().parent
SWE_DIR = SAMPLE_DIR / "swe"
MATH_FILE = SAMPLE_DIR / "math" / "problems.jsonl"

#: mount point of the repo inside the sandbox; the trajectories use it in their actions and observations
SANDBOX_REPO_DIR = "/testbed"

# Fixed identity and dates: the base commit hash is the same on every machine.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "swe-srl sample tasks",
    "GIT_AUTHOR_EMAIL": "sample-tasks@swe-srl.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "swe-srl sample tasks",
    "GIT_COMMITTER_EMAIL": "sample-tasks@swe-srl.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
_GIT_CFG = ["-c", "core.autocrlf=false", "-c", "core.fileMode=true", "-c", "commit.gpgsign=false",
            "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null"]


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(_GIT_ENV)
    return env


def git(repo: str | Path, *args: str, input: str | None = None, check: bool = True) -> str:
    """Run git in ``repo`` with the fixed identity/config; returns stdout."""
    proc = subprocess.run(["git", *_GIT_CFG, *args], cwd=str(repo), env=git_env(), input=input,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def list_task_ids() -> list[str]:
    return sorted(p.name for p in SWE_DIR.iterdir() if (p / "task.json").is_file())


def load_swe_task(task_id: str) -> dict[str, Any]:
    path = SWE_DIR / task_id / "task.json"
    if not path.is_file():
        raise KeyError(f"unknown sample task {task_id!r}; known: {', '.join(list_task_ids())}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_swe_tasks() -> list[dict[str, Any]]:
    """All SWE tasks, SWE-bench-like dicts (instance_id, repo, base_commit, problem_statement, gold_patch/patch,
    test_patch, FAIL_TO_PASS, PASS_TO_PASS, test_cmd, version, trajectory, trajectory_format)."""
    return [load_swe_task(t) for t in list_task_ids()]


def load_math_tasks() -> list[dict[str, Any]]:
    """The math problems: dicts with id, question, solution, answer."""
    rows = []
    for line in MATH_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def trajectory_path(task_id: str) -> Path:
    """Path of the expert trajectory of a SWE task (``.traj.json`` for mini-swe-agent, ``.traj`` for SWE-agent)."""
    return SWE_DIR / task_id / load_swe_task(task_id)["trajectory"]


def repo_files(task_id: str) -> dict[str, str]:
    """{relative path in the materialized repo: text} of a task's base repo."""
    root = SWE_DIR / task_id / "repo"
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root)
        name = rel.name
        if name.endswith(".txt"):
            name = name[: -len(".txt")]
        if name.startswith("dot-"):
            name = "." + name[len("dot-"):]
        out[str(rel.with_name(name))] = p.read_text(encoding="utf-8")
    return out


def materialize_repo(task_id: str, dest: str | Path) -> Path:
    """Write the task's repo to ``dest`` (must be absent or empty), ``git init`` it and commit the files as the base
    commit (deterministic hash: fixed author, committer, dates and modes). Returns ``dest`` as a Path."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in repo_files(task_id).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(path, 0o644)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "--no-verify", "-m", f"{task_id}: base")
    return dest


def base_commit(repo: str | Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def apply_patch(repo: str | Path, patch: str, check_only: bool = False) -> None:
    """``git apply`` a unified diff in ``repo`` (raises RuntimeError if it does not apply)."""
    if not patch.strip():
        return
    args = ["apply", "--whitespace=nowarn"] + (["--check"] if check_only else []) + ["-"]
    git(repo, *args, input=patch)


def run_test_ids(repo: str | Path, test_ids: list[str], python: str = "python3",
                 timeout: float = 60) -> dict[str, bool]:
    """Run each unittest id (``tests.test_x.Class.test_y``) on its own in ``repo``; {id: passed}."""
    results = {}
    for tid in test_ids:
        proc = subprocess.run([python, "-m", "unittest", tid], cwd=str(repo), capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        results[tid] = proc.returncode == 0
    return results


def remove_repo(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _as_list(v: Any) -> list[str]:
    return json.loads(v) if isinstance(v, str) else list(v)


EVAL_SCRIPT = """#!/bin/bash
# Eval script of a bundled sample task, in the layout of swebench's: reset the test files to the base commit, apply
# the test patch, run the task's tests between the swebench markers, reset the test files. It runs in the sandbox's
# workdir (the repository), so the same script serves a DockerSandbox (/testbed) and a LocalSandbox (a host copy).
set -uo pipefail
git checkout {base_commit} -- {test_files}
git apply -v - <<'EOF_SWE_SRL_TEST_PATCH'
{test_patch}
EOF_SWE_SRL_TEST_PATCH
echo ">>>>> Start Test Output"
{test_cmd} 2>&1
echo ">>>>> End Test Output"
git checkout {base_commit} -- {test_files}
"""


def _patched_files(patch: str) -> list[str]:
    """Paths a unified diff touches (``diff --git a/X b/X`` headers), in order."""
    return list(dict.fromkeys(re.findall(r"^diff --git a/\S+ b/(\S+)$", patch, re.MULTILINE)))


def eval_instances(tasks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The sample tasks as SWE-bench-like evaluation instances for `swe_srl.swe_eval` (custom-instance fields
    ``eval_script`` and ``log_parser``, graded by ``swe_eval.grade_in_sandbox``; ``image`` is added by
    :func:`build_instance_image`, a LocalSandbox needs none)."""
    out = []
    for t in tasks if tasks is not None else load_swe_tasks():
        script = EVAL_SCRIPT.format(base_commit=t["base_commit"], test_files=" ".join(
            shlex.quote(f) for f in _patched_files(t["test_patch"])), test_patch=t["test_patch"].rstrip("\n"),
            test_cmd=t["test_cmd"])
        out.append({
            "instance_id": t["instance_id"], "repo": t["repo"], "base_commit": t["base_commit"],
            "problem_statement": t["problem_statement"], "patch": t.get("patch") or t["gold_patch"],
            "test_patch": t["test_patch"], "FAIL_TO_PASS": _as_list(t["FAIL_TO_PASS"]),
            "PASS_TO_PASS": _as_list(t["PASS_TO_PASS"]), "version": t.get("version", "1.0"),
            "eval_script": script, "log_parser": "unittest", "test_cmd": t["test_cmd"],
        })
    return out


def build_instance_image(client: Any, task_id: str, repo: str | Path,
                         base_image: str = BASE_IMAGE) -> str:
    """Build ``swe-srl/sample-<task_id>:latest`` FROM the local base image with ``repo`` (a materialized git
    repo at the base commit) in /testbed. No registry is contacted. Returns the tag."""
    tag = f"swe-srl/sample-{task_id.lower().replace('__', '-')}:latest"
    return build_repo_image(client, repo, tag, base_image=base_image, labels={"swe-srl.sample": "1"})


__all__ = [
    "build_instance_image", "eval_instances",
    "SAMPLE_DIR", "SANDBOX_REPO_DIR", "apply_patch", "base_commit", "git", "list_task_ids", "load_math_tasks",
    "load_swe_task", "load_swe_tasks", "materialize_repo", "repo_files", "run_test_ids", "trajectory_path",
]
