"""Replay of hand-written trajectories (bash / str_replace_editor / ACI) in Docker and locally; expected
observations are written out by hand here, not produced by the code under test."""

from __future__ import annotations

import json
import os

import pytest

from environments.replay import normalize_observation, replay_trajectory
from environments.sandbox import LABEL, DockerSandbox
from environments.sandbox.images import instance_image_name
from environments.tools import ToolRuntime
from fixtures.synthetic_repo import IMAGE, make_repo, step, traj
from swe_srl.core.toolcall import ToolCall

CALC_PATCH = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,5 +1,5 @@
 def add(a, b):
-    return a + b
+    return b + a
 
 
 def sub(a, b):
"""
EMPTY = "Your command ran successfully and did not produce any output."


def bash_traj(sha):
    return traj([
        step("bash", "calc.py\nlong.py\npkg", command="ls"),
        step("bash", "util.py", command="cd pkg && ls"),
        step("bash", "/testbed/pkg", command="pwd"),
        step("bash", EMPTY, command="sed -i 's/a + b/b + a/' /testbed/calc.py"),
        step("bash", "4\nboom", command="python3 -c 'print(2 + 2)'; echo boom >&2; exit 1"),
        step("submit", None),
    ], CALC_PATCH, base_commit=sha)


def editor_traj(sha):
    e = "str_replace_editor"
    full = ("Here's the result of running `cat -n` on /testbed/calc.py:\n     1\tdef add(a, b):\n"
            "     2\t    return a + b\n     3\t\n     4\t\n     5\tdef sub(a, b):\n     6\t    return a - b  # sub\n"
            "     7\t")
    return traj([
        step(e, full.replace("  # sub", ""), command="view", path="/testbed/calc.py"),
        step(e, "The file /testbed/calc.py has been edited. Here's the result of running `cat -n` on a snippet of "
                "/testbed/calc.py:\n     2\t    return a + b\n     3\t\n     4\t\n     5\tdef sub(a, b):\n"
                "     6\t    return a - b  # sub\n     7\t\nReview the changes and make sure they are as expected. "
                "Edit the file again if necessary.",
             command="str_replace", path="/testbed/calc.py", old_str="    return a - b", new_str="    return a - b  # sub"),
        step(e, "File created successfully at: /testbed/new.py", command="create", path="/testbed/new.py",
             file_text="print('hi')\n"),
        step(e, "The file /testbed/calc.py has been edited. Here's the result of running `cat -n` on a snippet of "
                "the edited file:\n     1\timport os\n     2\tdef add(a, b):\n     3\t    return a + b\n     4\t\n"
                "     5\t\nReview the changes and make sure they are as expected (correct indentation, no duplicate "
                "lines, etc). Edit the file again if necessary.",
             command="insert", path="/testbed/calc.py", insert_line="0", new_str="import os"),
        step(e, "Last edit to /testbed/calc.py undone successfully. " + full, command="undo_edit",
             path="/testbed/calc.py"),
        step(e, "No replacement was performed. Multiple occurrences of old_str `return a` in lines [2, 6]. Please "
                "ensure it is unique", command="str_replace", path="/testbed/calc.py", old_str="return a",
             new_str="x"),
        step(e, "The path /testbed/nope.py does not exist. Please provide a valid path.", command="view",
             path="/testbed/nope.py"),
        step(e, "Error: access to /etc/passwd refused: the path is outside the repository root /testbed.",
             command="view", path="/etc/passwd"),
        step("submit", None),
    ], """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -3,4 +3,4 @@ def add(a, b):
 
 
 def sub(a, b):
-    return a - b
+    return a - b  # sub
diff --git a/new.py b/new.py
new file mode 100644
--- /dev/null
+++ b/new.py
@@ -0,0 +1 @@
+print('hi')
\\ No newline at end of file
""", base_commit=sha)


def _win(lo, hi, above=0, below=0, path="/testbed/long.py", total=150, sub=None):
    sub = sub or {}
    rows = [f"[File: {path} ({total} lines total)]"]
    rows += [f"({above} more lines above)"] if above else []
    rows += [f"{i}:{sub.get(i, f'x{i} = {i}')}" for i in range(lo, hi + 1)]
    rows += [f"({below} more lines below)"] if below else []
    return "\n".join(rows) + "\n"


def aci_traj(sha):
    updated = ("File updated. Please review the changes and make sure they are correct (correct indentation, no "
               "duplicate lines, etc). Edit the file again if necessary.\n")
    two = {2: "x2 = 'two'"}
    lint = ("Your proposed edit has introduced new syntax error(s). Please understand the fixes and retry your edit "
            "commmand.\n\nERRORS:\n- E999 IndentationError: unexpected indent\n\n"
            "This is how your edit would have looked if applied\n"
            "-------------------------------------------------\n"
            + _win(1, 10, below=140, sub={**two, 3: "    x3 = ("})
            + "-------------------------------------------------\n\n"
            "This is the original code before your edit\n"
            "-------------------------------------------------\n"
            + _win(1, 10, below=140, sub=two)
            + "-------------------------------------------------\n"
            "Your changes have NOT been applied. Please fix your edit command and try again.\n"
            "You either need to 1) Specify the correct start/end line arguments or 2) Correct your edit code.\n"
            "DO NOT re-run the same failed edit command. Running it again will lead to the same error.\n")
    return traj([
        step("open", _win(1, 100, below=50), path="long.py"),
        step("goto", _win(51, 150, above=50), line_number="120"),
        step("scroll_up", _win(1, 100, below=50)),
        step("scroll_down", _win(51, 150, above=50)),
        step("search_file", 'Found 1 matches for "x12 =" in /testbed/long.py:\nLine 12:x12 = 12\n'
                            'End of matches for "x12 =" in /testbed/long.py\n', search_term="x12 ="),
        step("search_dir", 'Found 3 matches for "return" in /testbed:\n/testbed/calc.py (2 matches)\n'
                           '/testbed/pkg/util.py (1 matches)\nEnd of matches for "return" in /testbed\n',
             search_term="return"),
        step("find_file", 'Found 1 matches for "util.py" in /testbed:\n/testbed/pkg/util.py\n', file_name="util.py"),
        step("search_dir", "Directory nowhere not found\n", search_term="x", dir="nowhere"),
        step("edit", _win(1, 100, below=50, sub=two) + updated, start_line="2", end_line="2",
             replacement_text="x2 = 'two'\n"),
        step("edit", lint, start_line="3", end_line="3", replacement_text="    x3 = (\n"),
        step("create", "[File: /testbed/reproduce.py (1 lines total)]\n1:\n", filename="reproduce.py"),
        step("edit", "[File: /testbed/reproduce.py (1 lines total)]\n1:print('ok')\n" + updated,
             start_line="1", end_line="1", replacement_text="print('ok')\n"),
        step("bash", "ok\n", command="python3 reproduce.py"),
        step("open", "Error: access to ../etc/passwd refused: the path is outside the repository root /testbed.",
             path="../etc/passwd"),
        step("submit", None),
    ], """diff --git a/long.py b/long.py
--- a/long.py
+++ b/long.py
@@ -1,5 +1,5 @@
 x1 = 1
-x2 = 2
+x2 = 'two'
 x3 = 3
 x4 = 4
 x5 = 5
diff --git a/reproduce.py b/reproduce.py
new file mode 100644
--- /dev/null
+++ b/reproduce.py
@@ -0,0 +1 @@
+print('ok')
""", fmt="sweagent_0x", base_commit=sha)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("replay") / "repo")


def _ours(client):
    return [c for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}, ignore_removed=True)
            if c.labels.get("swe-srl.owner") == str(os.getpid())]


BUILDERS = {"bash": bash_traj, "editor": editor_traj, "aci": aci_traj}


@pytest.fixture(params=["docker", "local"])
def backend(request):
    if request.param == "docker":
        request.getfixturevalue("docker_client")
    return request.param


@pytest.mark.parametrize("family", list(BUILDERS))
def test_replay_reproduces_exactly(backend, family, repo):
    path, sha = repo
    t = BUILDERS[family](sha)
    res = replay_trajectory(t, backend=backend, repo_path=str(path), timeout=30)
    assert res.error is None
    for i, s in enumerate(t.steps):
        if s.observation is not None:
            assert res.observations[i] == s.observation, f"step {i}: {res.observations[i]!r}"
            assert res.step_fidelity[i] == 1.0
    assert res.diverged_steps == []
    assert res.patch_match is True, res.patch


def test_divergence_detected(backend, repo):
    path, sha = repo
    t = bash_traj(sha)
    t.steps[1].observation = "tests.py\nsetup.py\nREADME.md"          # wrong recording
    t.steps[4].observation = "4\nboom\n"                                # noise-only difference: fine
    t.patch = CALC_PATCH.replace("b + a", "a * b")
    res = replay_trajectory(t, backend=backend, repo_path=str(path))
    assert res.diverged_steps == [1]
    assert res.step_fidelity[4] == 1.0
    assert res.patch_match is False


def test_failing_action_and_timeout_leave_no_container(docker_client, repo):
    path, sha = repo
    t = traj([step("bash", "", command="exit 7"), step("bash", None, command="sleep 100")], None, base_commit=sha)
    res = replay_trajectory(t, backend="docker", repo_path=str(path), timeout=1)
    assert res.error is None and "cancelled" in res.observations[1]
    res = replay_trajectory(t, backend="docker", image="swe-srl/none:nope", repo_path=str(path))
    assert res.error and res.error.startswith("sandbox:")
    assert _ours(docker_client) == []


def test_unsupported_steps_are_skipped(repo):
    path, sha = repo
    t = traj([step("plan", "x", text="{}"), step("bash", "calc.py\nlong.py\npkg", command="ls")], None,
             base_commit=sha)
    res = replay_trajectory(t, backend="local", repo_path=str(path))
    assert res.unsupported_steps == [0] and res.step_fidelity == [None, 1.0]


def test_default_image_is_swebench_instance_image_name():
    """replay's default docker image (no repo_path) is instance_image_name: for an id swebench does not know,
    swebench's formula (local: ``__`` kept; namespaced: ``__`` spelled ``_1776_``)."""
    assert instance_image_name("sample__intervals-1") == "sweb.eval.x86_64.sample__intervals-1:latest"
    assert (instance_image_name("Django__django-11099", namespace="swebench", tag="v1")
            == "swebench/sweb.eval.x86_64.django_1776_django-11099:v1")


def test_default_image_matches_swebench_on_a_real_row(shared_data):
    """What swebench itself produces for a real SWE-bench Verified row (psf__requests: its TestSpec is built
    offline), locally and under the swebench namespace."""
    from swebench.harness.test_spec.test_spec import make_test_spec

    rows = (json.loads(line) for line in
            (shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl").read_text().splitlines())
    row = next(r for r in rows if r["instance_id"] == "psf__requests-1142")
    assert instance_image_name(row["instance_id"]) == make_test_spec(row).instance_image_key
    assert (instance_image_name(row["instance_id"], namespace="swebench")
            == make_test_spec(row, namespace="swebench").instance_image_key)


def test_normalization_masks_noise():
    a = normalize_observation("ran in 0.53s at 0x7f3a2b1c /tmp/pytest-12/x.py commit 3f9a2c1d\r\n", ("/testbed",))
    b = normalize_observation("ran in 1.2s at 0x55aa /tmp/abc/x.py commit 9e8d7c6b", ("/testbed",))
    assert a == b


CODER = "sweagent_traj/coder_swebench_lite/trajs/django__django-11049.traj"


def _skeleton(obs: str) -> list[str]:
    """Header, markers and line numbers of a window, without the file's text."""
    out = []
    for ln in obs.split("\n"):
        head = ln.split(":", 1)[0]
        out.append(head if head.isdigit() else ln)
    return out


def test_coder_aci_window_format(docker_client, shared_data, tmp_path):
    """First ACI steps of a real CodeR 0.x trajectory on a synthetic file with the recorded line count."""
    d = json.loads((shared_data / "swe_trajectories" / CODER).read_text())
    steps = [s for s in d["trajectory"] if s["action"].split()[0] in ("open", "goto", "scroll_down", "scroll_up")]
    first = steps[0]
    header = first["observation"].split("\n", 1)[0]          # [File: /django__django/<path> (N lines total)]
    root = "/django__django"
    rel = header.split(" ", 2)[1][len(root) + 1:]
    total = int(header.rsplit("(", 1)[1].split()[0])
    repo = tmp_path / "repo"
    (repo / rel).parent.mkdir(parents=True)
    (repo / rel).write_text("".join(f"line {i}\n" for i in range(1, total + 1)))
    checked = 0
    with DockerSandbox(IMAGE, repo_path=repo, workdir=root, client=docker_client) as sb:
        rt = ToolRuntime(sb, bash_style="sweagent0")
        for s in steps[:6]:
            parts = s["action"].split()
            if parts[0] == "open":
                if not s["observation"].startswith(f"[File: {root}/{rel} "):
                    break                                    # another file: stop here
                call = ToolCall.make("open", {"path": parts[1], "line_number": parts[2] if len(parts) > 2 else None})
            elif parts[0] == "goto":
                call = ToolCall.make("goto", {"line_number": parts[1]})
            else:
                call = ToolCall.make(parts[0], {})
            got = rt.execute(call)
            assert _skeleton(got) == _skeleton(s["observation"]), s["action"]
            checked += 1
    assert checked >= 2
    assert _ours(docker_client) == []


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_parallel_replay_in_collect_is_deterministic(tmp_path, backend, request):
    """--workers 2 replays trajectories concurrently but commits the same records in the same order as 1 worker."""
    if backend == "docker":
        request.getfixturevalue("docker_client")
    from environments.collect import CollectOptions, collect_swe
    from swe_srl.sample_tasks import base_commit, load_swe_tasks, materialize_repo, trajectory_path

    smap, files = {}, []
    for t in load_swe_tasks():
        r = materialize_repo(t["instance_id"], tmp_path / "repos" / t["instance_id"])
        smap[t["instance_id"]] = {"repo_path": str(r), "commit": base_commit(r)}
        files.append(str(trajectory_path(t["instance_id"])))
    (tmp_path / "map.json").write_text(json.dumps(smap))
    outs = {}
    for w in (1, 2):
        m = collect_swe(files, tmp_path / f"w{w}", CollectOptions(replay=backend, sandbox_map=str(tmp_path / "map.json"),
                                                                   workers=w), progress=False)
        assert all(e["error"] is None and e["patch_match"] for e in m["replay"].values())
        # same records in the same order; regenerated observations may differ only in noise (test timings)
        outs[w] = [(r["id"], r["target"], normalize_observation(json.dumps(r["prompt"])))
                   for r in map(json.loads, (tmp_path / f"w{w}" / "steps.jsonl").read_text().splitlines())]
    assert outs[1] == outs[2] and len(outs[1]) == 24
    if backend == "docker":
        assert _ours(request.getfixturevalue("docker_client")) == []


# -- per-format execution semantics (issue 13) ---------------------------------------------------------------------
def _mini(out, rc=0):
    return f"<returncode>{rc}</returncode>\n<output>\n{out}</output>"


def test_mini_swe_agent_runs_each_action_in_a_fresh_subshell(backend, repo):
    """mini-swe-agent: every action is a new `bash -c` in the repo root: `cd pkg && ls` works twice, an exported
    variable is gone at the next action."""
    path, sha = repo
    t = traj([step("bash", _mini("util.py\n"), command="cd pkg && ls"),
              step("bash", _mini("util.py\n"), command="cd pkg && ls"),
              step("bash", _mini("/testbed\n"), command="pwd"),
              step("bash", _mini(""), command="export X=1"),
              step("bash", _mini("[]\n"), command="echo \"[$X]\"")], None, fmt="minisweagent", base_commit=sha)
    res = replay_trajectory(t, backend=backend, repo_path=str(path), timeout=30)
    assert res.error is None and res.exec_spec["shell"] == "fresh"
    assert res.observations == [s.observation for s in t.steps]
    assert [s["status"] for s in res.steps] == ["exact"] * 5


def test_sweagent_and_openhands_keep_one_shell_session(backend, repo):
    """SWE-agent / OpenHands: one persistent shell: the second `cd pkg` fails (already in pkg), the cwd and an
    exported variable carry over to later actions."""
    path, sha = repo
    for fmt in ("sweagent_1x", "openhands_completions"):
        t = traj([step("bash", "util.py", command="cd pkg && ls"),
                  step("bash", None, command="cd pkg && ls"),
                  step("bash", "/testbed/pkg", command="pwd"),
                  step("bash", EMPTY, command="export X=1"),
                  step("bash", "[1]", command="echo \"[$X]\""),
                  step("bash", "[1] /testbed", command="cd /testbed && echo \"[$X] $(pwd)\"")], None, fmt=fmt,
                 base_commit=sha)
        res = replay_trajectory(t, backend=backend, repo_path=str(path), timeout=30)
        assert res.error is None and res.exec_spec["shell"] == "persistent"
        assert "No such file or directory" in res.observations[1] and "pkg" in res.observations[1]
        for i in (0, 2, 3, 4, 5):
            assert res.observations[i] == t.steps[i].observation, (fmt, i, res.observations[i])


def test_recorded_environment_and_timeout_are_used(backend, repo):
    """The trajectory's recorded env vars and per-command timeout (mini-swe-agent info.config.environment) apply;
    an explicit timeout overrides the recorded one."""
    path, sha = repo
    t = traj([step("bash", _mini("bar cat\n"), command="echo $FOO $PAGER"),
              step("bash", None, command="sleep 20; echo late")], None, fmt="minisweagent", base_commit=sha)
    t.meta.update(exec_env={"FOO": "bar", "PAGER": "cat"}, exec_timeout=1.0)
    res = replay_trajectory(t, backend=backend, repo_path=str(path))
    assert res.observations[0] == t.steps[0].observation
    assert res.timed_out_steps == [1] and "more than 1 seconds" in res.observations[1]
    assert res.exec_spec["timeout"] == 1.0
    res = replay_trajectory(t, backend=backend, repo_path=str(path), timeout=30)
    assert res.timed_out_steps == [] and res.observations[1] == _mini("late\n")


def _mini_submit_traj(sha, patch):
    sub = step("submit", None)
    sub.raw_action = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat patch.txt"
    return traj([step("bash", _mini(""), command="sed -i 's/a + b/b + a/' calc.py"),
                 step("bash", _mini(""), command="echo 'print(1)' > scratch.py"),
                 step("bash", _mini(""), command="git diff -- calc.py > patch.txt"),
                 sub], patch, fmt="minisweagent", base_commit=sha)


def test_mini_submit_is_compared_as_submitted(backend, repo):
    """mini-swe-agent 2.x submits `cat patch.txt` (the files it chose); the agent's scratch files (patch.txt,
    scratch.py) are extras of the whole tree, reported apart, not a mismatch."""
    path, sha = repo
    res = replay_trajectory(_mini_submit_traj(sha, CALC_PATCH), backend=backend, repo_path=str(path), timeout=30)
    assert res.error is None
    pc = res.patch_check
    assert res.patch_match is True and pc["submission_match"] is True
    assert pc["whole_tree_match"] is False
    assert pc["tree_extra_files"] == ["patch.txt", "scratch.py"]
    assert pc["submitted_files"] == pc["matched_files"] == 1
    assert "diff --git a/calc.py b/calc.py" in res.patch and "scratch.py" not in res.patch
    wrong = CALC_PATCH.replace("b + a", "a * b")
    res = replay_trajectory(_mini_submit_traj(sha, wrong), backend=backend, repo_path=str(path), timeout=30)
    assert res.patch_match is False and res.patch_check["mismatched_files"] == ["calc.py"]
    assert res.patch_check["submission_match"] is False


def test_failed_sandbox_returns_no_observations(backend, repo):
    """A sandbox that cannot start (missing image) or check out the base commit is a failure with its stage and
    no observation at all (the recorded ones are never passed off as replayed)."""
    path, sha = repo
    t = bash_traj("0" * 40)
    res = replay_trajectory(t, backend=backend, repo_path=str(path))
    assert res.error and res.stage == "checkout", (res.error, res.stage)
    assert res.observations == [None] * len(t.steps) and res.patch_match is None
    assert {s["status"] for s in res.steps} == {"skipped"}
    if backend == "docker":
        res = replay_trajectory(bash_traj(sha), backend="docker", image="swe-srl/none:nope")
        assert res.error and res.stage == "start" and res.observations == [None] * len(t.steps)


DJANGO_IMAGE = "sweb.eval.x86_64.django__django-11099:latest"


def _image_or_skip(client, name):
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{name} not built (swe-srl images build)")


def test_index_only_network_blocks_everything_else(docker_client):
    """--sandbox-network: the container has a network, but the guard (installed from a sidecar in its network
    namespace) drops every packet except TCP 443 to the pinned index addresses; the sandbox itself cannot lift it
    (no NET_ADMIN)."""
    from environments.images.sandbox import index_only_network

    _image_or_skip(docker_client, DJANGO_IMAGE)
    probe = ("import socket,sys\na = sys.argv[1:]\nfor host, port in zip(a[::2], a[1::2]):\n"
             "    s = socket.socket(); s.settimeout(3)\n"
             "    try:\n        s.connect((host, int(port))); print(host, 'open')\n"
             "    except socket.timeout:\n        print(host, 'blocked')\n"
             "    except PermissionError:\n        print(host, 'blocked')\n"
             "    except OSError as e:\n        print(host, type(e).__name__)\n")
    with DockerSandbox(DJANGO_IMAGE, network=True, client=docker_client) as sb:
        sb.write_file("/tmp/probe.py", probe)
        gw = sb.run("ip route 2>/dev/null | awk '/default/ {print $3}'").output.strip() or "172.17.0.1"
        before = sb.run(f"python3 /tmp/probe.py {gw} 1", timeout=60).output     # the host: refused (a reply)
        index_only_network(sb, addresses={"index.test": ["203.0.113.80"]})
        assert "203.0.113.80 index.test" in sb.run("cat /etc/hosts").output
        out = sb.run(f"python3 /tmp/probe.py 10.1.2.3 80 192.168.0.1 443 1.1.1.1 443 {gw} 1", timeout=60).output
        assert out.count("blocked") == 4, out                                  # dropped, no reply at all
        if "ConnectionRefusedError" in before:
            assert f"{gw} blocked" in out
        res = sb.run("iptables -w -F OUTPUT; iptables -w -P OUTPUT ACCEPT", timeout=60)
        assert res.exit_code != 0                                              # no NET_ADMIN in the sandbox
        assert "blocked" in sb.run("python3 /tmp/probe.py 1.1.1.1 443", timeout=60).output
    assert _ours(docker_client) == []


def test_network_guard_failure_runs_nothing(docker_client, repo, monkeypatch):
    """When the guard cannot be installed the replay fails at stage `network` and no action runs."""
    import environments.images.sandbox as isb

    _image_or_skip(docker_client, DJANGO_IMAGE)
    monkeypatch.setattr(isb, "index_addresses", lambda: {})
    t = traj([step("bash", "x", command="echo x")], None, fmt="minisweagent")
    res = replay_trajectory(t, backend="docker", image=DJANGO_IMAGE, network="index")
    assert res.error and res.stage == "network" and res.observations == [None]
    assert _ours(docker_client) == []


def test_real_django_trajectory_replays_on_its_instance_image(docker_client, shared_data):
    """CI-sized variant of benchmarks/replay_real_repos.py: the CodeR (SWE-agent 0.x) run of django__django-11099
    replayed on its local instance image reproduces its submitted patch, with no diverged step."""
    from environments.trajectories import read_trajectories

    _image_or_skip(docker_client, DJANGO_IMAGE)
    path = shared_data / "swe_trajectories/sweagent_traj/coder_swebench_lite/trajs/django__django-11099.traj"
    (t,) = read_trajectories(path)
    res = replay_trajectory(t, backend="docker")
    assert res.error is None and res.exec_spec["shell"] == "persistent"
    assert res.patch_match is True and res.patch_check["tree_extra_files"] == []
    assert res.diverged_steps == [] and res.unsupported_steps == []      # CodeR's plan/succeed are not steps
    assert {s["status"] for s in res.steps} <= {"exact", "near"} and res.steps[-1]["kind"] == "submit"
    assert _ours(docker_client) == []
