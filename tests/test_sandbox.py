"""DockerSandbox / LocalSandbox: lifecycle, limits, cleanup, timeouts, diff."""

from __future__ import annotations

import os
import time

import pytest

from environments.sandbox import (LABEL, DockerSandbox, LocalSandbox, SandboxError, live_sandbox_containers,
                                  make_sandbox)

from fixtures.synthetic_repo import CALC, IMAGE, make_repo


def _ours(client):
    # ignore_removed: a container (ours or another process's) removed between the engine's list and docker-py's
    # per-container inspect is not a leftover
    return [c for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}, ignore_removed=True)
            if c.labels.get("swe-srl.owner") == str(os.getpid())]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("sb") / "repo")


@pytest.fixture(scope="module")
def image(docker_client):
    try:
        docker_client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"{IMAGE} missing: run `bash docker/build_base_image.sh`")
    return IMAGE


def test_docker_sandbox_basics(docker_client, image, repo):
    path, sha = repo
    with DockerSandbox(image, repo_path=path, base_commit=sha, client=docker_client) as sb:
        c = docker_client.containers.get(sb.container.id)
        hc = c.attrs["HostConfig"]
        assert c.labels[LABEL] == "1"
        assert hc["NetworkMode"] == "none" and hc["PidsLimit"] == 512
        assert hc["Memory"] == 2 * 1024 ** 3 and hc["NanoCpus"] == 10 ** 9
        assert sb.read_file("calc.py") == CALC                      # base commit, not the later one
        r = sb.run("echo out; echo err >&2; exit 3")
        assert (r.exit_code, r.timed_out) == (3, False) and "out" in r.output and "err" in r.output
        assert sb.run("pwd").output.strip() == "/testbed"
        assert sb.run("pwd", workdir="/tmp").output.strip() == "/tmp"
        net = sb.run("python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), timeout=2)'")
        assert net.exit_code != 0
        sb.write_file("/testbed/calc.py", CALC.replace("a + b", "b + a"))
        sb.write_file("new/file.txt", "hello\n")
        d = sb.diff()
        assert "-    return a + b\n+    return b + a" in d
        assert "diff --git a/new/file.txt b/new/file.txt\nnew file mode 100644" in d
        assert sb.run("git status --porcelain").output.strip().startswith("M calc.py")  # real index untouched
        with pytest.raises(FileNotFoundError):
            sb.read_file("missing.txt")
    assert _ours(docker_client) == []


def test_docker_timeout_kills_everything(docker_client, image):
    with DockerSandbox(image, client=docker_client) as sb:
        t = time.monotonic()
        r = sb.run("sleep 300 & (setsid sleep 301 &) ; sleep 302", timeout=1)
        assert r.timed_out and r.exit_code in (124, 137)
        assert time.monotonic() - t < 10
        ps = sb.run("ps -e -o pid=,stat=,args=").output
        alive = [ln for ln in ps.splitlines() if "sleep 30" in ln and " Z" not in ln]
        assert alive == [], ps
        assert sb.run("echo still usable").output.strip() == "still usable"
    assert _ours(docker_client) == []


def test_docker_removed_on_exception_and_interrupt(docker_client, image):
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc):
            with DockerSandbox(image, client=docker_client) as sb:
                assert sb.run("false").exit_code == 1
                raise exc()
        assert _ours(docker_client) == []


def test_docker_missing_image_is_clean_error(docker_client):
    with pytest.raises(SandboxError):
        DockerSandbox("swe-srl/does-not-exist:nope", client=docker_client).start()
    assert _ours(docker_client) == []


def test_local_sandbox(repo, tmp_path):
    path, sha = repo
    with make_sandbox("local", repo_path=path, base_commit=sha) as sb:
        assert isinstance(sb, LocalSandbox)
        assert sb.read_file("/testbed/calc.py") == CALC
        assert sb.run("pwd").output.strip() == "/testbed"          # mapped back to the virtual root
        r = sb.run("sleep 30", timeout=0.5)
        assert r.timed_out
        sb.write_file("/testbed/x.txt", "x\n")
        assert "+x" in sb.diff()
        host = sb.host_root
    assert not os.path.exists(host)
    assert (path / "calc.py").read_text().endswith("# later\n")   # the source repo is untouched


def test_make_sandbox_rejects_unknown():
    with pytest.raises(ValueError):
        make_sandbox("vm")
    assert callable(live_sandbox_containers)


INTERLEAVED = "for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done; printf tail >&2"
INTERLEAVED_OUT = "".join(f"out{i}\nerr{i}\n" for i in range(1, 9)) + "tail"


def test_docker_helper_channel_exactness_and_fallback(docker_client, image):
    """The in-container helper (fast path) and the exec-per-command path give byte-identical results; stdout and
    stderr arrive through one pipe in the order the program wrote them (as 2>&1)."""
    cmds = ["printf 'a\\0b\\xff\\n'; echo err >&2; exit 5", "env | LC_ALL=C sort", "pwd", "true",
            "cd /tmp && pwd", "umask; id -u", INTERLEAVED, "kill -9 $$", "exit 300"]
    big = "".join(f"line {i} é\n" for i in range(60000))          # > 64 KiB pipe/socket buffers, both directions
    got, raw = {}, {}
    for fast in (True, False):
        with DockerSandbox(image, client=docker_client, fast=fast) as sb:
            assert sb.transport.name == ("helper" if fast else "exec")
            res = [sb.run(c) for c in cmds]
            res.append(sb.run("pwd", workdir="/tmp"))
            sb.write_file("d/e/f.txt", "héllo\n")
            res.append(sb.read_file("/testbed/d/e/f.txt"))
            with pytest.raises(IsADirectoryError):
                sb.read_file("d")
            with pytest.raises(FileNotFoundError):
                sb.read_file("nope")
            with pytest.raises(OSError):
                sb.write_file("d", "a directory")
            res.append(sb.run("stat -c '%a %U' d/e/f.txt").output)
            sb.run("chmod 751 d/e/f.txt")
            sb.write_file("d/e/f.txt", big)                              # an existing file keeps its mode
            assert sb.read_file("d/e/f.txt") == big
            res.append(sb.run("stat -c '%a %U %s' d/e/f.txt").output)
            res.append(sb.run("cat d/e/f.txt; echo done >&2").output == big + "done\n")
            got[fast] = [(r.exit_code, r.output.replace(sb.container.id[:12], "<host>"), r.timed_out)
                         if hasattr(r, "exit_code") else r for r in res]
            raw[fast] = [sb.transport.exec(["bash", "-c", c], cwd=sb.workdir, timeout=60) for c in cmds
                         if not c.startswith("env")]                   # env holds the container's hostname
    assert got[True][0] == (5, "a\x00b\ufffd\nerr\n", False)
    assert got[True][6] == (0, INTERLEAVED_OUT, False)
    assert got[True][7][0] == 137 and got[True][8][0] == 44
    assert got[True][-1] is True and got[True][-2] == f"751 root {len(big.encode())}\n"
    assert got[True] == got[False]
    assert raw[True] == raw[False]                                      # byte-identical, before any decoding
    assert raw[True][0].out == b"a\x00b\xff\nerr\n"
    assert _ours(docker_client) == []


def test_local_sandbox_merges_output_in_write_order(repo):
    path, sha = repo
    with LocalSandbox(path, sha) as sb:
        assert sb.run(INTERLEAVED).output == INTERLEAVED_OUT
        r = sb.run("printf 'a\\0b\\xff\\n'; echo err >&2; exit 5")
        assert (r.exit_code, r.output) == (5, "a\x00b\ufffd\nerr\n")


def test_docker_falls_back_to_exec_without_python3(docker_client, image, repo, monkeypatch):
    from environments.sandbox import docker_sandbox

    monkeypatch.setattr(docker_sandbox, "HELPER_PYTHON", "python3-missing")
    path, sha = repo
    with DockerSandbox(image, repo_path=path, base_commit=sha, client=docker_client) as sb:
        assert sb.transport.name == "exec"
        assert sb.read_file("calc.py") == CALC
        assert sb.run(INTERLEAVED).output == INTERLEAVED_OUT
        sb.write_file("calc.py", CALC.replace("a + b", "b + a"))
        assert "+    return b + a" in sb.diff()
    assert _ours(docker_client) == []


def test_docker_sandbox_uses_no_private_attributes():
    """Only `self._x` inside the module: no private attribute of docker-py (or any other) object is touched."""
    import ast
    import inspect

    from environments.sandbox import docker_sandbox

    def private(name) -> bool:
        return isinstance(name, str) and name.startswith("_") and not name.startswith("__")

    tree = ast.parse(inspect.getsource(docker_sandbox))
    bad = [f"{ast.unparse(n)} (line {n.lineno})" for n in ast.walk(tree)
           if isinstance(n, ast.Attribute) and private(n.attr)
           and not (isinstance(n.value, ast.Name) and n.value.id == "self")]
    bad += [f"{ast.unparse(n)} (line {n.lineno})" for n in ast.walk(tree)       # getattr(sock, "_sock", ...)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "setattr")
            and len(n.args) > 1 and isinstance(n.args[1], ast.Constant) and private(n.args[1].value)]
    assert bad == []


def test_docker_helper_survives_kill_all(docker_client, image):
    with DockerSandbox(image, client=docker_client) as sb:
        r = sb.run("kill -9 -1")
        assert r.exit_code == 137 and not r.timed_out
        assert sb.run("echo back").output == "back\n"           # a fresh helper took over
        assert sb.transport.name == "helper"
    assert _ours(docker_client) == []
