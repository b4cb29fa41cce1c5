"""End to end: the bundled expert trajectories -> `swe-srl collect --replay docker|local` -> step data whose
observations were regenerated in a real sandbox and whose final diff matches the gold patch."""

import json

import pytest
from typer.testing import CliRunner

from swe_srl.cli import app
from swe_srl.core import read_steps
from swe_srl.sample_tasks import base_commit, load_swe_tasks, materialize_repo, trajectory_path


def _sandbox_map(tmp_path):
    smap = {}
    for t in load_swe_tasks():
        repo = materialize_repo(t["instance_id"], tmp_path / "repos" / t["instance_id"])
        smap[t["instance_id"]] = {"repo_path": str(repo), "commit": base_commit(repo)}
    path = tmp_path / "map.json"
    path.write_text(json.dumps(smap))
    return path


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_collect_with_replay_reproduces_sample_trajectories(tmp_path, backend, request):
    if backend == "docker":
        request.getfixturevalue("docker_client")
    smap = _sandbox_map(tmp_path)
    args = []
    for t in load_swe_tasks():
        args += ["--trajectories", str(trajectory_path(t["instance_id"]))]
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["collect", *args, "--out", str(out), "--replay", backend,
                                   "--sandbox-map", str(smap)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["replay"]) == 4
    for entry in manifest["replay"].values():
        assert entry["error"] is None
        assert entry["patch_match"] is True
        assert entry["mean_fidelity"] == 1.0 and entry["diverged_steps"] == []
    steps = read_steps(out / "steps.jsonl")
    assert len(steps) == 24
    assert {s.tool for s in steps} == {"bash", "str_replace_editor", "submit"}


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_sandbox_failures_are_skipped_with_their_reason(tmp_path, backend, request):
    """A sandbox that cannot start (missing image) or check out the base commit (unknown commit) skips its
    trajectory with the reason, counted in the manifest and printed; no step of it is written (before issue 13
    its recorded observations were written as if replayed)."""
    if backend == "docker":
        request.getfixturevalue("docker_client")
    tasks = load_swe_tasks()[:2]
    smap = {}
    for t in tasks:
        repo = materialize_repo(t["instance_id"], tmp_path / "repos" / t["instance_id"])
        smap[t["instance_id"]] = {"repo_path": str(repo), "commit": base_commit(repo)}
    bad_commit, other = tasks[0]["instance_id"], tasks[1]["instance_id"]
    smap[bad_commit]["commit"] = "0123456789abcdef0123456789abcdef01234567"
    if backend == "docker":
        smap[other]["image"] = "swe-srl/no-such-image:missing"
    (tmp_path / "map.json").write_text(json.dumps(smap))
    out = tmp_path / "out"
    args = [a for t in tasks for a in ("--trajectories", str(trajectory_path(t["instance_id"])))]
    res = CliRunner().invoke(app, ["collect", *args, "--out", str(out), "--replay", backend, "--sandbox-map",
                                   str(tmp_path / "map.json"), "--no-progress"])
    # docker: nothing usable at all is a failed run (exit != 0); local: one trajectory replayed fine
    assert (res.exit_code != 0) if backend == "docker" else (res.exit_code == 0), res.output
    m = json.loads((out / "manifest.json").read_text())
    stages = {u.split("/")[-2] if "/" in u else u: r["stage"] for u, r in m["replay"].items()}
    expected_failed = {"checkout": 1, "start": 1} if backend == "docker" else {"checkout": 1}
    assert m["replay_summary"]["all"]["failed"] == expected_failed, stages
    assert m["trajectories"]["skipped"] == sum(expected_failed.values())
    reasons = [k for pf in m["trajectories"]["per_format"].values() for k in pf["skip_reasons"]]
    assert set(reasons) == {"replay_error"}
    assert "replay failed (checkout)" in res.output and "failed" in res.output
    steps = read_steps(out / "steps.jsonl")
    written = {s.instance_id for s in steps}
    assert bad_commit not in written
    if backend == "docker":
        assert steps == []
    else:
        assert written == {other} and all(s.meta["replay"]["status"] in ("exact", "near") for s in steps)
