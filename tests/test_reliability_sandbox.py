"""Reliability and security of the sandboxes under bad input (issue #16; tally in docs/reliability.md).

Real processes, real symlinks, real Docker containers (skipped without a Docker engine / the base image). The fork
bomb is bounded by the container's own pids limit (64), CPU (0.5) and memory (256 MiB): it cannot reach the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from environments.sandbox import DockerSandbox, LocalSandbox
from environments.tools import ToolRuntime
from swe_srl.core.toolcall import ToolCall

BASE_IMAGE = "swe-srl/sandbox-base:latest"


def _docker_ok() -> bool:
    try:
        import docker

        c = docker.from_env(timeout=20)
        c.ping()
        c.images.get(BASE_IMAGE)
        return True
    except Exception:
        return False


needs_docker = pytest.mark.skipif(not _docker_ok(), reason=f"needs a Docker engine and {BASE_IMAGE}")
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap)")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo with symlinks out of it: to a host file, to a host directory, to a missing host directory, and to
    a missing directory inside the repo."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text("HOST SECRET\n")
    r = tmp_path / "repo"
    r.mkdir()
    (r / "a.py").write_text("x = 1\n")
    os.symlink(host / "secret.txt", r / "secret_link")
    os.symlink(host, r / "host_dir")
    os.symlink("/etc/passwd", r / "passwd")
    os.symlink(tmp_path / "nowhere" / "dir", r / "dangling_out")
    os.symlink("missing_dir", r / "dangling_in")
    os.symlink("a.py", r / "inside_link")            # a symlink that stays inside: allowed
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "init")
    return r


def editor(rt: ToolRuntime, **args: str) -> str:
    return rt.execute(ToolCall.make("str_replace_editor", args))


def _gone(pid: int, wait: float = 10.0) -> bool:
    """The process no longer runs (absent, or a zombie nobody reaps)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.05)
    return False


# -- LocalSandbox: symlink escapes through the editor -------------------------------------------------------------
def test_local_editor_refuses_symlink_escapes(repo: Path, tmp_path: Path):
    secret = tmp_path / "host" / "secret.txt"
    with LocalSandbox(repo) as sb:
        rt = ToolRuntime(sb)
        out = editor(rt, command="view", path="/testbed/passwd")
        assert "refused" in out and "root:" not in out
        out = editor(rt, command="view", path="/testbed/secret_link")
        assert "refused" in out and "HOST SECRET" not in out
        out = editor(rt, command="view", path="/testbed/host_dir")
        assert "refused" in out and "secret.txt" not in out
        out = editor(rt, command="str_replace", path="/testbed/secret_link", old_str="HOST", new_str="PWNED")
        assert "refused" in out
        out = editor(rt, command="create", path="/testbed/host_dir/new.txt", file_text="pwned")
        assert "refused" in out
        out = editor(rt, command="insert", path="/testbed/host_dir/secret.txt", insert_line="0", new_str="pwned")
        assert "refused" in out
        # the ACI goes through the same check
        out = rt.execute(ToolCall.make("open", {"path": "/testbed/secret_link"}))
        assert "refused" in out and "HOST SECRET" not in out
        # a symlink that stays inside the repository still works
        out = editor(rt, command="view", path="/testbed/inside_link")
        assert "x = 1" in out
        with pytest.raises(PermissionError):
            sb.read_file("/testbed/secret_link")
        with pytest.raises(PermissionError):
            sb.write_file("/testbed/host_dir/secret.txt", "pwned")
    assert secret.read_text() == "HOST SECRET\n"
    assert not (tmp_path / "host" / "new.txt").exists()


@pytest.mark.parametrize("kind", ["local", pytest.param("docker", marks=needs_docker)])
def test_create_through_dangling_symlink_is_an_error_observation(repo: Path, tmp_path: Path, kind: str):
    sb = (LocalSandbox(repo) if kind == "local"
          else DockerSandbox(BASE_IMAGE, repo_path=repo, pids_limit=64, mem_limit="256m", cpus=0.5))
    with sb:
        rt = ToolRuntime(sb)
        for link in ("dangling_out", "dangling_in"):
            out = editor(rt, command="create", path=f"/testbed/{link}/f.py", file_text="print(1)\n")
            assert out.startswith("Error:"), out
            assert "\n" not in out and "swe-srl-local" not in out      # the sandbox's path, not the host copy's
        # the sandbox and the editor keep working
        assert editor(rt, command="create", path="/testbed/ok.py", file_text="y = 2\n").startswith("File created")
        assert "y = 2" in editor(rt, command="view", path="/testbed/ok.py")
    assert not (tmp_path / "nowhere").exists()


# -- LocalSandbox: processes that leave the process group ---------------------------------------------------------
@pytest.mark.parametrize("isolation", ["none", pytest.param("bwrap", marks=needs_bwrap)])
def test_local_setsid_child_killed_on_timeout(repo: Path, isolation: str):
    with LocalSandbox(repo, isolation=isolation) as sb:
        t0 = time.monotonic()
        res = sb.run("setsid sleep 777 & echo \"pid=$!\"; ls /proc/$! >/dev/null && echo alive; sleep 60", timeout=3)
        assert res.timed_out and res.exit_code == 124
        assert time.monotonic() - t0 < 20
        assert "alive" in res.output
        if isolation == "none":   # under bwrap the pid is the namespace's: the namespace itself is gone
            pid = int(res.output.split("pid=")[1].split()[0])
            assert _gone(pid), f"setsid child {pid} survived the timeout"
        after = subprocess.run(["pgrep", "-x", "-f", "sleep 777"], capture_output=True, text=True).stdout.split()
        assert all(_gone(int(p), 5) for p in after), after


def test_local_setsid_child_killed_on_close(repo: Path):
    sb = LocalSandbox(repo).start()
    try:
        res = sb.run("setsid sleep 779 >/dev/null 2>&1 & echo $!", timeout=20)
        assert res.exit_code == 0 and not res.timed_out
        pid = int(res.output.split()[-1])
        assert not _gone(pid, 0.2), "the background process should run until close()"
        assert sb.run("echo next", timeout=20).output == "next\n"      # background jobs survive between commands
        assert not _gone(pid, 0.2)
    finally:
        sb.close()
    assert _gone(pid), f"setsid child {pid} survived close()"


def test_local_background_output_waits_at_most_the_drain(repo: Path):
    with LocalSandbox(repo) as sb:
        t0 = time.monotonic()
        res = sb.run("sleep 300 & echo started", timeout=120)
        assert res.exit_code == 0 and res.output == "started\n" and not res.timed_out
        assert time.monotonic() - t0 < 30           # 2 s drain, not the 120 s timeout


@needs_bwrap
def test_local_bwrap_isolation(repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SWE_SRL_TEST_SECRET", "leaked")
    outside = tmp_path / "outside.txt"
    with LocalSandbox(repo, isolation="bwrap") as sb:
        res = sb.run(f"echo pwned > {outside}; echo rc=$?", timeout=60)
        assert "rc=0" not in res.output and not outside.exists()           # the host is read-only
        res = sb.run("echo in > new.txt && cat new.txt && echo t > /tmp/t && cat /tmp/t", timeout=60)
        assert res.output == "in\nt\n"                                     # repo and /tmp writable
        assert (Path(sb.host_root) / "new.txt").read_text() == "in\n"
        res = sb.run("cat /tmp/t; bash -c 'echo > /dev/tcp/1.1.1.1/53' 2>/dev/null && echo online || echo offline",
                     timeout=60)
        assert res.output == "t\noffline\n"                                # /tmp persists, no network
        res = sb.run("echo ${SWE_SRL_TEST_SECRET:-unset}", timeout=60)
        assert res.output == "unset\n"                                    # the host environment does not leak


def test_local_sandbox_warns_once_per_process(repo: Path):
    code = ("import sys; from environments.sandbox import LocalSandbox\n"
            "for _ in range(2):\n"
            "    with LocalSandbox(sys.argv[1]) as sb: sb.run('true')\n")
    res = subprocess.run([sys.executable, "-c", code, str(repo)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "unisolated" in lines[0] and "local" in lines[0]


# -- DockerSandbox: fork bomb ---------------------------------------------------------------------------------------
@needs_docker
def test_docker_fork_bomb_reported_and_sandbox_usable(tmp_path: Path):
    (tmp_path / "r").mkdir()
    with DockerSandbox(BASE_IMAGE, repo_path=tmp_path / "r", pids_limit=64, mem_limit="256m", cpus=0.5) as sb:
        assert sb.transport.name == "helper"
        res = sb.run(":(){ :|:& };:", timeout=30)
        assert res.killed and "pids limit (64)" in res.reason and "fork bomb" in res.reason
        assert res.exit_code == 137
        after = sb.run("echo ok; ls /proc | grep -c '^[0-9]'", timeout=30)
        assert after.exit_code == 0 and not after.killed
        lines = after.output.split()
        assert lines[0] == "ok" and int(lines[1]) <= 6, after.output   # sleep, helper, bash, ls, grep
        # and again: the sandbox survives a second bomb (the helper is the subreaper: no zombies left behind)
        assert sb.run("bomb(){ bomb | bomb & }; bomb; sleep 1", timeout=30).killed
        for _ in range(3):
            r = sb.run("echo again", timeout=30)
            assert (r.exit_code, r.output, r.killed) == (0, "again\n", False)
        # an ordinary command that does not hit the limit is not flagged
        r = sb.run("for i in 1 2 3 4 5; do sleep 0.1 & done; wait; echo done", timeout=30)
        assert (r.output, r.killed, r.reason) == ("done\n", False, "")


@needs_docker
def test_docker_disk_limit_enforced_or_reported(tmp_path: Path):
    sb = DockerSandbox(BASE_IMAGE, pids_limit=64, mem_limit="256m", cpus=0.5, disk_limit="1g")
    with sb:
        assert sb.disk_limit_enforced in (True, False)
        assert sb.run("echo up", timeout=30).output == "up\n"
