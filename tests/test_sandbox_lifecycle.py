"""Container lifecycle (issue 13, item 5): owner labels, removal of the containers whose owner is gone (running or
created-but-never-started), `swe-srl sandbox prune`, and zero containers after kill -9 + rerun / SIGINT / SIGTERM.

The Docker engine is shared: every test here only ever removes containers that carry its own run id
(``swe-srl.run``), and the prune runs are scoped with ``--run``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from typer.testing import CliRunner

from environments.sandbox import LABEL, DockerSandbox
from environments.sandbox import lifecycle as lc
from swe_srl.cli import app

from test_reliability_interrupt import (HANG, check_complete, cli_env, interrupt_lines, ledger_lines,
                                        make_trajectories, start, wait_until)


def dead_process_labels(run: str) -> dict[str, str]:
    """The owner labels of a process that really existed and is gone now."""
    p = subprocess.Popen(["sleep", "60"])
    labels = {LABEL: "1", lc.LABEL_RUN: run, lc.LABEL_OWNER: str(p.pid), lc.LABEL_OWNER_START: lc.process_start(p.pid),
              lc.LABEL_BOOT: lc.boot_id(), lc.LABEL_HOST: socket.gethostname(), lc.LABEL_COMMAND: "test",
              lc.LABEL_CREATED: "2026-01-01T00:00:00Z"}
    p.kill()
    p.wait()
    return labels


# -- owner state (no engine) ---------------------------------------------------------------------------------------
def test_owner_state_alive_dead_reused_foreign():
    me = lc.owner_labels()
    assert lc.owner_state(me) == lc.ALIVE
    assert me[lc.LABEL_OWNER] == str(os.getpid()) and me[lc.LABEL_RUN] == lc.run_id()
    assert me[lc.LABEL_OWNER_START] == lc.process_start(os.getpid()) != "?"
    assert lc.owner_state(dead_process_labels("x")) == lc.DEAD
    # a live pid that belongs to a process started at another time: the owner is gone, the pid was reused
    assert lc.owner_state({**me, lc.LABEL_OWNER_START: str(int(me[lc.LABEL_OWNER_START]) + 1)}) == lc.DEAD
    assert lc.owner_state({**me, lc.LABEL_BOOT: str(uuid.uuid4())}) == lc.DEAD       # this host rebooted since
    assert lc.owner_state({**me, lc.LABEL_HOST: "another-host-" + uuid.uuid4().hex}) == lc.FOREIGN
    # containers of older versions carry the pid only: a live pid keeps them, a gone one does not
    assert lc.owner_state({lc.LABEL_OWNER: str(os.getpid())}) == lc.ALIVE
    assert lc.owner_state({lc.LABEL_OWNER: dead_process_labels("x")[lc.LABEL_OWNER]}) == lc.DEAD
    assert lc.owner_state({lc.LABEL_OWNER: ""}) == lc.FOREIGN


def test_run_id_from_environment(monkeypatch):
    monkeypatch.setenv(lc.RUN_ID_ENV, "my-run-7")
    assert lc.owner_labels()[lc.LABEL_RUN] == "my-run-7"
    monkeypatch.delenv(lc.RUN_ID_ENV)
    assert lc.run_id() == lc.run_id() != "my-run-7"


# -- with the engine -----------------------------------------------------------------------------------------------
@pytest.fixture()
def run_ids(docker_client):
    """Fresh run ids for one test; whatever still carries them at the end is removed (only those)."""
    made: list[str] = []

    def new() -> str:
        made.append(f"test-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    for r in made:
        for c in docker_client.containers.list(all=True, filters={"label": f"{lc.LABEL_RUN}={r}"}):
            lc.remove_container(c)


def of_run(client, run: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{lc.LABEL_RUN}={run}"}, ignore_removed=True)


def test_sandbox_containers_carry_run_and_owner_labels(docker_client, sandbox_base_image, run_ids, monkeypatch):
    run = run_ids()
    monkeypatch.setenv(lc.RUN_ID_ENV, run)
    with DockerSandbox(sandbox_base_image) as sb:
        labels = docker_client.containers.get(sb.container.id).labels
        assert labels[LABEL] == "1" and labels[lc.LABEL_RUN] == run
        assert labels[lc.LABEL_OWNER] == str(os.getpid())
        assert labels[lc.LABEL_OWNER_START] == lc.process_start(os.getpid())
        assert labels[lc.LABEL_BOOT] == lc.boot_id() and labels[lc.LABEL_HOST] == socket.gethostname()
        assert labels[lc.LABEL_COMMAND] and labels[lc.LABEL_CREATED].endswith("Z")
        assert lc.owner_state(labels) == lc.ALIVE
    assert of_run(docker_client, run) == []


def test_prune_removes_dead_owners_containers_even_never_started(docker_client, sandbox_base_image, run_ids):
    run = run_ids()
    dead = docker_client.containers.create(sandbox_base_image, ["sleep", "600"], labels=dead_process_labels(run),
                                           network_mode="none")
    running_dead = docker_client.containers.run(sandbox_base_image, ["sleep", "600"], detach=True,
                                                labels=dead_process_labels(run), network_mode="none")
    live = docker_client.containers.create(sandbox_base_image, ["sleep", "600"], network_mode="none",
                                           labels={LABEL: "1", **lc.owner_labels(), lc.LABEL_RUN: run})
    assert docker_client.containers.get(dead.id).status == "created"
    runner = CliRunner()
    res = runner.invoke(app, ["sandbox", "prune", "--dry-run", "--run", run, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in map(json.loads, res.output.splitlines())}
    assert rows[dead.id[:12]]["action"] == rows[running_dead.id[:12]]["action"] == "would remove"
    assert rows[live.id[:12]]["action"] == "kept" and rows[live.id[:12]]["owner_state"] == "alive"
    assert len(of_run(docker_client, run)) == 3                     # a dry run removes nothing
    res = runner.invoke(app, ["sandbox", "prune", "--run", run])
    assert res.exit_code == 0, res.output
    assert "removed 2 container(s), kept 1" in res.output
    assert [c.id for c in of_run(docker_client, run)] == [live.id]  # the live owner's container stays
    res = runner.invoke(app, ["sandbox", "prune", "--all", "--run", run])
    assert res.exit_code == 0 and "removed 1 container(s)" in res.output, res.output
    assert of_run(docker_client, run) == []


def _docker_collect(trajs, smap, out, workers: int = 2) -> list[str]:
    return ["collect", "--trajectories", str(trajs), "--out", str(out), "--replay", "docker", "--sandbox-map",
            str(smap), "--workers", str(workers), "--no-progress"]


def test_kill9_during_docker_replay_then_rerun_leaves_zero_containers(tmp_path, docker_client, sandbox_base_image,
                                                                      run_ids):
    copies = 3
    trajs, smap = make_trajectories(tmp_path, copies)
    out = tmp_path / "out"
    killed, rerun = run_ids(), run_ids()
    proc = start(_docker_collect(trajs, smap, out), tmp_path, **{lc.RUN_ID_ENV: killed})
    wait_until(lambda: ledger_lines(out) >= 1 and of_run(docker_client, killed), "replay container", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=HANG)
    assert of_run(docker_client, killed), "the killed run left no container: nothing was tested"
    res = subprocess.run([sys.executable, "-m", "swe_srl.cli", *_docker_collect(trajs, smap, out)], cwd=tmp_path,
                         env=cli_env(**{lc.RUN_ID_ENV: rerun}), capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr
    assert "leftover sandbox container(s) of processes that are gone" in res.stderr
    assert of_run(docker_client, killed) == []          # removed by the rerun, before its own first sandbox
    assert of_run(docker_client, rerun) == []           # and the rerun removed its own
    check_complete(out, copies)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_during_docker_replay_removes_its_containers(tmp_path, docker_client, sandbox_base_image, run_ids,
                                                            sig):
    copies = 3
    trajs, smap = make_trajectories(tmp_path, copies)
    out = tmp_path / "out"
    run = run_ids()
    proc = start(_docker_collect(trajs, smap, out), tmp_path, **{lc.RUN_ID_ENV: run})
    wait_until(lambda: ledger_lines(out) >= 1 and of_run(docker_client, run), "replay container", proc)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    rc = proc.wait(timeout=HANG)
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 128 + sig, err
    assert len(interrupt_lines(err)) == 1 and "Traceback" not in err, err
    assert of_run(docker_client, run) == []            # no rerun needed: the interrupted process removed them
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
