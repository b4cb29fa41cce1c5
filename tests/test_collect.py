"""`swe-srl collect` / `inspect` for SWE: manifest counts, malformed input, resume after a crash, token budgets,
replay wiring and image names.

The collector tests run on the sample trajectories bundled in the package (mini-swe-agent and SWE-agent 1.x), so
they never skip; the ``shared_data`` tests are the large real-data layer (172 trajectories in six formats).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from environments.collect import CollectError, CollectOptions, build_steps, collect_swe, prompt_token_count, sandbox_for
from environments.replay import ReplayResult
from environments.trajectories import read_trajectories
from swe_srl.cli import app
from swe_srl.core import read_steps
from swe_srl.sample_tasks import MATH_FILE

ROOT = "swe_trajectories"
FAST = dict(history_k=2, obs_max_chars=400)


def _check_manifest(out: Path, m: dict) -> list:
    recs = read_steps(out / "steps.jsonl")  # strict: every record follows the schema
    t = m["trajectories"]
    assert t["read"] == t["used"] + t["skipped"]
    for pf in t["per_format"].values():
        assert pf["read"] == pf["used"] + pf["skipped"]
        assert sum(pf["skip_reasons"].values()) == pf["skipped"]
    assert sum(pf["read"] for pf in t["per_format"].values()) == t["read"]
    assert m["steps"]["total"] == len(recs) == sum(m["steps"]["per_tool"].values())
    assert m["steps"]["total"] == sum(pf["steps"] for pf in t["per_format"].values())
    assert len({r.id for r in recs}) == len(recs)
    assert m["lengths"]["target_chars"]["count"] == len(recs)
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    assert len({e["unit"] for e in ledger}) == len(ledger) == t["read"]
    return recs


def _copies(files: list[Path], dest: Path, n: int) -> list[Path]:
    """``n`` copies of each file under dest/copyNNN/, each made byte-distinct by trailing newlines (still the same
    JSON): collect skips byte-identical inputs as duplicates, and these must be distinct units."""
    out = []
    for i in range(n):
        d = dest / f"copy{i:03d}"
        d.mkdir(parents=True)
        for f in files:
            p = Path(shutil.copy(f, d / f.name))
            with p.open("ab") as fh:
                fh.write(b"\n" * (i + 1))
            out.append(p)
    return out


# -- bundled samples (never skip) ------------------------------------------------------------------------------
def test_collect_samples_counts_add_up(sample_trajectories, tmp_path):
    src = [str(p) for p in sample_trajectories]
    m = collect_swe(src, tmp_path / "w2", CollectOptions(**FAST, workers=2), progress=False)
    recs = _check_manifest(tmp_path / "w2", m)
    pf = m["trajectories"]["per_format"]
    assert m["trajectories"] == {"read": 4, "used": 4, "skipped": 0, "per_format": pf}
    assert {k: (v["used"], v["steps"]) for k, v in pf.items()} == {"minisweagent": (2, 12), "sweagent_1x": (2, 12)}
    # N actions -> N steps, per trajectory
    assert m["steps"]["total"] == 24 == sum(v["actions"] for v in pf.values())
    assert m["steps"]["per_tool"] == {"bash": 16, "str_replace_editor": 6, "submit": 2}
    for p in sample_trajectories:
        (t,) = read_trajectories(p)
        mine = [r for r in recs if r.meta["trajectory"] == str(p)]
        assert [r.target for r in mine] == [s.action for s in t.steps]
        assert all(r.num_steps == len(t.steps) for r in mine)
    assert (tmp_path / "w2" / "stats.png").stat().st_size > 1000
    r3 = next(r for r in recs if r.step_index == 3)
    assert [x["role"] for x in r3.prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "[1 earlier action/observation round(s) omitted]" in r3.prompt[1]["content"]
    # one worker writes the very same files
    m1 = collect_swe(src, tmp_path / "w1", CollectOptions(**FAST), progress=False)
    assert (tmp_path / "w1" / "steps.jsonl").read_bytes() == (tmp_path / "w2" / "steps.jsonl").read_bytes()
    assert m1["steps"] == m["steps"]


def test_malformed_and_filters_are_counted_on_samples(sample_trajectories, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "bad.traj").write_text("{oops")
    (inp / "weird.jsonl").write_text('{"x": 1}\n\n{"history": [], "instance_id": "a__b-1", "instruction": "fix it"}\n')
    mini = tmp_path / "mini"          # mini-swe-agent runs with an evaluation report next to them
    for p in sample_trajectories:
        if p.name.endswith(".traj.json"):
            (mini / p.parent.name).mkdir(parents=True)
            shutil.copy(p, mini / p.parent.name / p.name)
    (mini / "results.json").write_text(json.dumps({"resolved": ["sample__intervals-1"],
                                                   "ids_unresolved": ["sample__tinyini-2"]}))
    swea = [str(p) for p in sample_trajectories if p.suffix == ".traj"]   # no report anywhere: unknown
    out = tmp_path / "o"
    m = collect_swe([str(inp), str(mini), *swea], out, CollectOptions(**FAST, only_resolved=True), progress=False)
    recs = _check_manifest(out, m)
    pf = m["trajectories"]["per_format"]
    assert pf["unknown"]["skip_reasons"] == {"malformed": 2}
    assert pf["openhands_output"]["skip_reasons"] == {"no_actions": 1}
    assert pf["minisweagent"]["used"] == 1 and pf["minisweagent"]["skip_reasons"] == {"not_resolved": 1}
    assert pf["sweagent_1x"]["used"] == 0 and pf["sweagent_1x"]["skip_reasons"] == {"resolved_unknown": 2}
    assert {r.instance_id for r in recs} == {"sample__intervals-1"} and all(r.meta["resolved"] for r in recs)
    assert "bad.traj: invalid JSON at line 1 column 2" in (out / "ledger.jsonl").read_text()


def _cli_cmd(args):
    return [sys.executable, "-m", "swe_srl.cli", "collect", *args]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_resume_after_sigkill_no_duplicates_no_loss(sample_trajectories, tmp_path):
    """The collect process is killed from outside (SIGKILL once the ledger holds N units), then resumed: the
    result equals an uninterrupted run, record for record and in the same order."""
    files = _copies(sample_trajectories, tmp_path / "in", 60)          # 240 units, 1440 steps
    src = str(tmp_path / "in")
    opts = dict(history_k=3, obs_max_chars=300)
    ref = tmp_path / "ref"
    collect_swe([src], ref, CollectOptions(**opts), progress=False)
    want = read_steps(ref / "steps.jsonl")
    assert len(want) == 6 * len(files)

    args = ["--trajectories", src, "--history", "3", "--obs-max-chars", "300", "--no-progress"]
    out = tmp_path / "crash"
    ledger = out / "ledger.jsonl"
    proc = subprocess.Popen(_cli_cmd([*args, "--out", str(out)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _lines(ledger) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]   # killed mid-run, not done
    done = _lines(ledger)
    assert 20 <= done < len(files)
    with (out / "steps.jsonl").open("ab") as f:  # a torn write of the next unit, as if killed inside commit
        f.write(b'{"id": "partial')

    p = subprocess.run(_cli_cmd([*args, "--out", str(out)]), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["this_run"]["files_already_done"] == done
    assert m["this_run"]["units_ok"] == len(files) - done
    got = _check_manifest(out, m)
    assert [r.to_json() for r in got] == [r.to_json() for r in want]
    # a third run is a no-op
    m = collect_swe([src], out, CollectOptions(**opts), progress=False)
    assert m["this_run"]["files_already_done"] == len(files) and len(read_steps(out / "steps.jsonl")) == len(want)
    # different build options are refused on resume, naming the option
    with pytest.raises(CollectError, match=r"other options \(history_k: 3 -> 5\)"):
        collect_swe([src], out, CollectOptions(history_k=5, obs_max_chars=300), progress=False)


class _CharTok:
    """Stand-in tokenizer: one token per 4 characters, no chat template."""
    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return list(range((len(text) + 3) // 4))

    def decode(self, ids):
        return "x" * (4 * len(ids))


def test_max_prompt_tokens_drops_steps(sample_trajectories, tmp_path):
    path = next(p for p in sample_trajectories if p.suffix == ".traj")
    (t,) = read_trajectories(path)
    tok = _CharTok()
    full, info = build_steps(t, tokenizer=tok)
    assert len(full) == t.num_actions and info["dropped_over_budget"] == 0
    sizes = [prompt_token_count(r.prompt, tok) for r in full]
    budget = sorted(sizes)[len(sizes) // 2]
    kept, info = build_steps(t, tokenizer=tok, max_prompt_tokens=budget)
    assert 0 < len(kept) < len(full) and info["dropped_over_budget"] == len(full) - len(kept)
    assert all(p <= budget for p in info["prompt_tokens"])
    assert [r.target for r in kept] == [r.target for r, s in zip(full, sizes) if s <= budget]
    # the same through the collector (the tokenizer comes from the caller): dropped steps are counted
    opts = CollectOptions(max_prompt_tokens=budget, tokenizer="chars")
    m = collect_swe([str(path)], tmp_path / "b", opts, progress=False, tokenizer=tok)
    assert m["steps"]["dropped_over_budget"] == len(full) - len(kept) and m["steps"]["total"] == len(kept)
    assert m["lengths"]["prompt_tokens"]["max"] <= budget
    assert m["options"]["tokenizer"] == "chars"
    # token-truncated observations, also in worker processes
    m2 = collect_swe([str(p) for p in sample_trajectories], tmp_path / "c",
                     CollectOptions(obs_max_tokens=8, tokenizer="chars", workers=2), progress=False, tokenizer=tok)
    recs = read_steps(tmp_path / "c" / "steps.jsonl")
    assert m2["steps"]["total"] == 24 and any("tokens truncated ...]" in r.prompt[-1]["content"] for r in recs)
    with pytest.raises(CollectError, match="--tokenizer"):
        collect_swe([str(path)], tmp_path / "d", opts, progress=False)     # a budget without a tokenizer


def test_cli_collect_inspect_limit_and_errors(sample_trajectories, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    src = str(sample_trajectories[0].parents[1])           # the bundled swe/ directory
    r = runner.invoke(app, ["collect", "--trajectories", src, "--out", str(out), "--limit", "2", "--no-progress",
                            "--history", "2"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["trajectories"]["read"] == 2 and m["this_run"]["status"].startswith("stopped at --limit")
    r = runner.invoke(app, ["inspect", str(out), "--index", "1"])
    assert r.exit_code == 0, r.output
    assert "target (expert action)" in r.output and "<function=" in r.output and "[system]" in r.output
    assert runner.invoke(app, ["inspect", str(out), "--index", "99999"]).exit_code == 2
    r = runner.invoke(app, ["collect", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--trajectories" in r.output
    r = runner.invoke(app, ["collect", "--trajectories", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(app, ["collect", "--trajectories", src, "--out", str(tmp_path / "x"), "--max-prompt-tokens", "9"])
    assert r.exit_code == 2 and "--tokenizer" in r.output
    # a resume with other options is a one-line usage error
    r = runner.invoke(app, ["collect", "--trajectories", src, "--out", str(out), "--history", "3", "--no-progress"])
    assert r.exit_code == 2 and "history_k: 2 -> 3" in r.output
    # --task math runs math_srl.collect.collect_math on the bundled math problems
    mo = tmp_path / "m"
    r = runner.invoke(app, ["collect", "--task", "math", "--input", str(MATH_FILE), "--out", str(mo),
                            "--solution-field", "solution", "--val-size", "1", "--seed", "3", "--limit", "4"])
    assert r.exit_code == 0, r.output
    mm = json.loads((mo / "manifest.json").read_text())
    assert mm["options"]["solution_field"] == "solution" and mm["options"]["val_size"] == 1
    assert mm["options"]["seed"] == 3 and mm["options"]["limit"] == 4 and mm["counts"]["rows"] == 4
    assert mm["counts"]["val_questions"] == 1 and mm["counts"]["steps"] > 0
    assert "task: math" in r.output and "status: complete" in r.output
    r = runner.invoke(app, ["collect", "--task", "math", "--input", str(MATH_FILE), "--out", str(tmp_path / "m2"),
                            "--rewrite", "all"])
    assert r.exit_code == 2 and "--rewrite-model" in r.output


def test_replay_option_calls_engine(sample_trajectories, tmp_path):
    seen = []

    def scripted_replay(traj, *, backend, image, repo_path, timeout, **kw):
        seen.append((traj.instance_id, backend, image))
        n = len(traj.steps)
        return ReplayResult(observations=["regen"] * n, step_fidelity=[1.0] * n, patch_match=True,
                            diverged_steps=[2] if traj.instance_id == "sample__tinyini-2" else [])

    smap = tmp_path / "map.json"
    smap.write_text(json.dumps({"sample__intervals-1": "my/image:1"}))
    files = [str(p) for p in sample_trajectories]
    m = collect_swe(files, tmp_path / "r", CollectOptions(replay="docker", sandbox_map=str(smap),
                                                          on_divergence="stop", history_k=1),
                    progress=False, replay=scripted_replay)
    assert dict((i, img) for i, _, img in seen) == {
        "sample__intervals-1": "my/image:1",                                   # the user's map first
        "sample__tinyini-2": "sweb.eval.x86_64.sample__tinyini-2:latest",      # swebench's formula for the id
        "sample__moneyfmt-3": "python:3.11-slim",                              # the image the trajectory records
        "sample__textkit-4": "python:3.11-slim"}
    recs = _check_manifest(tmp_path / "r", m)
    assert Counter(r.instance_id for r in recs)["sample__tinyini-2"] == 3  # steps 0..2 kept (stop)
    assert all(r.prompt[-1]["content"] == "regen" for r in recs if r.step_index > 0)
    assert len(m["replay"]) == 4 and m["replay"][files[0]]["sandbox"]["image"] == "my/image:1"
    # a replay that raises skips that trajectory only
    def broken(traj, **kw):
        raise RuntimeError("no engine")
    m = collect_swe(files[:1], tmp_path / "x", CollectOptions(replay="local"), progress=False, replay=broken)
    assert m["trajectories"]["per_format"]["minisweagent"]["skip_reasons"] == {"replay_error": 1}


# -- real data (../shared/data) --------------------------------------------------------------------------------
def _verified_row(shared_data, instance_id):
    for line in (shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["instance_id"] == instance_id:
            return row
    raise AssertionError(instance_id)


def test_collect_names_the_image_swebench_builds(shared_data, sample_trajectories):
    """Without a map or a recorded image, the collector's docker image is swebench's own instance image name.
    (psf__requests: a repo whose TestSpec swebench builds offline.)"""
    from swebench.harness.test_spec.test_spec import make_test_spec

    row = _verified_row(shared_data, "psf__requests-1142")
    (t,) = read_trajectories(next(p for p in sample_trajectories if p.name.endswith(".traj.json")))
    t = dataclasses.replace(t, instance_id=row["instance_id"], meta={})
    assert sandbox_for(t, {}, "docker")["image"] == make_test_spec(row).instance_image_key
    assert sandbox_for(t, {}, "local")["image"] is None


def test_collect_all_shared_counts_add_up(shared_data, tmp_path):
    out = tmp_path / "all"
    m = collect_swe([str(shared_data / ROOT)], out, CollectOptions(**FAST, workers=2), progress=False)
    recs = _check_manifest(out, m)
    assert m["trajectories"]["skipped"] == 0 and m["trajectories"]["read"] == 172
    # N actions -> N steps
    assert m["steps"]["total"] == sum(pf["actions"] for pf in m["trajectories"]["per_format"].values())
    assert (out / "stats.png").stat().st_size > 1000
    by_traj = Counter(r.meta["trajectory"] for r in recs)
    r0 = next(r for r in recs if r.step_index == 3)
    assert by_traj[r0.meta["trajectory"]] == r0.num_steps
    assert [m_["role"] for m_ in r0.prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "[1 earlier action/observation round(s) omitted]" in r0.prompt[1]["content"]


def test_malformed_and_filters_are_counted(shared_data, tmp_path):
    bad = tmp_path / "in" / "bad.traj"
    bad.parent.mkdir()
    bad.write_text("{oops")
    (tmp_path / "in" / "weird.jsonl").write_text('{"x": 1}\n\n{"history": [], "instance_id": "a__b-1", "instruction": "fix it"}\n')
    mini = shared_data / ROOT / "minisweagent_traj"
    oh = shared_data / ROOT / "openhands_llm_completions"
    out = tmp_path / "o"
    m = collect_swe([str(tmp_path / "in"), str(mini), str(oh)], out,
                    CollectOptions(**FAST, only_resolved=True), progress=False)
    _check_manifest(out, m)
    pf = m["trajectories"]["per_format"]
    assert pf["unknown"]["skip_reasons"] == {"malformed": 2}
    assert pf["openhands_output"]["skip_reasons"] == {"no_actions": 1}
    assert pf["openhands_completions"]["skip_reasons"] == {"not_resolved": 20}
    assert pf["minisweagent"]["used"] == 49
    ledger = (out / "ledger.jsonl").read_text()
    assert "bad.traj: invalid JSON at line 1 column 2" in ledger


def test_replay_of_shared_trajectories_names_swebench_images(shared_data, tmp_path):
    """The real CodeR trajectories: the map wins, else the image name swebench gives the instance (the old
    collector named ``sweb.eval.x86_64.django_1776_django-11179``, an image that exists nowhere)."""
    seen = {}

    def scripted_replay(traj, *, backend, image, repo_path, timeout, **kw):
        seen[traj.instance_id] = image
        n = len(traj.steps)
        return ReplayResult(observations=["regen"] * n, step_fidelity=[1.0] * n, patch_match=True, diverged_steps=[])

    trajs = shared_data / ROOT / "sweagent_traj/coder_swebench_lite/trajs"
    smap = tmp_path / "map.json"
    smap.write_text(json.dumps({"django__django-11099": "my/image:1"}))
    files = [str(trajs / "django__django-11179.traj"), str(trajs / "django__django-11099.traj")]
    m = collect_swe(files, tmp_path / "r", CollectOptions(replay="docker", sandbox_map=str(smap), history_k=1),
                    progress=False, replay=scripted_replay)
    # swebench 4: TestSpec.instance_image_key = sweb.eval.<arch>.<id lowercased>:<tag> (make_test_spec itself
    # needs the network for django's requirements, so the key is spelled out here)
    assert seen == {"django__django-11099": "my/image:1",
                    "django__django-11179": "sweb.eval.x86_64.django__django-11179:latest"}
    _check_manifest(tmp_path / "r", m)
