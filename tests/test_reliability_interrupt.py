"""Reliability under interruption (issue 16, item 3), with real processes and real signals.

`swe-srl collect --workers 2` (with a replay, so every unit takes real time in a sandbox) is started in its own
process group, like a command in a terminal, and then:
- Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130, ONE line on stderr saying how to
  resume, no traceback, manifest "status": "interrupted", no worker left; the rerun completes with every unit exactly
  once (no loss, no duplicate);
- SIGTERM to the main process only: the same with exit 143;
- kill -9 of the main process: every pool worker dies with it (parent-death signal), checked by pid;
- math collect: SIGINT mid-run, manifest interrupted, resume complete.
The waits poll the output files for progress (a deadline only bounds a hang; nothing is timed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swe_srl.core import read_steps
from swe_srl.sample_tasks import base_commit, load_swe_tasks, materialize_repo, trajectory_path

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_COPY = 24          # the 4 bundled trajectories hold 24 actions together
HANG = 300                   # seconds: only bounds a hang, never asserted as a speed


def make_trajectories(root: Path, copies: int) -> tuple[Path, Path]:
    """``copies`` x the 4 bundled trajectories, each copy a distinct file (a marker key makes its content unique),
    and a sandbox map of the 4 sample repositories. Returns (trajectories dir, map file)."""
    smap = {}
    for t in load_swe_tasks():
        iid = t["instance_id"]
        repo = materialize_repo(iid, root / "repos" / iid)
        smap[iid] = {"repo_path": str(repo), "commit": base_commit(repo)}
        src = trajectory_path(iid)
        data = json.loads(src.read_text())
        for i in range(copies):
            data["swe_srl_test_copy"] = i
            p = root / "trajs" / f"{i:03d}" / src.name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(data))
    (root / "map.json").write_text(json.dumps(smap))
    return root / "trajs", root / "map.json"


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def start(args: list[str], tmp: Path, **env: str) -> subprocess.Popen:
    """The CLI in its own session / process group (a terminal job), stdout and stderr to files."""
    out = (tmp / "stdout.txt").open("wb")
    err = (tmp / "stderr.txt").open("wb")
    return subprocess.Popen([sys.executable, "-m", "swe_srl.cli", *args], stdout=out, stderr=err, cwd=tmp,
                            env=cli_env(**env), start_new_session=True)


def ledger_lines(out: Path) -> int:
    p = out / "ledger.jsonl"
    return p.read_bytes().count(b"\n") if p.exists() else 0


def wait_until(cond, what: str, proc: subprocess.Popen | None = None, poll: float = 0.1) -> None:
    deadline = time.monotonic() + HANG
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"hang: no {what} after {HANG} s")
        time.sleep(poll)


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    kids = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def pool_workers(pid: int) -> list[int]:
    """The process-pool workers of ``pid``: its descendants running its own command line (fork) or a
    multiprocessing one (forkserver / spawn); the sandbox's bash commands are not among them."""
    me = _cmdline(pid)
    out, todo = [], _children(pid)
    while todo:
        k = todo.pop()
        cmd = _cmdline(k)
        if cmd is not None and (cmd == me or b"multiprocessing" in cmd):
            out.append(k)
        todo += _children(k)
    return out


def interrupt_lines(err: str) -> list[str]:
    """stderr without the one-line warnings printed at start (e.g. the local sandbox's "runs on the host")."""
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning: ")]


def collect_args(trajs: Path, smap: Path, out: Path, workers: int = 2) -> list[str]:
    return ["collect", "--trajectories", str(trajs), "--out", str(out), "--replay", "local", "--sandbox-map",
            str(smap), "--workers", str(workers), "--no-progress"]


def check_complete(out: Path, copies: int) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest.get("this_run")
    units = [json.loads(line)["unit"] for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units)) == 4 * copies            # every trajectory once
    ids = [s.id for s in read_steps(out / "steps.jsonl")]
    assert len(ids) == len(set(ids)) == STEPS_PER_COPY * copies    # no step lost, none duplicated


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint-group", "sigterm-main"])
def test_signal_during_collect_workers_2_one_line_interrupted_and_resume(tmp_path, sig):
    copies = 12
    trajs, smap = make_trajectories(tmp_path, copies)
    out = tmp_path / "out"
    proc = start(collect_args(trajs, smap, out), tmp_path)
    wait_until(lambda: ledger_lines(out) >= 2, "committed unit", proc)
    workers = pool_workers(proc.pid)
    assert len(workers) >= 2, workers          # the pool is up (it lives until every file was parsed)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)     # what Ctrl-C in a terminal does: the whole process group
    else:
        os.kill(proc.pid, signal.SIGTERM)      # a service manager / `kill PID`: the main process only
    rc = proc.wait(timeout=HANG)
    err = (tmp_path / "stderr.txt").read_text()
    outtxt = (tmp_path / "stdout.txt").read_text()
    assert rc == 128 + sig, (rc, err)
    lines = interrupt_lines(err)
    assert len(lines) == 1, err                # ONE line, no worker tracebacks
    assert lines[0].startswith(f"interrupted by {signal.Signals(sig).name}: ")
    assert "rerun the same command to resume" in lines[0]
    assert "Traceback" not in err + outtxt
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["this_run"]["status"] == "interrupted"
    n_interrupted = ledger_lines(out)
    assert 2 <= n_interrupted < 4 * copies
    assert not [w for w in workers if alive(w)]           # the pool workers are gone with the run
    # resume: the same command completes, every unit exactly once
    res = subprocess.run([sys.executable, "-m", "swe_srl.cli", *collect_args(trajs, smap, out)], cwd=tmp_path,
                         env=cli_env(), capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr
    check_complete(out, copies)


def test_kill9_of_collect_main_process_leaves_no_pool_worker(tmp_path):
    copies = 12
    trajs, smap = make_trajectories(tmp_path, copies)
    out = tmp_path / "out"
    proc = start(collect_args(trajs, smap, out), tmp_path)
    wait_until(lambda: ledger_lines(out) >= 1, "committed unit", proc)
    workers = pool_workers(proc.pid)
    assert len(workers) >= 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=HANG)
    wait_until(lambda: not [w for w in workers if alive(w)], "exit of the orphaned pool workers")
    # and the crash lost nothing committed: the rerun completes with every unit once
    res = subprocess.run([sys.executable, "-m", "swe_srl.cli", *collect_args(trajs, smap, out)], cwd=tmp_path,
                         env=cli_env(), capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr
    check_complete(out, copies)


def test_pool_worker_initializer_arms_parent_death_signal():
    """The worker side on its own: a child that called init_pool_worker(parent) is SIGKILLed by the kernel when
    that parent dies, and ignores SIGINT."""
    code = (
        "import os, sys, time\n"
        "from swe_srl.core.io import init_pool_worker\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    init_pool_worker(parent)\n"
        "    os.kill(os.getpid(), 2)\n"          # SIGINT is ignored: still alive below
        "    print('child', os.getpid(), flush=True)\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=cli_env(), text=True)
    line = proc.stdout.readline().split()
    assert line[0] == "child", line
    child = int(line[1])
    assert alive(child)
    proc.kill()
    proc.wait(timeout=60)
    wait_until(lambda: not alive(child), "exit of the child after its parent's kill -9")


def test_interruptible_one_line_exit_code_and_deferred_commit(capsys):
    """The core helpers on their own, with real signals to this process: a signal inside a critical section is
    raised when it ends (the section finishes), the command ends with ONE line and 128 + signal, the previous
    handlers come back, and the stop flag is clear again afterwards."""
    from swe_srl.core.io import Interrupted, deferred_interrupts, interruptible, stop_requested, stopping

    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(SystemExit) as ex:
        with interruptible("rerun to resume"):
            try:
                with deferred_interrupts():
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)
                    done.append("finished")           # reached: the signal waits for the section's end
                done.append("after")                  # not reached: raised when the section ended
            except Interrupted as e:
                assert stop_requested()
                e.detail = "3 units kept"
                raise
    assert ex.value.code == 143 and done == ["finished"]
    err = capsys.readouterr().err
    assert err == "interrupted by SIGTERM: 3 units kept; rerun to resume\n"
    assert signal.getsignal(signal.SIGINT) is before and not stop_requested()
    with stopping():
        assert stop_requested()
    assert not stop_requested()


def test_deferred_signal_wins_over_an_error_of_the_section():
    """A signal deferred by a critical section whose body then fails is raised (chained to the error), never lost."""
    from swe_srl.core.io import Interrupted, deferred_interrupts, interruptible

    with pytest.raises(SystemExit) as ex:
        with interruptible(""):
            with pytest.raises(Interrupted) as intr:
                with deferred_interrupts():
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                    raise OSError("engine went away")
            assert isinstance(intr.value.__context__, OSError)
            raise intr.value
    assert ex.value.code == 130


def _math_rows(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            steps = "\n\n".join(f"{k}. **Step {k}** compute {i} + {k} = {i + k} and keep it for the next one."
                                for k in range(1, 6))
            f.write(json.dumps({"id": f"q{i}", "problem": f"What is {i} plus fifteen, step by step?",
                                "solution": steps + f"\n\nThe answer is \\boxed{{{i + 15}}}."}) + "\n")


def test_sigint_during_math_collect_marks_manifest_and_resumes(tmp_path):
    n = 3000
    src = tmp_path / "solutions.jsonl"
    _math_rows(src, n)
    out = tmp_path / "math_out"
    args = ["collect", "--task", "math", "--input", str(src), "--out", str(out), "--val-size", "0"]
    proc = start(args, tmp_path)
    wait_until(lambda: ledger_lines(out) >= 5, "committed question", proc, poll=0.005)
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=HANG)
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 130, err
    lines = interrupt_lines(err)
    assert len(lines) == 1 and lines[0].startswith("interrupted by SIGINT: "), err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert 5 <= manifest["counts"]["questions_done"] < n
    res = subprocess.run([sys.executable, "-m", "swe_srl.cli", *args], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["questions_done"] == n
    units = [json.loads(line)["unit"] for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units)) == n
    recs = read_steps(out / "steps.jsonl")
    assert len({r.id for r in recs}) == len(recs) == n * 4     # 5 numbered steps -> 4 instances per question


def test_sigint_during_docker_eval_keeps_graded_results_and_removes_containers(tmp_path, docker_client,
                                                                               sandbox_base_image):
    """`swe-srl eval --gold --workers 2` in Docker sandboxes, Ctrl-C after the first graded result: exit 130, the
    interrupt line last on stderr, no traceback, status.json "interrupted", no container of the run left; the rerun
    keeps the graded results and grades only the rest."""
    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "swe_instance"))
    import synthetic

    from environments.sandbox import lifecycle as lc

    inst = synthetic.instance(synthetic.build_image(docker_client))
    n = 8
    ds = tmp_path / "instances.jsonl"
    ds.write_text("".join(json.dumps(dict(inst, instance_id=f"swe-srl__calc-{i}")) + "\n" for i in range(n)))
    out = tmp_path / "eval_out"
    run = f"test-{os.getpid()}-{time.time_ns()}"
    args = ["eval", "--gold", "--dataset", str(ds), "--out", str(out), "--workers", "2"]
    proc = start(args, tmp_path, **{lc.RUN_ID_ENV: run})
    results = out / "results.jsonl"
    wait_until(lambda: results.exists() and results.read_bytes().count(b"\n") >= 1, "graded result", proc)
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=HANG)
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 130, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("interrupted by SIGINT: ") and "graded results are kept" in last, err
    assert "Traceback" not in err
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"
    assert docker_client.containers.list(all=True, filters={"label": f"{lc.LABEL_RUN}={run}"}) == []
    graded = [json.loads(x) for x in results.read_text().splitlines()]
    assert 1 <= len(graded) < n and all(g["status"] == "resolved" for g in graded)
    res = subprocess.run([sys.executable, "-m", "swe_srl.cli", *args], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr
    assert f"resume: {len(graded)} results kept" in res.stderr
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["resolved"] == n
