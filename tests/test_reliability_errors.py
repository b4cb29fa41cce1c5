"""One error surface (issue #16 item 2; tally in docs/reliability.md): bad input to every command ends as one line
``error: <file>[:<line>]: <field>: <reason>`` on stderr with a non-zero exit, never a traceback unless ``--debug`` /
``SWE_SRL_DEBUG=1``; validation happens before any model loads (and in ``--dry-run``); batch jobs print, count and
skip bad inputs, write ``errors.jsonl`` and exit 3 when nothing usable was produced.

Every case runs through the real CLI app (typer's CliRunner on ``swe_srl.cli.app``: the same group, the same error
handler); ``test_real_process_*`` run ``python -m swe_srl.cli`` as a subprocess to see what a user's terminal sees.
Inputs are real files (the bundled sample trajectories and step data, byte-corrupted copies of them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from swe_srl.cli import app
from swe_srl.core.errors import SweSrlError, one_line

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "configs" / "data" / "swe_steps_sample.jsonl"
SWE_CONFIG = ROOT / "configs" / "swe_srl_cpu.yaml"
TRAJ = ROOT / "swe_srl" / "sample_tasks" / "swe"


def _step_lines() -> list[str]:
    return STEPS.read_text(encoding="utf-8").splitlines()


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _steps_with(tmp: Path, name: str, line3: str | bytes) -> Path:
    """The sample steps with line 3 replaced (1-based)."""
    lines = [ln.encode("utf-8") for ln in _step_lines()[:5]]
    lines[2] = line3 if isinstance(line3, bytes) else line3.encode("utf-8")
    return _write(tmp / name, b"\n".join(lines) + b"\n")


def _no_prompt_row() -> str:
    d = json.loads(_step_lines()[2])
    del d["prompt"]
    return json.dumps(d)


def _dataset(tmp: Path) -> Path:
    rows = [{"instance_id": f"demo__demo-{k}", "repo": "demo/demo", "base_commit": "0" * 40, "patch": "",
             "problem_statement": "x", "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]"} for k in (1, 2)]
    return _write(tmp / "ds.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _preds(tmp: Path, ids: list[str], name: str = "preds.jsonl") -> Path:
    return _write(tmp / name, "".join(json.dumps({"instance_id": i, "model_name_or_path": "m",
                                                  "model_patch": ""}) + "\n" for i in ids))


@dataclass
class Case:
    """One CLI error path: ``args(tmp)`` -> argv; the one error line must contain every string of ``expect``."""
    id: str
    args: Callable[[Path], list[str]]
    expect: list[str]
    rc: int = 2
    raises: bool = True          # the error travels as an exception (so --debug shows its traceback)
    not_in: list[str] = field(default_factory=list)


CASES = [
    # -- train: before any model loads, and in --dry-run
    Case("train_missing_model_dry_run",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--model", str(t / "no_model"), "--dry-run", "-o", str(t / "r")],
         ["no_model: model: no such directory"]),
    Case("train_missing_model",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--model", str(t / "no_model"), "-o", str(t / "r")],
         ["no_model: model: no such directory"]),
    Case("train_model_dir_without_config",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--model", str(t), "--dry-run", "-o", str(t / "r")],
         ["model: not a model directory (no config.json)"]),
    Case("train_malformed_steps_dry_run",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--data", str(_steps_with(t, "s.jsonl", '{"id": "torn')),
                    "--dry-run", "-o", str(t / "r")],
         ["s.jsonl:3: data: not valid JSON"]),
    Case("train_malformed_steps",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--data", str(_steps_with(t, "s.jsonl", '{"id": "torn')),
                    "-o", str(t / "r")],
         ["s.jsonl:3: data: not valid JSON"]),
    Case("train_step_without_prompt",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--data", str(_steps_with(t, "s.jsonl", _no_prompt_row())),
                    "-o", str(t / "r")],
         ["s.jsonl:3: data: not a step record: prompt: missing"]),
    Case("train_binary_steps",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--data", str(_steps_with(t, "s.jsonl", b"\xff\xfe\x00\x81")),
                    "--dry-run", "-o", str(t / "r")],
         ["s.jsonl:3: data: not UTF-8 text"]),
    Case("train_missing_data",
         lambda t: ["train", "-c", str(SWE_CONFIG), "--data", str(t / "none.jsonl"), "-o", str(t / "r")],
         ["none.jsonl: data: no such file"]),
    Case("train_bad_yaml",
         lambda t: ["train", "-c", str(_write(t / "c.yaml", "method: srl\nmodel: [unclosed\n")), "--dry-run"],
         ["c.yaml: not valid YAML"]),
    # -- eval: the dataset and --predictions, every row, before the lock / a model / Docker
    Case("eval_predictions_malformed",
         lambda t: ["eval", "--dataset", str(_dataset(t)), "--out", str(t / "o"), "--predictions",
                    str(_write(t / "p.jsonl", '{"instance_id": "demo__demo-1", "model_patch": ""}\n{"torn'))],
         ["p.jsonl:2: --predictions: not valid JSON"]),
    Case("eval_predictions_not_objects",
         lambda t: ["eval", "--dataset", str(_dataset(t)), "--out", str(t / "o"), "--predictions",
                    str(_write(t / "p.jsonl", '[1, 2]\n'))],
         ["p.jsonl:1: --predictions: expected a JSON object"]),
    Case("eval_predictions_missing",
         lambda t: ["eval", "--dataset", str(_dataset(t)), "--out", str(t / "o"), "--predictions",
                    str(t / "nope.jsonl")],
         ["nope.jsonl: --predictions: no such file"]),
    Case("eval_predictions_match_no_instance",
         lambda t: ["eval", "--dataset", str(_dataset(t)), "--out", str(t / "o"), "--predictions",
                    str(_preds(t, ["a__b-1", "a__b-2", "a__b-3", "a__b-4"]))],
         ["preds.jsonl: --predictions: none of its 4 predictions matches one of the 2 instances"]),
    Case("eval_dataset_malformed",
         lambda t: ["eval", "--gold", "--out", str(t / "o"), "--dataset",
                    str(_write(t / "d.jsonl", '{"instance_id": "demo__demo-1"}\n{"instance_id": \n'))],
         ["d.jsonl:2: --dataset: not valid JSON"]),
    Case("eval_dataset_row_without_id",
         lambda t: ["eval", "--gold", "--out", str(t / "o"), "--dataset",
                    str(_write(t / "d.jsonl", '{"instance_id": "demo__demo-1"}\n{"repo": "x/y"}\n'))],
         ["d.jsonl:2: --dataset: not a SWE-bench instance: missing instance_id"]),
    Case("eval_dataset_missing",
         lambda t: ["eval", "--gold", "--out", str(t / "o"), "--dataset", str(t / "none.jsonl"), "--dry-run"],
         ["none.jsonl: --dataset: no such file"]),
    Case("eval_missing_model_dry_run",
         lambda t: ["eval", "--dataset", str(_dataset(t)), "--model", str(t / "no_model"), "--out", str(t / "o"),
                    "--dry-run"],
         ["no_model: --model: no such directory"]),
    # -- collect
    Case("collect_binary_sandbox_map",
         lambda t: ["collect", "--trajectories", str(TRAJ), "--out", str(t / "o"), "--no-progress", "--replay",
                    "local", "--sandbox-map", str(_write(t / "map.json", bytes(range(256)) * 8))],
         ["map.json: --sandbox-map: not UTF-8 text"]),
    Case("collect_sandbox_map_bad_json",
         lambda t: ["collect", "--trajectories", str(TRAJ), "--out", str(t / "o"), "--no-progress", "--replay",
                    "local", "--sandbox-map", str(_write(t / "map.json", '{\n  "a": "img",\n  oops\n}'))],
         ["map.json:3: --sandbox-map: not valid JSON"]),
    Case("collect_math_missing_input",
         lambda t: ["collect", "--task", "math", "--input", str(t / "none.jsonl"), "--out", str(t / "o")],
         ["none.jsonl: --input: no such file"]),
    Case("collect_math_nothing_readable",
         lambda t: ["collect", "--task", "math", "--out", str(t / "o"), "--input",
                    str(_write(t / "m.jsonl", "\n{oops\n[1]\n"))],
         ["m.jsonl:2: --input: no readable record (2 bad"], rc=3),
    # -- report
    Case("report_torn_test_eval_json",
         lambda t: ["report", str(_write(t / "run" / "test_eval.json", '{"label": ').parent), "--out", str(t / "rep")],
         ["run/test_eval.json:1: not valid JSON"]),
    # -- inspect: blame the row, not --tokenizer
    Case("inspect_row_without_prompt",
         lambda t: ["inspect", str(_steps_with(t / "d", "steps.jsonl", _no_prompt_row()).parent), "--index", "2"],
         ["d/steps.jsonl:3: not a step record: prompt: missing"], not_in=["--tokenizer"]),
    Case("inspect_row_without_prompt_with_tokenizer",
         lambda t: ["inspect", str(_steps_with(t / "d", "steps.jsonl", _no_prompt_row()).parent), "--index", "2",
                    "--tokenizer", "smollm2-135m"],
         ["d/steps.jsonl:3: not a step record: prompt: missing"], not_in=["--tokenizer"]),
]


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    monkeypatch.delenv("SWE_SRL_DEBUG", raising=False)
    return CliRunner()


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_error_is_one_line_without_traceback(case: Case, tmp_path: Path, runner: CliRunner):
    args = case.args(tmp_path)
    r = runner.invoke(app, args)
    assert r.exit_code == case.rc, (r.exit_code, r.stderr, r.stdout, r.exception)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert isinstance(r.exception, SystemExit) or r.exception is None, repr(r.exception)
    errors = [ln for ln in _lines(r.stderr) if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for s in case.expect:
        assert s in errors[0], (s, errors[0])
    for s in case.not_in:
        assert s not in errors[0], (s, errors[0])
    if args[0] == "train":              # before any model loads: the run directory was never created
        assert not (tmp_path / "r").exists()
    if args[0] == "eval":               # before the output lock: nothing written
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", [c for c in CASES if c.raises], ids=[c.id for c in CASES if c.raises])
def test_cli_error_keeps_its_traceback_with_debug(case: Case, tmp_path: Path, runner: CliRunner):
    r = runner.invoke(app, ["--debug", *case.args(tmp_path)])
    assert r.exit_code != 0
    assert isinstance(r.exception, SweSrlError), repr(r.exception)   # the exception itself escapes: traceback
    assert r.exc_info is not None and r.exc_info[2] is not None
    for s in case.expect:
        assert s in str(r.exception)


def _cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SWE_SRL_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "swe_srl.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def test_real_process_one_line_then_traceback_with_debug_and_env(tmp_path: Path):
    args = ["train", "-c", str(SWE_CONFIG), "--data", str(_steps_with(tmp_path, "s.jsonl", '{"id": "torn')),
            "--dry-run", "-o", str(tmp_path / "r")]
    plain = _cli(args)
    assert plain.returncode == 2
    assert _lines(plain.stderr) == [f"error: {tmp_path / 's.jsonl'}:3: data: not valid JSON (Unterminated string "
                                    "starting at, column 8)"], plain.stderr
    assert "Traceback" not in plain.stdout
    debug = _cli(["--debug", *args])
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "InputError" in debug.stderr
    env = _cli(args, {"SWE_SRL_DEBUG": "1"})
    assert env.returncode == 1 and "Traceback (most recent call last)" in env.stderr


def test_real_process_eval_predictions_matching_nothing(tmp_path: Path):
    r = _cli(["eval", "--dataset", str(_dataset(tmp_path)), "--out", str(tmp_path / "o"), "--predictions",
              str(_preds(tmp_path, ["x__y-1", "x__y-2", "x__y-3", "x__y-4"]))])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(_lines(r.stderr)) == 1 and "none of its 4 predictions matches" in r.stderr
    assert not (tmp_path / "o").exists()     # nothing graded, nothing written (before: exit 0, "empty_patch: 4")


def test_eval_partial_predictions_warn_and_dry_run_reports(tmp_path: Path, runner: CliRunner):
    r = runner.invoke(app, ["eval", "--dataset", str(_dataset(tmp_path)), "--out", str(tmp_path / "o"),
                            "--predictions", str(_preds(tmp_path, ["demo__demo-1", "other__x-9"])), "--dry-run"])
    assert r.exit_code == 0, r.stderr
    assert "warning: --predictions" in r.stderr and "1 of 2 instances have a prediction" in r.stderr
    assert "1 predictions match no instance" in r.stderr
    assert json.loads(r.stdout)["matched_predictions"] == 1
    assert not (tmp_path / "o").exists()


def test_train_dry_run_checks_data_but_tolerates_data_yet_to_collect(runner: CliRunner, tmp_path: Path):
    """The 7B configs name data that a collect writes later: --dry-run warns (exit 0); a real run refuses."""
    cfg = ROOT / "configs" / "swe_srl_qwen2.5_coder_7b.yaml"
    missing = "data/swe_srl/steps.jsonl"
    if (ROOT / missing).exists():
        pytest.skip(f"{missing} exists here")
    r = runner.invoke(app, ["train", "-c", str(cfg), "--dry-run", "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.stderr
    assert f"warning: data: {missing}: no such file yet" in r.stderr
    r = runner.invoke(app, ["train", "-c", str(cfg), "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {missing}: data: no such file"


# -- batch jobs: per-input errors printed, in errors.jsonl and the ledger, counted, skipped; exit 3 if nothing usable
def _corrupt_inputs(d: Path, n_bad: int) -> None:
    for k in range(n_bad):
        _write(d / f"bad{k}.traj", '{"trajectory": [' + "x" * k)


def test_collect_prints_first_errors_writes_errors_jsonl_and_skips_duplicates(tmp_path: Path, runner: CliRunner):
    src = tmp_path / "in"
    good = sorted(p for p in TRAJ.glob("*/*") if p.name.endswith((".traj", ".traj.json")))
    for p in good:
        _write(src / p.name, p.read_bytes())
    _write(src / ("copy_" + good[0].name), good[0].read_bytes())          # byte-identical duplicate
    _corrupt_inputs(src, 7)
    _write(src / "binary.traj.json", b"\x80\x81\xff\x00" * 64)
    out = tmp_path / "out"
    r = runner.invoke(app, ["collect", "--trajectories", str(src), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.stderr                     # something usable was produced
    assert "Traceback" not in r.stderr
    err = _lines(r.stderr)
    head = [i for i, ln in enumerate(err) if ln.startswith("errors: 8 input unit(s)")]
    assert head, r.stderr
    shown = err[head[0] + 1: head[0] + 6]
    assert all(ln.strip().startswith("malformed:") for ln in shown), shown
    assert err[head[0] + 6].strip() == f"… and 3 more, see {out / 'errors.jsonl'}"
    rows = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {Path(x["source"]).name for x in rows} == {f"bad{k}.traj" for k in range(7)} | {
        "binary.traj.json"}
    assert any("not UTF-8" in x["reason"] for x in rows)
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    assert sum(1 for e in ledger if str(e.get("reason", "")).startswith("malformed:")) == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["errors"] == {"total": 8, "file": "errors.jsonl"}
    assert manifest["this_run"]["units_failed"] == 8
    assert manifest["files"]["duplicate_files"] == 1
    assert any(ln.startswith("duplicates: 1 input file(s) byte-identical") for ln in err), r.stderr
    instances = [e.get("instance_id") for e in ledger if e.get("status") == "ok"]
    assert len(instances) == len(set(instances)) == len(good)           # the duplicate was not collected twice
    # a resume redoes nothing and rewrites errors.jsonl from the ledger: no duplicated error lines
    r2 = runner.invoke(app, ["collect", "--trajectories", str(src), "--out", str(out), "--no-progress"])
    assert r2.exit_code == 0, r2.stderr
    assert len((out / "errors.jsonl").read_text().splitlines()) == 8


def test_collect_exit_3_when_every_input_is_bad(tmp_path: Path, runner: CliRunner):
    src = tmp_path / "in"
    _corrupt_inputs(src, 3)
    r = runner.invoke(app, ["collect", "--trajectories", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 3, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    assert _lines(r.stderr)[-1].startswith(f"error: {tmp_path / 'out'}: nothing usable was produced (0 steps)")
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 3


def _math_rows(n: int) -> list[str]:
    return [json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?",
                        "solution": f"Step 1: We add {i} and {i} carefully, writing every part of the sum out.\n"
                                    f"Step 2: So the answer is {2 * i}, and we box it as \\boxed{{{2 * i}}} here."})
            for i in range(n)]


def test_math_collect_skips_and_counts_bad_rows_naming_file_and_line(tmp_path: Path, runner: CliRunner):
    lines = _math_rows(6)
    lines.insert(2, '{"id": "torn", "problem": ')        # line 3
    lines.insert(4, "[1, 2, 3]")                          # line 5
    src = _write(tmp_path / "m.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["collect", "--task", "math", "--input", str(src), "--out", str(out), "--val-size", "1"])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert "Traceback" not in r.stderr
    assert f"malformed: {src}:3: not valid JSON" in r.stderr and f"malformed: {src}:5: expected a JSON object" \
        in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["questions_ok"] == 6 and manifest["skipped"] == {"malformed": 2}
    assert manifest["errors"]["total"] == 2
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["reason"].split(": ")[1] for e in errs] == [f"{src}:3", f"{src}:5"]


def test_one_line_formats_expected_errors(tmp_path: Path):
    import yaml

    with pytest.raises(OSError) as e:
        (tmp_path / "missing.txt").read_text()
    assert one_line(e.value) == f"error: {tmp_path / 'missing.txt'}: No such file or directory"
    with pytest.raises(yaml.YAMLError) as y:
        yaml.safe_load("a: [1\nb: 2\n")
    assert one_line(y.value).startswith("error: <unicode string>:") and "invalid YAML" in one_line(y.value)
    with pytest.raises(UnicodeDecodeError) as u:
        b"\xff".decode("utf-8")
    assert one_line(u.value) == "error: not UTF-8 text (invalid start byte at byte 0)"
    err = SweSrlError(file="f.jsonl", line=3, field="data", reason="not valid JSON")
    assert err.one_line() == "error: f.jsonl:3: data: not valid JSON" and str(err) == "f.jsonl:3: data: not valid JSON"
    assert (err.file, err.line, err.field, err.reason) == ("f.jsonl", 3, "data", "not valid JSON")


def test_every_project_error_type_has_the_one_base_and_keeps_its_old_one():
    from environments.collect import CollectError
    from environments.sandbox.base import SandboxError
    from environments.splits import SplitError
    from environments.trajectories._util import TrajectoryFormatError
    from math_srl.collect import MathInputError
    from swe_srl.core.io import OutputLocked, ResumeMismatch
    from swe_srl.core.schema import StepRecordError
    from swe_srl.core.task import TaskError
    from swe_srl.models import ModelResolutionError
    from swe_srl.swe_eval.dataset import DatasetError
    from swe_srl.swe_eval.predict import PredictionsError
    from swe_srl.swe_eval.runner import EvalSetupError
    from swe_srl.train.config import ConfigError

    for cls, old in ((CollectError, RuntimeError), (SandboxError, RuntimeError), (SplitError, ValueError),
                     (TrajectoryFormatError, ValueError), (MathInputError, ValueError), (OutputLocked, RuntimeError),
                     (ResumeMismatch, ValueError), (StepRecordError, ValueError), (TaskError, ValueError),
                     (ModelResolutionError, RuntimeError), (DatasetError, RuntimeError),
                     (PredictionsError, ValueError), (EvalSetupError, ValueError), (ConfigError, ValueError)):
        assert issubclass(cls, SweSrlError) and issubclass(cls, old), cls
