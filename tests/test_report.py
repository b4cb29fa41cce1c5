"""`swe-srl report`: Table 1 (math) and Table 4 (SWE) layouts over run directories, the average computed from the
cells, the paper's rows with the 27.6-vs-26.9 footnote, CSV and PNG outputs, learning-check rows."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from swe_srl.cli import app
from swe_srl.commands.report import PAPER_TABLE1, TABLE1_COLUMNS


def _math_run(tmp_path, name, cells):
    """A run dir with a real math report (grade_predictions over a predictions file of our own)."""
    from math_srl.evaluate import grade_predictions

    data = tmp_path / "data"
    for b in ("amc23", "aime24", "aime25", "minerva_math"):
        (data / b).mkdir(parents=True, exist_ok=True)
        (data / b / "test.jsonl").write_text("".join(json.dumps({"problem": f"{b} {i}", "answer": str(i)}) + "\n"
                                                     for i in range(4)))
    rows = []
    for b, (greedy_right, avg_right) in cells.items():
        for i in range(4):
            rows.append({"benchmark": b, "index": i, "mode": "greedy",
                         "completion": f"\\boxed{{{i if i < greedy_right else 99}}}"})
            for s in range(2):
                rows.append({"benchmark": b, "index": i, "mode": "avg@32",
                             "completion": f"\\boxed{{{i if i < avg_right else 99}}}"})
    pred = tmp_path / f"{name}.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / name
    (run / "eval").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"config": {"method": "srl"}}))
    grade_predictions(pred, data_dir=data, out_dir=run / "eval")
    return run


def test_table1_average_from_cells_csv_png_and_paper_rows(tmp_path):
    run = _math_run(tmp_path, "srl_run", {"amc23": (2, 1), "aime24": (1, 0), "aime25": (4, 2), "minerva_math": (3, 0)})
    partial = _math_run(tmp_path, "partial", {"amc23": (4, 4)})
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["report", str(run), str(partial), "--out", str(out), "--with-paper"])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert "| AMC23 Avg@32 | AMC23 greedy | AIME24 Avg@32 | AIME24 greedy | AIME25 Avg@32 | AIME25 greedy | " \
           "Minerva greedy | Avg |" in md
    # cells: AMC23 25/50, AIME24 0/25, AIME25 50/100, Minerva 75 -> mean of the 7 = 325/7
    line = next(x for x in md.splitlines() if x.startswith("| SRL [srl_run]"))
    assert line == "| SRL [srl_run] | 25.0 | 50.0 | 0.0 | 25.0 | 50.0 | 100.0 | 75.0 | 46.4 |"
    assert "| SRL [partial] | 100.0 | 100.0 | – | – | – | – | – | 100.0 (2/7 cells) |" in md
    srl = next(x for x in md.splitlines() if x.startswith("| SRL (paper)"))
    assert srl.endswith("| 27.6 (cells: 26.9)† |") and "27.6" in md and "26.9" in md
    rlvr = next(x for x in md.splitlines() if x.startswith("| RLVR (paper)"))
    assert rlvr.endswith("| 24.5 |")               # rows whose printed average matches their cells: no mark
    assert all(abs(sum(v) / 7 - avg) < 0.051 for m, v, avg in PAPER_TABLE1 if not m.startswith("SRL (paper)"))
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert rows[0]["model"] == "SRL [srl_run]" and float(rows[0]["avg"]) == pytest.approx(325 / 7, abs=1e-3)
    assert [c for c, _, _ in TABLE1_COLUMNS] == list(rows[0])[1:8]
    assert any(r["model"] == "SRL (paper)" and r["printed_avg"] == "27.6" for r in rows)
    assert (out / "report.png").stat().st_size > 1000


def test_table4_and_learning_check_rows(tmp_path):
    swe = tmp_path / "swe_run"
    for mode, rate in (("oracle", 12.5), ("e2e", 4.0)):
        (swe / mode).mkdir(parents=True)
        (swe / mode / "report.json").write_text(json.dumps({"mode": mode, "resolve_rate": rate, "total": 8}))
    lc = tmp_path / "lc"
    lc.mkdir()
    (lc / "test_eval.json").write_text(json.dumps({"label": "SRL", "n": 20, "step_reward": 0.12,
                                                   "step_reward_ci95": [0.01, 0.2], "format_rate": 0.9,
                                                   "similarity_wellformed": 0.3}))
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["report", str(swe), str(lc), "--out", str(out), "--with-paper"])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert "| swe_run | 12.5 | 4.0 |" in md and "| SRL (paper) | 14.8 | 8.6 |" in md
    assert "| SRL | 20 | 0.120 [0.010, 0.200] | 0.90 | 0.300 |" in md
    assert (out / "table4.csv").exists() and (out / "learning_check.csv").exists() and (out / "report.png").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no such directory" in res.output
