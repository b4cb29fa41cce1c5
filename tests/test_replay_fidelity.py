"""The fidelity scorer (environments.fidelity) and what collect does with it: per-step entries in each row's meta,
the histogram by command kind in the manifest / `swe-srl inspect` / the PNG, --on-diverged. Expected values are
written out by hand here."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from environments.collect import CollectError, CollectOptions, collect_swe
from environments.fidelity import (bash_kind, command_kind, compare_final_patch, histogram, mask_ls_dates,
                                   multiset_similarity, score_step, status_of)
from environments.replay import ReplayResult
from swe_srl.cli import app
from swe_srl.core import read_steps

FIND_A = "./a/x.py\n./b/y.py\n./c/z.py"
FIND_B = "./c/z.py\n./a/x.py\n./b/y.py"


@pytest.mark.parametrize("command,kind", [
    ("find . -name '*.py' | head", "find"),
    ("cd /testbed && grep -rn foo django/ | head -5", "grep -r"),
    ("grep -R foo .", "grep -r"),
    ("git grep -n foo", "grep -r"),
    ("grep -n foo x.py", "grep"),
    ("ls tests", "ls"),
    ("cd tests && ls", "ls"),
    ("ls -la tests", "ls -l"),
    ("ls -al", "ls -l"),
    ("git status", "git status"),
    ("git diff", "git diff"),
    ("python -m pytest -x tests/", "pytest"),
    ("cd /testbed && python tests/runtests.py admin_views", "pytest"),
    ("cat > t.py << 'EOF'\nimport os\nfind = 1\nEOF\npython t.py", "python"),
    ("cat > t.py << 'EOF'\nls -l\nEOF", "file-write"),
    ("FOO=1 timeout 30 python x.py", "python"),
    ("nl -ba x.py | sed -n 1,20p", "cat"),
    ("cd /testbed", "cd/env"),
])
def test_bash_kind(command, kind):
    assert bash_kind(command) == kind


def test_command_kind_of_tools():
    assert command_kind("str_replace_editor", {"command": "view", "path": "/x"}) == "str_replace_editor:view"
    assert command_kind("open", {"path": "x"}) == "open"
    assert command_kind("bash", {"command": "ls"}) == "ls"


def test_listing_output_is_a_line_multiset_and_raw_is_kept():
    s = score_step("find", FIND_B, FIND_A)
    assert s.fidelity == 1.0 and s.status == "exact" and s.method == "multiset"
    assert s.raw < 0.9                                    # the raw ratio sees another order
    # not a set: a duplicated line counts
    assert multiset_similarity("a\na\nb", "a\nb") == pytest.approx(2 * 2 / 5)
    # another command kind with the same texts stays raw
    s = score_step("cat", FIND_B, FIND_A)
    assert s.method == "raw" and s.fidelity == s.raw < 0.9 and s.status == "diverged"
    # different lines are still a divergence for a listing
    assert score_step("ls", "a.py\nb.py", "a.py\nc.py\nd.py").status == "diverged"


def test_ls_long_timestamps_are_ignored():
    rec = ("total 8\n-rw-r--r-- 1 root root 120 Oct  3 12:34 calc.py\n"
           "drwxr-xr-x 2 root root 4096 Jan 12  2023 pkg")
    rep = ("total 8\n-rw-r--r-- 1 root root 120 Dec  1 14:02 calc.py\n"
           "drwxr-xr-x 2 root root 4096 Dec  1 14:02 pkg")
    s = score_step("ls -l", rep, rec)
    assert s.fidelity == 1.0 and s.status == "exact" and s.raw < 1.0
    assert mask_ls_dates("x Oct  3 12:34 y") == "x <LSDATE> y"
    # a size change is not a date
    assert score_step("ls -l", rep.replace(" 120 ", " 999 "), rec).fidelity < 1.0


def test_statuses_and_skips():
    assert [status_of(x) for x in (1.0, 0.95, 0.9, 0.5, None)] == ["exact", "near", "near", "diverged", "skipped"]
    s = score_step("ls", None, "x")
    assert s.status == "skipped" and s.fidelity is None and s.reason == "not replayed"
    assert score_step("ls", "x", None).reason == "nothing recorded"


def test_histogram_by_kind():
    steps = [score_step("find", FIND_B, FIND_A), score_step("cat", "a", "b"), score_step("cat", "a", "a"),
             score_step("cat", None, "a")]
    h = histogram(steps)
    assert h["cat"] == {"exact": 1, "near": 0, "diverged": 1, "skipped": 1}
    assert h["find"] == {"exact": 1, "near": 0, "diverged": 0, "skipped": 0}
    assert h["total"] == {"exact": 2, "near": 0, "diverged": 1, "skipped": 1}


PATCH_A = "diff --git a/a.py b/a.py\nindex 1..2 100644\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
PATCH_B = "diff --git a/b.py b/b.py\n--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-p\n+q\n"
SCRATCH = "diff --git a/t.py b/t.py\nnew file mode 100644\n--- /dev/null\n+++ b/t.py\n@@ -0,0 +1 @@\n+print(1)\n"


def test_final_patch_as_submitted_vs_whole_tree():
    recorded = PATCH_A + PATCH_B
    tree = PATCH_B + SCRATCH + PATCH_A.replace("index 1..2", "index 9..8")      # other order, other index line
    c = compare_final_patch(recorded, PATCH_A + PATCH_B, tree)
    assert c["patch_match"] is True and c["submission_match"] is True and c["whole_tree_match"] is False
    assert c["tree_extra_files"] == ["t.py"] and c["submitted_files"] == c["matched_files"] == 2
    c = compare_final_patch(recorded, PATCH_A, PATCH_A + SCRATCH)                # b.py not reproduced
    assert c["patch_match"] is False and c["mismatched_files"] == ["b.py"] and c["submission_match"] is False
    assert c["submitted_missing_files"] == ["b.py"]
    # a file mode that differs only because of how the image was built is not a mismatch, nor an extra file
    moded = PATCH_A.replace("index 1..2 100644\n", "old mode 100755\nnew mode 100644\n")
    mode_only = "diff --git a/c.py b/c.py\nold mode 100755\nnew mode 100644\n"
    c = compare_final_patch(PATCH_A, moded, moded + mode_only)
    assert c["patch_match"] is True and c["submission_match"] is True and c["tree_extra_files"] == []
    c = compare_final_patch(None, PATCH_A, PATCH_A)
    assert c["patch_match"] is None and c["recorded"] is False


# -- collect: meta, manifest, inspect, PNG, --on-diverged ----------------------------------------------------------
def _engine(diverged_at: int):
    """A scripted replay engine (our own bookkeeping is under test, not the sandbox): step ``diverged_at`` of
    every trajectory diverges, the others are exact."""

    def replay(traj, *, backend, image, repo_path, timeout, **kw):
        n = len(traj.steps)
        steps = [{"kind": "ls", "fidelity": 1.0, "fidelity_raw": 1.0, "status": "exact", "method": "multiset"}
                 for _ in range(n)]
        steps[diverged_at] = {"kind": "python", "fidelity": 0.2, "fidelity_raw": 0.2, "status": "diverged",
                              "method": "raw"}
        obs = [f"REPLAYED {i}" for i in range(n)]
        return ReplayResult(obs, [s["fidelity"] for s in steps], True, [diverged_at], steps=steps,
                            patch_check={"patch_match": True, "submission_match": True, "whole_tree_match": False,
                                         "submitted_files": 1, "matched_files": 1, "mismatched_files": [],
                                         "tree_extra_files": ["scratch.py"]})

    return replay


def _prompt_text(rec):
    return "\n".join(m["content"] for m in rec.prompt)


@pytest.mark.parametrize("policy", ["keep-recorded", "use-replayed", "drop"])
def test_on_diverged_policies(sample_trajectories, tmp_path, policy):
    files = [str(sample_trajectories[0])]
    out = tmp_path / policy
    m = collect_swe(files, out, CollectOptions(replay="docker", on_diverged=policy), progress=False,
                    replay=_engine(1))
    steps = read_steps(out / "steps.jsonl")
    n = m["steps"]["actions_in_used_and_skipped"]
    assert all(s.meta["replay"]["status"] in ("exact", "diverged") for s in steps)
    assert steps[0].meta["replay"] == {"kind": "ls", "fidelity": 1.0, "fidelity_raw": 1.0, "status": "exact",
                                       "method": "multiset", "observation_in_history": "replayed"}
    if policy == "drop":
        # rows whose prompt holds the diverged observation (of step 1) are not written: steps 0 and 1 remain
        assert [s.step_index for s in steps] == [0, 1]
        assert m["steps"]["total"] == 2
    else:
        assert len(steps) == n
        later = _prompt_text(steps[3])
        assert "REPLAYED 0" in later and "REPLAYED 2" in later
        if policy == "keep-recorded":
            assert "REPLAYED 1" not in later and steps[1].meta["replay"]["observation_in_history"] == "recorded"
        else:
            assert "REPLAYED 1" in later and steps[1].meta["replay"]["observation_in_history"] == "replayed"
    s = m["replay_summary"]["all"]
    assert s["histogram"]["python"]["diverged"] == 1 and s["histogram"]["ls"]["exact"] == n - 1
    assert s["patch"]["match_as_submitted"] == 1 and s["patch"]["whole_tree_match"] == 0
    assert s["patch"]["with_tree_extra_files"] == 1
    entry = next(iter(m["replay"].values()))
    assert entry["statuses"] == "e" + "d" + "e" * (n - 2) and entry["tree_extra_files"] == ["scratch.py"]


def test_replay_failure_is_a_skip_never_recorded_observations(sample_trajectories, tmp_path):
    def failing(traj, **kw):
        n = len(traj.steps)
        return ReplayResult([None] * n, [None] * n, None, [], error="sandbox: image 'x' not found locally",
                            stage="start")

    m = collect_swe([str(p) for p in sample_trajectories[:2]], tmp_path / "o", CollectOptions(replay="docker"),
                    progress=False, replay=failing)
    assert m["trajectories"]["used"] == 0 and m["trajectories"]["skipped"] == 2 and m["steps"]["total"] == 0
    assert m["replay_summary"]["all"]["failed"] == {"start": 2}
    assert all(e["error"] and e["stage"] == "start" for e in m["replay"].values())
    assert (tmp_path / "o" / "steps.jsonl").read_text() == ""


def test_histogram_in_inspect_and_png(sample_trajectories, tmp_path):
    out = tmp_path / "o"
    m = collect_swe([str(sample_trajectories[0])], out, CollectOptions(replay="docker"), progress=False,
                    replay=_engine(0))
    assert m["stats_png"] == "stats.png" and (out / "stats.png").stat().st_size > 0
    res = CliRunner().invoke(app, ["inspect", str(out), "--index", "0"])
    assert res.exit_code == 0, res.output
    assert "replay fidelity by command kind" in res.output
    assert "python" in res.output and "as submitted 1" in res.output
    assert "status diverged" in res.output and "fidelity 0.2" in res.output


def test_new_options_are_validated():
    with pytest.raises(CollectError, match="--on-diverged"):
        CollectOptions(replay="docker", on_diverged="nope").validate()
    with pytest.raises(CollectError, match="--timeout"):
        CollectOptions(replay="docker", replay_timeout=0).validate()
    with pytest.raises(CollectError, match="--sandbox-network"):
        CollectOptions(replay="local", sandbox_network=True).validate()


def test_cli_passes_replay_flags(sample_trajectories, tmp_path, monkeypatch):
    seen = {}

    def engine(traj, *, backend, image, repo_path, timeout, **kw):
        seen.update(timeout=timeout, **kw)
        return _engine(0)(traj, backend=backend, image=image, repo_path=repo_path, timeout=timeout)

    import environments.collect as ec

    monkeypatch.setattr(ec, "replay_trajectory", engine)
    monkeypatch.setitem(ec.collect_swe.__kwdefaults__, "replay", engine)
    res = CliRunner().invoke(app, ["collect", "--trajectories", str(sample_trajectories[0]), "--out",
                                   str(tmp_path / "o"), "--replay", "docker", "--timeout", "7",
                                   "--sandbox-network", "--on-diverged", "use-replayed", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert seen["timeout"] == 7.0 and seen["network"] == "index"
    opts = json.loads((tmp_path / "o" / "options.json").read_text())
    assert "use-replayed" in json.dumps(opts) and "sandbox_network" in json.dumps(opts)
