"""The bundled mini-benchmark (swe_srl.sample_tasks): tasks are real, gold patches resolve them, trajectories replay."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swe_srl import sample_tasks as st

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "swe_instance"))
import synthetic  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

TASK_IDS = st.list_task_ids()
MINI_TASKS = [t for t in TASK_IDS if st.load_swe_task(t)["trajectory"].endswith(".traj.json")]
SWEA_TASKS = [t for t in TASK_IDS if t not in MINI_TASKS]


def _files_in_diff(patch: str) -> list[str]:
    return re.findall(r"^diff --git a/(\S+) b/", patch, re.MULTILINE)


def test_inventory():
    assert len(TASK_IDS) == 4
    assert len(MINI_TASKS) == 2 and len(SWEA_TASKS) == 2
    for task in st.load_swe_tasks():
        for key in ("instance_id", "repo", "base_commit", "problem_statement", "gold_patch", "test_patch",
                    "FAIL_TO_PASS", "PASS_TO_PASS", "test_cmd", "version"):
            assert task[key], (task["instance_id"], key)
        assert task["patch"] == task["gold_patch"]
        assert all(not f.startswith("tests/") for f in _files_in_diff(task["gold_patch"]))
        assert all(f.startswith("tests/") for f in _files_in_diff(task["test_patch"]))
        sources = st.repo_files(task["instance_id"])
        assert 2 <= len([f for f in sources if f.endswith(".py") and not f.endswith("__init__.py")]) <= 4
        assert sum(t.count("\n") for f, t in sources.items() if f.endswith(".py")) < 150


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_materialize_is_deterministic(task_id, tmp_path):
    task = st.load_swe_task(task_id)
    repo = st.materialize_repo(task_id, tmp_path / "a")
    assert st.base_commit(repo) == task["base_commit"]
    assert st.git(repo, "status", "--porcelain") == ""
    with pytest.raises(FileExistsError):
        st.materialize_repo(task_id, repo)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_gold_patch_resolves_task(task_id, tmp_path):
    task = st.load_swe_task(task_id)
    repo = st.materialize_repo(task_id, tmp_path / "repo")
    st.apply_patch(repo, task["gold_patch"], check_only=True)
    st.apply_patch(repo, task["test_patch"], check_only=True)
    st.apply_patch(repo, task["test_patch"])
    tests = task["FAIL_TO_PASS"] + task["PASS_TO_PASS"]
    before = st.run_test_ids(repo, tests)
    assert not any(before[t] for t in task["FAIL_TO_PASS"]), before
    assert all(before[t] for t in task["PASS_TO_PASS"]), before
    st.apply_patch(repo, task["gold_patch"])
    after = st.run_test_ids(repo, tests)
    assert all(after.values()), after
    # the task's own test command passes too and runs every listed test
    proc = subprocess.run(task["test_cmd"].split(), cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"Ran {len(tests)} tests" in proc.stderr


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_graded_in_local_sandbox(task_id, tmp_path):
    """The one SWE grader (swebench's apply commands, the task's eval script, swebench's get_eval_report) in a
    LocalSandbox over the materialized repo: gold -> resolved, empty -> empty_patch, a patch that applies but fixes
    nothing -> unresolved (tests_failed), garbage -> unresolved (patch_apply_failed)."""
    pytest.importorskip("swebench")
    from swe_srl.swe_eval import grade_in_sandbox, local_sandbox_factory

    (inst,) = st.eval_instances([st.load_swe_task(task_id)])
    st.materialize_repo(task_id, tmp_path / "repos" / task_id)
    sandboxes = local_sandbox_factory(tmp_path / "repos")
    patches = {"gold": inst["patch"], "empty": "", "wrong": synthetic.bundled_wrong_patch(task_id, tmp_path),
               "garbage": "diff --git a/x.py b/x.py\nnot a patch\n"}
    got = {k: grade_in_sandbox(inst, p, sandboxes, log_dir=tmp_path / "logs" / k, timeout=120)
           for k, p in patches.items()}
    assert {k: (r.status, r.reason) for k, r in got.items()} == {
        "gold": ("resolved", None), "empty": ("empty_patch", "empty_patch"), "wrong": ("unresolved", "tests_failed"),
        "garbage": ("unresolved", "patch_apply_failed")}
    assert got["wrong"].tests["FAIL_TO_PASS"]["failure"] == inst["FAIL_TO_PASS"]
    assert got["gold"].tests["PASS_TO_PASS"]["success"] == inst["PASS_TO_PASS"]
    log = (tmp_path / "logs" / "gold" / task_id / "test_output.txt").read_text()
    assert log.startswith(">>>>> Applied Patch") and ">>>>> Start Test Output" in log
    assert st.git(tmp_path / "repos" / task_id, "status", "--porcelain") == ""      # the sandbox worked on a copy


def _replay_bash(command: str, repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", "-c", command.replace(st.SANDBOX_REPO_DIR, str(repo))], cwd=repo,
                          env=st.git_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


@pytest.mark.parametrize("task_id", MINI_TASKS)
def test_minisweagent_trajectory(task_id, tmp_path):
    task = st.load_swe_task(task_id)
    traj = json.loads(st.trajectory_path(task_id).read_text())
    assert set(traj) == {"info", "messages", "trajectory_format", "instance_id"}
    assert traj["trajectory_format"] == "mini-swe-agent-1.1" and traj["instance_id"] == task_id
    assert traj["info"]["exit_status"] == "Submitted"
    assert traj["info"]["submission"] == task["gold_patch"]
    msgs = traj["messages"]
    assert [m["role"] for m in msgs[:2]] == ["system", "user"] and msgs[-1]["role"] == "exit"
    assert task["problem_statement"].strip() in msgs[1]["content"]
    body = msgs[2:-1]
    assert [m["role"] for m in body] == ["assistant", "tool"] * (len(body) // 2)
    assert 4 <= len(body) // 2 <= 8
    repo = st.materialize_repo(task_id, tmp_path / "repo")
    for call, obs in zip(body[::2], body[1::2]):
        assert call["content"].startswith("THOUGHT: ")
        (block,) = re.findall(r"```bash\n(.*?)\n```", call["content"], re.DOTALL)
        (tc,) = call["tool_calls"]
        command = json.loads(tc["function"]["arguments"])["command"]
        assert command == block == call["extra"]["actions"][0]["command"]
        assert obs["tool_call_id"] == tc["id"]
        assert re.fullmatch(r"<returncode>-?\d+</returncode>\n<output>\n.*</output>", obs["content"], re.DOTALL)
        _replay_bash(command, repo)
    last = body[-2]["extra"]["actions"][0]["command"]
    assert "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" in last
    assert st.git(repo, "diff", "HEAD") == task["gold_patch"]


def _apply_editor(args: dict, repo: Path) -> None:
    if args["command"] == "view":
        return
    assert args["command"] == "str_replace", args
    path = repo / Path(args["path"]).relative_to(st.SANDBOX_REPO_DIR)
    text = path.read_text()
    assert text.count(args["old_str"]) == 1
    path.write_text(text.replace(args["old_str"], args["new_str"]))


@pytest.mark.parametrize("task_id", SWEA_TASKS)
def test_sweagent_trajectory(task_id, tmp_path):
    task = st.load_swe_task(task_id)
    traj = json.loads(st.trajectory_path(task_id).read_text())
    assert {"trajectory", "history", "info", "replay_config", "environment"} <= set(traj)
    assert traj["info"]["exit_status"] == "submitted"
    assert traj["info"]["submission"] == task["gold_patch"]
    assert json.loads(traj["replay_config"])["env"]["repo"]["base_commit"] == task["base_commit"]
    steps = traj["trajectory"]
    assert 4 <= len(steps) <= 8
    history = traj["history"]
    assert [m["role"] for m in history[:2]] == ["system", "user"]
    assert [m["role"] for m in history[2:]] == ["assistant", "tool"] * len(steps)
    tools = set()
    repo = st.materialize_repo(task_id, tmp_path / "repo")
    for i, step in enumerate(steps):
        assert {"action", "observation", "response", "thought", "state", "messages"} <= set(step)
        call, obs = history[2 + 2 * i], history[3 + 2 * i]
        assert call["action"] == step["action"] and call["thought"] == step["thought"]
        assert obs["content"][0]["text"] == "OBSERVATION:\n" + step["observation"]
        assert step["messages"] == history[: 4 + 2 * i]
        (tc,) = call["tool_calls"]
        name, args = tc["function"]["name"], json.loads(tc["function"]["arguments"])
        tools.add(name)
        if name == "bash":
            assert step["action"] == args["command"]
            _replay_bash(args["command"], repo)
        elif name == "str_replace_editor":
            assert step["action"].startswith(f"str_replace_editor {args['command']} {args['path']}")
            _apply_editor(args, repo)
        else:
            assert name == "submit" and i == len(steps) - 1
            assert step["observation"] == task["gold_patch"]
    assert tools == {"bash", "str_replace_editor", "submit"}
    assert st.git(repo, "diff", "HEAD") == task["gold_patch"]


def _boxed(text: str) -> list[str]:
    out = []
    for m in re.finditer(r"\\boxed\{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end(): i - 1].strip())
    return out


def test_math_problems():
    rows = st.load_math_tasks()
    assert len(rows) == 6
    assert len({r["id"] for r in rows}) == 6
    for r in rows:
        assert r["question"].strip() and r["answer"].strip()
        assert _boxed(r["solution"]) == [r["answer"]], r["id"]
        steps = re.findall(r"^(\d+)\. \*\*[^*\n]+\*\*", r["solution"], re.MULTILINE)
        assert 3 <= len(steps) <= 6 and steps == [str(i) for i in range(1, len(steps) + 1)], r["id"]
