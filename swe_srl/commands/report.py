"""`swe-srl report RUN_DIR...`: the paper's tables over runs, as Markdown + CSV + a PNG bar chart.

For each RUN_DIR (a training run, an evaluation --out directory, or a folder holding several), every report.json
below it (depth <= 3) is read:

  math evaluation (math_srl.evaluate / grade_predictions)  -> Table 1: AMC23 Avg@32, greedy, AIME24 x2, AIME25 x2,
                                                              Minerva greedy, Avg (the mean of the row's cells,
                                                              computed here; a row missing cells says how many)
  SWE evaluation (swe_eval, mode oracle / e2e)            -> Table 4: oracle file edit / end-to-end resolve rate
  learning check (RUN_DIR/test_eval.json)                 -> held-out step reward with its 95% interval

One row per model: the run's label (test_eval.json ``label``; else method + sft_target / init_from from the run's
manifest.json; else the directory name). Several reports under one RUN_DIR fill one row. ``--with-paper`` adds the
paper's own rows (Deng et al. 2025, Table 1 and Table 4, as quoted in ../shared/docs/srl-paper-notes.md) with a
footnote: the paper's SRL average 27.6 is not the mean of its own cells (26.9).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from ..core.errors import SweSrlError
from ._common import fail

# (benchmark, mode) per Table 1 column; "avg" = the Avg@k column (k = 32 in the paper)
TABLE1_COLUMNS = (("AMC23 Avg@32", "amc23", "avg"), ("AMC23 greedy", "amc23", "greedy"),
                  ("AIME24 Avg@32", "aime24", "avg"), ("AIME24 greedy", "aime24", "greedy"),
                  ("AIME25 Avg@32", "aime25", "avg"), ("AIME25 greedy", "aime25", "greedy"),
                  ("Minerva greedy", "minerva_math", "greedy"))
TABLE4_COLUMNS = (("Oracle file edit", "oracle"), ("End-to-end", "e2e"))

# Deng et al., arXiv:2510.25992, Table 1 (v1 = v3; R3 is v3 only), Qwen2.5-7B-Instruct trained on s1K-1.1: the 7 cells
# and the paper's printed Average. Quoted from ../shared/docs/srl-paper-notes.md §3.1.
PAPER_TABLE1 = [
    ("Qwen2.5-7B-Instruct (paper)", (49.3, 50.0, 10.5, 13.3, 7.5, 6.7, 34.9), 24.6),
    ("S1K-7B (paper)", (24.1, 25.0, 2.2, 3.3, 3.7, 3.3, 20.2), 11.7),
    ("SFT (R1 reasoning) (paper)", (26.8, 40.0, 3.9, 10.0, 5.4, 10.0, 20.2), 16.6),
    ("SFT (R1 outline) (paper)", (36.2, 27.5, 5.1, 3.3, 3.8, 6.7, 31.6), 16.3),
    ("RLVR (paper)", (52.0, 47.5, 11.1, 10.0, 7.4, 10.0, 33.8), 24.5),
    ("SFT (outline) -> RLVR (paper)", (37.6, 35.0, 4.9, 3.3, 4.5, 6.7, 30.1), 17.4),
    ("R3 (paper, v3 only)", (52.5, 57.5, 10.0, 13.3, 7.4, 10.0, 35.3), 26.6),
    ("SRL (paper)", (51.5, 50.0, 13.2, 16.7, 7.1, 13.3, 36.4), 27.6),
    ("SRL -> RLVR (paper)", (52.1, 57.5, 13.3, 20.0, 8.6, 10.0, 36.4), 28.3),
]
# Table 4 (v1) / Table 5 (v3): SWE-Bench Verified resolve rate %, greedy
PAPER_TABLE4 = [("Qwen2.5-Coder-7B-Instruct (paper)", (5.8, 3.2)), ("SWE-Gym-7B (paper)", (8.4, 4.2)),
                ("SRL (paper)", (14.8, 8.6))]
PAPER_FOOTNOTE = ("Paper rows: Deng et al. 2025 (arXiv:2510.25992) Table 1 / Table 4, Qwen2.5-7B(-Coder)-Instruct "
                  "at full scale. Their Avg is the paper's printed value; for SRL the paper prints 27.6, while the "
                  "mean of its seven cells is 26.9 (the same 27.6 recurs in Tables 2 and 3), so either a cell or the "
                  "average is a typo and SRL's gain over the base model may be +2.3 rather than +3.0.")


def _read_json(path: Path) -> dict:
    """A JSON file of a run directory; unreadable: one line naming it (``SweSrlError``)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SweSrlError(file=path, line=e.lineno, reason=f"not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise SweSrlError(file=path, reason="not UTF-8 text") from None
    if not isinstance(d, dict):
        raise SweSrlError(file=path, reason=f"expected a JSON object, got {type(d).__name__}")
    return d


def _reports(run_dir: Path) -> list[tuple[Path, dict]]:
    out = []
    for p in sorted(run_dir.glob("**/report.json")):
        if len(p.relative_to(run_dir).parts) > 4:
            continue
        try:
            out.append((p, json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            typer.echo(f"[swe-srl] report: {p}: unreadable ({type(e).__name__}), skipped", err=True)
            continue
    return out


def run_label(run_dir: Path) -> str:
    te = run_dir / "test_eval.json"
    if te.exists():
        label = _read_json(te).get("label")
        if label:
            return label
    man = run_dir / "manifest.json"
    if man.exists():
        cfg = _read_json(man).get("config", {})
        method = cfg.get("method")
        if method:
            name = {"srl": "SRL", "rlvr": "RLVR", "sft": "SFT"}.get(method, method)
            if method == "sft":
                name += f" ({ {'step': 'steps', 'full': 'outline'}.get(cfg.get('sft_target'), cfg.get('sft_target'))})"
            if method == "srl" and cfg.get("srl_granularity") == "holistic":
                name += " (one-step holistic)"
            if method == "srl" and cfg.get("dynamic_sampling") is False:
                name += " w/o dynamic sampling"
            if cfg.get("init_from"):
                name = f"{Path(cfg['init_from']).parent.name} -> {name}"
            return f"{name} [{run_dir.name}]"
    return run_dir.name


def _math_cell(bench: dict, mode: str) -> tuple[float | None, str]:
    if mode == "greedy":
        return bench.get("greedy"), ""
    avg = sorted((k for k in bench if k.startswith("avg@")), key=lambda k: -int(k.split("@")[1] or 0))
    if not avg:
        return None, ""
    return bench[avg[0]], "" if avg[0] == "avg@32" else f" ({avg[0]})"


def collect(run_dirs: list[Path]) -> dict[str, Any]:
    math_rows, swe_rows, lc_rows = [], [], []
    for d in run_dirs:
        label = run_label(d)
        cells: dict[str, tuple[float, str]] = {}
        swe: dict[str, float] = {}
        for path, rep in _reports(d):
            if isinstance(rep.get("benchmarks"), dict):
                for col, bench, mode in TABLE1_COLUMNS:
                    b = rep["benchmarks"].get(bench)
                    if b:
                        v, note = _math_cell(b, mode)
                        if v is not None:
                            cells[col] = (float(v), note)
            elif "resolve_rate" in rep and rep.get("mode") in ("oracle", "e2e"):
                swe[rep["mode"]] = float(rep["resolve_rate"])
        if cells:
            vals = [cells[c][0] for c, _, _ in TABLE1_COLUMNS if c in cells]
            math_rows.append({"model": label, "cells": {c: cells[c] for c in cells},
                              "avg": sum(vals) / len(vals), "n_cells": len(vals), "paper": False})
        if swe:
            swe_rows.append({"model": label, "cells": swe, "paper": False})
        te = d / "test_eval.json"
        if te.exists():
            t = _read_json(te)
            lc_rows.append({"model": label, **{k: t.get(k) for k in ("n", "step_reward", "step_reward_ci95",
                                                                      "format_rate", "similarity_wellformed")}})
        if not (cells or swe or te.exists()):
            typer.echo(f"[swe-srl] report: {d}: no math/SWE report.json nor test_eval.json found", err=True)
    return {"math": math_rows, "swe": swe_rows, "learning_check": lc_rows}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def to_markdown(data: dict[str, Any], with_paper: bool) -> str:
    lines: list[str] = []
    math = data["math"] + ([{"model": m, "cells": {c: (v, "") for (c, _, _), v in zip(TABLE1_COLUMNS, vals)},
                              "avg": sum(vals) / 7, "printed_avg": avg, "n_cells": 7, "paper": True}
                             for m, vals, avg in PAPER_TABLE1] if with_paper and data["math"] else [])
    if math:
        lines += ["### Table 1 layout: math benchmarks (accuracy %)", "",
                  "| Model | " + " | ".join(c for c, _, _ in TABLE1_COLUMNS) + " | Avg |",
                  "|---|" + "---|" * (len(TABLE1_COLUMNS) + 1)]
        for r in math:
            cells = [(_fmt(r["cells"][c][0]) + r["cells"][c][1]) if c in r["cells"] else "–"
                     for c, _, _ in TABLE1_COLUMNS]
            if r["paper"]:
                avg = f"{r['printed_avg']:.1f}" + (f" (cells: {r['avg']:.1f})†" if abs(r["printed_avg"] - r["avg"])
                                                   > 0.051 else "")
            else:
                avg = f"{r['avg']:.1f}" + ("" if r["n_cells"] == 7 else f" ({r['n_cells']}/7 cells)")
            lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {avg} |")
        lines.append("")
        lines.append("Avg = mean of the row's cells, computed by swe-srl report (a row with missing cells: the mean "
                     "of those present). A cell marked (avg@k) used k samples instead of 32.")
        if with_paper:
            lines += ["", "† " + PAPER_FOOTNOTE]
        lines.append("")
    swe = data["swe"] + ([{"model": m, "cells": dict(zip(("oracle", "e2e"), v)), "paper": True}
                          for m, v in PAPER_TABLE4] if with_paper and data["swe"] else [])
    if swe:
        lines += ["### Table 4 layout: SWE-bench Verified resolve rate (%)", "",
                  "| Model | " + " | ".join(c for c, _ in TABLE4_COLUMNS) + " |", "|---|---|---|"]
        for r in swe:
            lines.append(f"| {r['model']} | " + " | ".join(_fmt(r["cells"].get(m)) for _, m in TABLE4_COLUMNS) + " |")
        lines.append("")
    if data["learning_check"]:
        lines += ["### Learning check: held-out test steps (greedy)", "",
                  "| Model | test steps | step reward [95% CI] | format rate | similarity when well-formed |",
                  "|---|---|---|---|---|"]
        for r in data["learning_check"]:
            ci = r.get("step_reward_ci95") or [None, None]
            sim = r.get("similarity_wellformed")
            lines.append(f"| {r['model']} | {r['n']} | {r['step_reward']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                         f"{r['format_rate']:.2f} | {'–' if sim is None or sim != sim else f'{sim:.3f}'} |")
        lines += ["", "Step reward = difflib similarity of the action to the expert's step, −1 when the completion "
                      "breaks the <think>…</think> format; interval: bootstrap over test questions.", ""]
        if with_paper:
            lines += ["The paper reports no step-reward numbers; its rows (Table 1) need benchmark evaluations "
                      "(`swe-srl eval --task math`) of these runs.", ""]
    return "\n".join(lines)


def write_csv(data: dict[str, Any], out: Path, with_paper: bool) -> list[Path]:
    paths = []
    if data["math"]:
        p = out / "table1.csv"
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", *[c for c, _, _ in TABLE1_COLUMNS], "avg", "n_cells", "printed_avg", "source"])
            for r in data["math"]:
                w.writerow([r["model"], *[r["cells"].get(c, (None,))[0] for c, _, _ in TABLE1_COLUMNS],
                            round(r["avg"], 3), r["n_cells"], "", "run"])
            if with_paper:
                for m, vals, avg in PAPER_TABLE1:
                    w.writerow([m, *vals, round(sum(vals) / 7, 3), 7, avg, "paper"])
        paths.append(p)
    if data["swe"]:
        p = out / "table4.csv"
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "oracle_file_edit", "end_to_end", "source"])
            for r in data["swe"]:
                w.writerow([r["model"], r["cells"].get("oracle"), r["cells"].get("e2e"), "run"])
            if with_paper:
                for m, v in PAPER_TABLE4:
                    w.writerow([m, *v, "paper"])
        paths.append(p)
    if data["learning_check"]:
        p = out / "learning_check.csv"
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "test_steps", "step_reward", "ci95_lo", "ci95_hi", "format_rate",
                        "similarity_wellformed"])
            for r in data["learning_check"]:
                ci = r.get("step_reward_ci95") or [None, None]
                w.writerow([r["model"], r["n"], r["step_reward"], ci[0], ci[1], r["format_rate"],
                            r.get("similarity_wellformed")])
        paths.append(p)
    return paths


def write_png(data: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("math", "swe", "learning_check") if data[k]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, k in zip(axes[0], panels):
        rows = data[k]
        names = [r["model"] for r in rows]
        x = range(len(rows))
        if k == "math":
            ax.bar(x, [r["avg"] for r in rows], color="tab:blue")
            ax.set_title("Table 1 layout: Avg of the cells (%)", fontsize=9)
        elif k == "swe":
            w = 0.4
            ax.bar([i - w / 2 for i in x], [r["cells"].get("oracle") or 0 for r in rows], w, label="oracle file edit")
            ax.bar([i + w / 2 for i in x], [r["cells"].get("e2e") or 0 for r in rows], w, label="end-to-end")
            ax.legend(fontsize=7)
            ax.set_title("Table 4 layout: resolve rate (%)", fontsize=9)
        else:
            m = [r["step_reward"] for r in rows]
            lo = [v - (r.get("step_reward_ci95") or [v, v])[0] for v, r in zip(m, rows)]
            hi = [(r.get("step_reward_ci95") or [v, v])[1] - v for v, r in zip(m, rows)]
            ax.bar(x, m, yerr=[lo, hi], capsize=4, color="tab:green")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title("learning check: test step reward (95% CI)", fontsize=9)
        ax.set_xticks(list(x), [n.split(" [")[0] for n in names], rotation=30, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def register(app: typer.Typer) -> None:
    @app.command("report", help="The paper's tables (Table 1 math, Table 4 SWE) over run / eval directories: "
                                "Markdown + CSV + PNG.")
    def _cmd(
        run_dirs: list[Path] = typer.Argument(..., help="run or evaluation directories (report.json below them)"),
        out: Path = typer.Option(Path("report"), "--out", help="directory for report.md, table*.csv, report.png"),
        with_paper: bool = typer.Option(False, "--with-paper", help="add the paper's own rows as a reference"),
    ) -> None:
        missing = [str(d) for d in run_dirs if not d.is_dir()]
        if missing:
            fail(f"report: no such directory {missing[0]!r}")
        data = collect(run_dirs)
        if not (data["math"] or data["swe"] or data["learning_check"]):
            fail("report: none of the directories holds a math/SWE evaluation report.json or a test_eval.json")
        out.mkdir(parents=True, exist_ok=True)
        md = to_markdown(data, with_paper)
        (out / "report.md").write_text(md, encoding="utf-8")
        csvs = write_csv(data, out, with_paper)
        png = write_png(data, out / "report.png")
        (out / "report.json").write_text(json.dumps({"kind": "swe-srl report", **data}, indent=1, default=str))
        typer.echo(md)
        typer.echo(f"wrote {out / 'report.md'}, {', '.join(str(p) for p in csvs)}" + (f", {png}" if png else ""))
