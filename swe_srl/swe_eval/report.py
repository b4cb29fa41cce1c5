"""report.json, report.md (resolve rate, counts per status, per repo) and a bar chart PNG.

Two resolve rates: ``resolve_rate`` over ALL instances (an ``error`` counts as not resolved: the number to quote)
and ``resolve_rate_graded`` over the graded ones (``graded`` = total - errors: what the model did where the
infrastructure worked). Every ``error`` is listed with its reason (``errors``, and a table in report.md)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .grading import ERROR, RESOLVED, STATUSES, InstanceResult


def _rate(k: int, n: int) -> float:
    return round(100.0 * k / n, 2) if n else 0.0


def summarize(results: list[InstanceResult], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    n = len(results)
    counts = Counter(r.status for r in results)
    per_repo: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        per_repo[r.repo or "?"][r.status] += 1
    graded = n - counts[ERROR]
    return {
        **(meta or {}),
        "total": n,
        "graded": graded,
        "resolved": counts[RESOLVED],
        "resolve_rate": _rate(counts[RESOLVED], n),
        "resolve_rate_graded": _rate(counts[RESOLVED], graded),
        "counts": {s: counts[s] for s in STATUSES},
        "errors": [{"instance_id": r.instance_id, "reason": r.reason} for r in results if r.status == ERROR],
        "per_repo": {repo: {"total": sum(c.values()), **{s: c[s] for s in STATUSES},
                            "resolve_rate": _rate(c[RESOLVED], sum(c.values())),
                            "resolve_rate_graded": _rate(c[RESOLVED], sum(c.values()) - c[ERROR])}
                     for repo, c in sorted(per_repo.items())},
        "instances": [r.to_dict() for r in results],
    }


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# SWE evaluation: {summary.get('model', '')} ({summary.get('mode', '')}, {summary.get('split', '')})", "",
             f"Resolve rate: **{summary['resolve_rate']:.2f}%** ({summary['resolved']}/{summary['total']} instances); "
             f"over graded instances: {summary.get('resolve_rate_graded', summary['resolve_rate']):.2f}% "
             f"({summary['resolved']}/{summary.get('graded', summary['total'])}; errors are not graded)", "",
             "| status | count |", "|---|---|"]
    lines += [f"| {s} | {c} |" for s, c in summary["counts"].items()]
    lines += ["", "| repo | total | resolved | unresolved | empty_patch | error | resolve rate % | over graded % |",
              "|---|---|---|---|---|---|---|---|"]
    for repo, c in summary["per_repo"].items():
        lines.append(f"| {repo} | {c['total']} | {c['resolved']} | {c['unresolved']} | {c['empty_patch']} | "
                     f"{c['error']} | {c['resolve_rate']:.2f} | {c.get('resolve_rate_graded', 0.0):.2f} |")
    errors = summary.get("errors") or []
    if errors:
        lines += ["", "Errors (infrastructure, not the model; a rerun into the same --out grades them again):", "",
                  "| instance | reason |", "|---|---|"]
        lines += [f"| {e['instance_id']} | {str(e['reason'] or '').replace('|', '/')[:200]} |" for e in errors]
    return "\n".join(lines) + "\n"


def write_reports(results: list[InstanceResult], out_dir: str | Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results, meta)
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(to_markdown(summary))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        repos = list(summary["per_repo"])
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(repos) + 2), 3.5))
        bottom = [0] * len(repos)
        colors = {"resolved": "#2ca02c", "unresolved": "#d62728", "empty_patch": "#7f7f7f", "error": "#ff7f0e"}
        for s in STATUSES:
            vals = [summary["per_repo"][r][s] for r in repos]
            ax.bar(repos, vals, bottom=bottom, label=s, color=colors[s])
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_ylabel("instances")
        ax.set_title(f"resolve rate {summary['resolve_rate']:.1f}% ({summary['resolved']}/{summary['total']})")
        ax.legend(fontsize=8)
        plt.xticks(rotation=30, ha="right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "report.png", dpi=100)
        plt.close(fig)
    except Exception as e:  # the chart is a convenience
        summary["chart_error"] = str(e)
    return summary
