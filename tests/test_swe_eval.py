"""SWE eval without Docker: SEARCH/REPLACE edits, diffs, oracle files, prompts, sources, resume, CLI dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from swe_srl.swe_eval.dataset import load_instances, oracle_files
from swe_srl.swe_eval.edits import (Edit, EditError, answer_to_patch, apply_edits, make_unified_diff, parse_edits,
                                    validate_patch)
from swe_srl.swe_eval.grading import (EMPTY_PATCH, ERROR, RESOLVED, UNRESOLVED, grade_in_sandbox, grade_log_file,
                                      local_sandbox_factory, parse_log_unittest, register_log_parser, instance_test_spec)
from swe_srl.swe_eval.prompts import localize_messages, parse_localization, repair_messages
from swe_srl.swe_eval.sources import RepoDirSource

FIX = Path(__file__).parent / "fixtures" / "swe_instance"
SRC = "def f(x):\n    if x:\n        return 1\n    return 0\n\n\ndef g(x):\n    if x:\n        return 1\n    return 0\n"


def block(path: str, search: str, replace: str) -> str:
    return f"### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def git_apply_check(tmp: Path, files: dict[str, str], patch: str) -> subprocess.CompletedProcess:
    repo = tmp / "r"
    for p, c in files.items():
        (repo / p).parent.mkdir(parents=True, exist_ok=True)
        (repo / p).write_bytes(c.encode())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (tmp / "p.diff").write_text(patch)
    return subprocess.run(["git", "apply", "--check", "-v", str(tmp / "p.diff")], cwd=repo, capture_output=True,
                          text=True)


# --- parsing -------------------------------------------------------------------------------------------------
def test_parse_fenced_blocks_multiple_files():
    ans = ("Fix:\n```python\n" + block("a/pkg/m.py", "x = 1", "x = 2") + "```\n\n```python\n"
           + block("pkg/n.py", "y", "z") + "```")
    assert parse_edits(ans) == [Edit("a/pkg/m.py", "x = 1", "x = 2"), Edit("pkg/n.py", "y", "z")]
    r = apply_edits({"pkg/m.py": "x = 1\n", "pkg/n.py": "y\n"}, parse_edits(ans))   # git-style a/ prefix resolved
    assert r.files == {"pkg/m.py": "x = 2\n", "pkg/n.py": "z\n"}


def test_parse_malformed():
    with pytest.raises(EditError) as e:
        parse_edits("### m.py\n<<<<<<< SEARCH\nx\n=======\ny\n")
    assert e.value.reason == "malformed_edit"
    with pytest.raises(EditError):
        parse_edits("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE")   # no header
    assert answer_to_patch("no edits here", {"m.py": "x\n"}).reason == "no_edits"


# --- application ---------------------------------------------------------------------------------------------
def test_indentation_fallback_reindents_replacement():
    ans = block("m.py", "if x:\n    return 1", "if x:\n    return 2  # fixed")
    r = apply_edits({"m.py": SRC}, parse_edits(ans))
    assert "        return 2  # fixed\n" in r.files["m.py"]
    assert any(n.startswith("fuzzy_indent") for n in r.notes)
    with pytest.raises(EditError):
        apply_edits({"m.py": SRC}, parse_edits(ans), whitespace_tolerant=False)


def test_repeated_match_replaces_first_and_flags():
    ans = block("m.py", "    if x:\n        return 1", "    if x:\n        return 5")
    r = apply_edits({"m.py": SRC}, parse_edits(ans))
    new = r.files["m.py"]
    assert new.count("return 5") == 1 and new.index("return 5") < new.index("def g")
    assert "ambiguous:m.py" in r.notes


def test_crlf_file_keeps_crlf():
    crlf = SRC.replace("\n", "\r\n")
    ans = block("m.py", "def g(x):\n    if x:", "def g(x):\n    if not x:").replace("\n", "\r\n")
    r = apply_edits({"m.py": crlf}, parse_edits(ans))
    assert "def g(x):\r\n    if not x:\r\n" in r.files["m.py"] and "\n" not in r.files["m.py"].replace("\r\n", "")


def test_trailing_whitespace_fallback():
    src = "a = 1   \nb = 2\n"
    r = apply_edits({"m.py": src}, parse_edits(block("m.py", "a = 1\nb = 2", "a = 1\nb = 3")))
    assert r.files["m.py"] == "a = 1\nb = 3\n"


def test_missing_file_not_found_noop_syntax():
    assert answer_to_patch(block("other.py", "x", "y"), {"m.py": SRC}).reason == "missing_file"
    assert answer_to_patch(block("m.py", "nothing like this", "y"), {"m.py": SRC}).reason == "search_not_found"
    noop = answer_to_patch(block("m.py", "def f(x):", "def f(x):"), {"m.py": SRC})
    assert noop.patch == "" and noop.reason == "no_change"
    bad = answer_to_patch(block("m.py", "def f(x):", "def f(x:"), {"m.py": SRC})
    assert bad.patch == "" and bad.reason == "syntax_error"
    assert answer_to_patch(block("m.py", "", "x = 1"), {"m.py": SRC}).reason == "empty_search"


def test_diff_is_valid_and_applies(tmp_path):
    files = {"pkg/m.py": SRC, "pkg/noeol.py": "a = 1\nb = 2"}
    ans = block("pkg/m.py", "def g(x):\n    if x:", "def g(x):\n    if x is not None:") + \
        block("pkg/noeol.py", "b = 2", "b = 3")
    pr = answer_to_patch(ans, files)
    assert pr.reason is None and validate_patch(pr.patch) is None
    assert pr.patch.startswith("diff --git a/pkg/m.py b/pkg/m.py\n")
    assert "\\ No newline at end of file" in pr.patch
    res = git_apply_check(tmp_path, files, pr.patch)
    assert res.returncode == 0, res.stderr
    assert validate_patch("") == "empty" and validate_patch("garbage\n") is not None


def test_crlf_diff_applies(tmp_path):
    files = {"m.py": SRC.replace("\n", "\r\n")}
    pr = answer_to_patch(block("m.py", "    return 0", "    return -1"), files)
    assert pr.reason is None
    assert git_apply_check(tmp_path, files, pr.patch).returncode == 0


# --- grading -------------------------------------------------------------------------------------------------
def _custom(f2p, p2p, **kw):
    return {"instance_id": "swe-srl__unit-1", "repo": "swe-srl-tests/unit", "version": "1", "base_commit": "HEAD",
            "FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p, "eval_script": "echo no-op\n", "log_parser": "unittest", **kw}


def _grade(tmp_path, log, f2p, p2p):
    """swebench's get_eval_report on a test log (the rule is swebench's; only the unittest parser is ours)."""
    inst = _custom(f2p, p2p)
    (tmp_path / "test_output.txt").write_text(log)
    pred = {"instance_id": inst["instance_id"], "model_name_or_path": "t", "model_patch": "x"}
    status, reason, tests = grade_log_file(instance_test_spec(inst), pred, tmp_path / "test_output.txt")
    return {"resolved": status == RESOLVED, "status": status, "reason": reason, **tests}


def test_unittest_parser_and_grade(tmp_path):
    pytest.importorskip("swebench")
    log = ("test_a (t.T.test_a) ... ok\ntest_b (t.T.test_b) ... FAIL\ntest_c (t.T) ... ERROR\n"
           "test_d (t.T.test_d) ... skipped 'no'\n")
    sm = parse_log_unittest(log)
    assert sm == {"t.T.test_a": "PASSED", "t.T.test_b": "FAILED", "t.T.test_c": "ERROR", "t.T.test_d": "SKIPPED"}
    log = f">>>>> Start Test Output\n{log}>>>>> End Test Output\n"
    assert _grade(tmp_path, log, ["t.T.test_a"], [])["resolved"]
    assert not _grade(tmp_path, log, ["t.T.test_a"], ["t.T.test_b"])["resolved"]
    assert not _grade(tmp_path, log, ["t.T.missing"], [])["resolved"]
    r = _grade(tmp_path, log, ["t.T.test_a"], ["t.T.test_b"])
    assert (r["status"], r["reason"]) == (UNRESOLVED, "tests_failed")
    assert r["PASS_TO_PASS"] == {"success": [], "failure": ["t.T.test_b"]} and r["status_map"] == sm
    # swebench's markers decide: no test section, or a timed-out run, is not graded from partial output
    assert _grade(tmp_path, log.replace(">>>>> End Test Output", ""), ["t.T.test_a"], [])["reason"] == "no_test_output"
    timed_out = log + "\n\n>>>>> Tests Timed Out\nTimeout error: 5 seconds exceeded."
    r = _grade(tmp_path, timed_out, ["t.T.test_a"], [])
    assert (r["status"], r["reason"]) == (ERROR, "tests_timeout")      # not measured: infrastructure, retried


def test_custom_parser_goes_through_swebench_lookup():
    pytest.importorskip("swebench")
    from swebench.harness.log_parsers import MAP_REPO_TO_PARSER

    spec = instance_test_spec(_custom([], []))
    assert MAP_REPO_TO_PARSER["swe-srl-tests/unit"] is parse_log_unittest and spec.eval_script == "echo no-op\n"
    register_log_parser("swe-srl-tests/unit", "1", parse_log_unittest)          # idempotent
    with pytest.raises(ValueError, match="already has the log parser"):   # swebench's own parsers are never replaced
        instance_test_spec(_custom([], [], repo="django/django", version="3.0"))


def test_infrastructure_failure_is_error_not_empty_patch(tmp_path):
    """A sandbox that cannot start (here: a LocalSandbox over a repository that is not there) is ``error``."""
    pytest.importorskip("swebench")
    inst = _custom(["t.T.test_a"], [])
    r = grade_in_sandbox(inst, "diff --git a/x b/x\n", local_sandbox_factory(tmp_path / "no-repos"),
                         log_dir=tmp_path / "logs")
    assert r.status == ERROR and "SandboxError" in r.reason and "not a directory" in r.reason
    assert "error: SandboxError" in (tmp_path / "logs" / inst["instance_id"] / "test_output.txt").read_text()
    assert grade_in_sandbox(inst, "  \n", local_sandbox_factory(tmp_path / "no-repos")).status == EMPTY_PATCH


# --- real Verified rows --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verified(shared_data):
    rows = load_instances(dataset=shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl")
    return {r["instance_id"]: r for r in rows}


def test_oracle_files_real_rows(verified):
    files = oracle_files(verified["astropy__astropy-13398"])
    assert "astropy/coordinates/builtin_frames/itrs_observed_transforms.py" not in files   # created by the patch
    assert files == ["astropy/coordinates/builtin_frames/__init__.py",
                     "astropy/coordinates/builtin_frames/intermediate_rotation_transforms.py",
                     "astropy/coordinates/builtin_frames/itrs.py"]
    assert oracle_files(verified["astropy__astropy-12907"]) == ["astropy/modeling/separable.py"]
    assert all(isinstance(r["FAIL_TO_PASS"], list) for r in verified.values())


def test_load_instances_filters(shared_data):
    path = shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl"
    rows = load_instances(dataset=path, instance_ids=["django__django-11099", "astropy__astropy-12907"])
    assert [r["instance_id"] for r in rows] == ["django__django-11099", "astropy__astropy-12907"]
    assert len(load_instances(dataset=path, limit=3)) == 3
    from swe_srl.swe_eval.dataset import DatasetError

    with pytest.raises(DatasetError):
        load_instances(dataset=path, instance_ids=["nope__nope-1"])


def _git_clone_dir(root: Path, inst: dict, files: dict[str, str]) -> str:
    """A local git repo DIR/<owner>__<name> whose commit holds ``files``; returns its sha."""
    repo = root / inst["repo"].replace("/", "__")
    for p, c in files.items():
        (repo / p).parent.mkdir(parents=True, exist_ok=True)
        (repo / p).write_text(c)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *env, "commit", "-qm", "base"], cwd=repo, check=True)
    (repo / "UNCOMMITTED.py").write_text("x = 1\n")   # the working tree is not what is read
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


def test_prompt_from_git_clone_source(verified, tmp_path):
    inst = dict(verified["astropy__astropy-13398"])
    paths = oracle_files(inst)
    contents = {p: f'"""synthetic content of {p}"""\nVALUE = {i}\n' for i, p in enumerate(paths)}
    inst["base_commit"] = _git_clone_dir(tmp_path, inst, {**contents, "setup.py": "pass\n"})
    src = RepoDirSource(tmp_path, cache_dir=tmp_path / "cache")
    files = src.read(inst, paths)
    assert files == contents
    assert "UNCOMMITTED.py" not in src.list_files(inst) and "setup.py" in src.list_files(inst)
    msgs = repair_messages(inst, files)
    text = msgs[0]["content"]
    assert inst["problem_statement"].strip()[:200] in text
    for p in paths:
        assert f"### {p}\n{contents[p]}" in text
    assert "<<<<<<< SEARCH" in text and ">>>>>>> REPLACE" in text and "<think>" in text
    assert any((tmp_path / "cache" / inst["instance_id"]).iterdir())
    loc = localize_messages(inst, src.list_files(inst), n=2)[0]["content"]
    assert "at most 2" in loc and paths[0] in loc


def test_snapshot_source_and_missing(verified, tmp_path):
    inst = verified["django__django-11099"]
    p = oracle_files(inst)[0]
    (tmp_path / inst["instance_id"] / p).parent.mkdir(parents=True)
    (tmp_path / inst["instance_id"] / p).write_text("X = 1\n")
    assert RepoDirSource(tmp_path).read(inst, [p]) == {p: "X = 1\n"}
    from swe_srl.swe_eval.sources import SourceError

    with pytest.raises(SourceError):
        RepoDirSource(tmp_path).read(verified["astropy__astropy-12907"], ["astropy/modeling/separable.py"])


def test_parse_localization():
    files = ["a/b.py", "c.py", "d/e.py"]
    ans = "```\n1. a/b.py\n- ./c.py\nnot/there.py\nd/e.py\n```"
    assert parse_localization(ans, files, n=2) == ["a/b.py", "c.py"]
    assert parse_localization("c.py", files) == ["c.py"]


# --- generation + resume -------------------------------------------------------------------------------------
class FakeGen:
    name = "fake"

    def __init__(self, completions):
        self.completions = list(completions)
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        return [[self.completions[(self.calls - 1) % len(self.completions)]] for _ in prompts]


def test_oracle_predictions_and_resume(verified, tmp_path, shared_data):
    from swe_srl.swe_eval import EvalConfig, run_eval

    ids = ["astropy__astropy-12907", "django__django-11099"]
    repos = tmp_path / "repos"
    for iid in ids:
        for p in oracle_files(verified[iid]):
            f = repos / iid / p
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("def f():\n    return 1\n")
    fix = "<think>the bug is in f</think>\n" + "\n".join(
        "```python\n" + block(p, "    return 1", "    return 2") + "```" for p in
        ["astropy/modeling/separable.py"])
    gen = FakeGen([fix])
    cfg = EvalConfig(dataset=str(shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl"), instances=ids,
                     out_dir=str(tmp_path / "out"), predictions_only=True, repos_dir=str(repos), generator=gen,
                     model_name="fake", batch_size=1)
    s = run_eval(cfg, log=lambda m: None)
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == ids and set(preds[0]) == {"instance_id", "model_name_or_path",
                                                                          "model_patch"}
    assert validate_patch(preds[0]["model_patch"]) is None and "-    return 1\n+    return 2" in preds[0]["model_patch"]
    assert preds[1]["model_patch"] == ""                  # the edit names a file that is not given
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert gens[1]["reason"] == "missing_file"
    assert s["non_empty"] == 1 and gen.calls == 2
    # resume: a third instance is added, only it is generated; a torn last line is tolerated
    with open(tmp_path / "out" / "predictions.jsonl", "a") as f:
        f.write('{"instance_id": "torn')
    iid3 = "astropy__astropy-13398"
    cfg.instances = ids + [iid3]
    s = run_eval(cfg, log=lambda m: None)
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    # no snapshot of iid3: an infrastructure error of the prediction step, not an (empty) prediction
    assert [p["instance_id"] for p in preds] == ids and gen.calls == 2
    assert s["errors"] == 1 and s["prediction_errors"][iid3].startswith("source_error: SourceError")
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert gens[-1]["error"].startswith("source_error") and "model_patch" not in gens[-1]
    # once the files exist, a rerun generates it (and only it)
    for p in oracle_files(verified[iid3]):
        f = repos / iid3 / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("def f():\n    return 1\n")
    s = run_eval(cfg, log=lambda m: None)
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == ids + [iid3] and gen.calls == 3 and s["errors"] == 0
    run_eval(cfg, log=lambda m: None)
    assert gen.calls == 3


def test_prediction_resume_and_options_guard(tmp_path):
    """Oracle predictions on the bundled tasks (no shared data): torn tail recovered by core.io.AppendLog, resume
    generates only what is missing, other options into the same --out are refused (core.io.ResumeGuard)."""
    from swe_srl import sample_tasks as st
    from swe_srl.core.io import ResumeMismatch
    from swe_srl.swe_eval import EvalConfig, run_eval

    pytest.importorskip("unidiff")
    rows = st.eval_instances()[:2]
    for r in rows:
        st.materialize_repo(r["instance_id"], tmp_path / "repos" / r["instance_id"])
    ds = tmp_path / "ds.jsonl"
    ds.write_text("".join(json.dumps(r) + "\n" for r in rows[:1]))
    gen = FakeGen(["<think>x</think>\nno edits"])
    cfg = EvalConfig(dataset=str(ds), out_dir=str(tmp_path / "out"), predictions_only=True,
                     repos_dir=str(tmp_path / "repos"), generator=gen, model_name="fake", batch_size=1)
    assert run_eval(cfg, log=lambda m: None)["total"] == 1 and gen.calls == 1
    with open(tmp_path / "out" / "predictions.jsonl", "a") as f:
        f.write('{"instance_id": "torn')
    ds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_eval(cfg, log=lambda m: None)
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == [r["instance_id"] for r in rows] and gen.calls == 2
    cfg.temperature = 0.7
    with pytest.raises(ResumeMismatch, match="temperature"):
        run_eval(cfg, log=lambda m: None)
    assert gen.calls == 2


def test_format_violation_gives_empty_patch(tmp_path):
    from swe_srl.swe_eval.predict import repair_from_completion

    r = repair_from_completion("no think here", {"m.py": SRC})
    assert r["model_patch"] == "" and r["reason"] == "format:missing_think_open"
    r = repair_from_completion("<think>x</think><solution>" + block("m.py", "    return 0", "    return 9") +
                               "</solution>", {"m.py": SRC})
    assert r["reason"] is None and "+    return 9" in r["model_patch"]


# --- CLI -----------------------------------------------------------------------------------------------------
def test_cli_math_dispatch(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from swe_srl.cli import app

    seen = {}

    def evaluate_math(model, benchmarks, **kw):       # like the real one: the report goes to out_dir/report.md
        seen.update(model=model, benchmarks=benchmarks, **kw)
        (Path(kw["out_dir"]) / "report.md").write_text("| bench | score |\n|---|---|\n| amc23 | 1.0 |\n")
        return {"benchmarks": {"amc23": {"greedy": 1.0}}}

    mod = types.ModuleType("math_srl.evaluate")
    mod.evaluate_math = evaluate_math
    mod.grade_predictions = lambda *a, **k: pytest.fail("--predictions not given: grade_predictions must not run")
    monkeypatch.setitem(sys.modules, "math_srl.evaluate", mod)
    r = CliRunner().invoke(app, ["eval", "--task", "math", "--model", "m", "--benchmarks", "amc23,aime24", "--k", "4",
                                 "--no-greedy", "--limit", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "| amc23 | 1.0 |" in r.output
    assert seen["benchmarks"] == ["amc23", "aime24"] and seen["k"] == 4 and seen["greedy"] is False
    assert seen["temperature"] == 1.0 and seen["avg"] is True and seen["limit"] == 2


def test_cli_offline_hub_message(monkeypatch):
    from typer.testing import CliRunner

    from swe_srl.cli import app
    from swe_srl.swe_eval import dataset as ds

    def boom(*a, **k):
        raise ConnectionError("offline")

    fake = types.ModuleType("datasets")
    fake.load_dataset = boom
    monkeypatch.setitem(sys.modules, "datasets", fake)
    r = CliRunner().invoke(app, ["eval", "--split", "lite", "--model", "m", "--predictions-only"])
    assert r.exit_code == 2
    assert "--dataset" in r.output and "SWE-bench_Lite" in r.output


def test_agent_mode_documents_only_the_runtime_tools(tmp_path):
    """Agent mode shows the model the tools the runtime executes (bash, str_replace_editor, submit) and the runtime's
    real shell semantics, not every tool the collect prompts know; a real local sandbox runs the episode."""
    from environments.prompting import TOOL_DOCS
    from environments.sandbox.local_sandbox import LocalSandbox
    from swe_srl.swe_eval.agent import AGENT_SYSTEM_PROMPT, AGENT_TOOLS, run_agent

    for tool, doc in TOOL_DOCS.items():
        assert (doc in AGENT_SYSTEM_PROMPT) == (tool in AGENT_TOOLS), tool
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "init", "--allow-empty"],
                   cwd=repo, check=True)
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "a"], cwd=repo, check=True)
    seen: list[list[dict]] = []
    actions = iter([
        "<think>edit</think>\n<function=bash>\n<parameter=command>sed -i 's/1/2/' a.py</parameter>\n</function>",
        "<think>done</think>\n<function=submit>\n</function>",
    ])

    class Scripted:
        name = "scripted"

        def generate(self, prompts, params):
            seen.extend(prompts)
            return [[next(actions)] for _ in prompts]

    res = run_agent({"problem_statement": "make x 2", "instance_id": "t"}, Scripted(), None, max_steps=4,
                    sandbox_factory=lambda inst: LocalSandbox(str(repo)))
    assert res["reason"] == "submit", res
    assert "-x = 1" in res["model_patch"] and "+x = 2" in res["model_patch"]
    assert all(p[0]["content"] == AGENT_SYSTEM_PROMPT for p in seen) and len(seen) == 2
