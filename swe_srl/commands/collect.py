"""`swe-srl collect`: expert trajectories (SWE) or solutions (math) -> steps.jsonl + manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..models import resolve_model
from ..core.io import OutputLocked, interruptible
from ..core.errors import NothingUsable
from ._common import fail, report_batch


def _history(value: str) -> int | None:
    if value.lower() in ("all", "none", ""):
        return None
    try:
        k = int(value)
    except ValueError:
        fail(f"--history: expected 'all' or an integer >= 0, got {value!r}")
    if k < 0:
        fail(f"--history: expected 'all' or an integer >= 0, got {value!r}")
    return k


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a model name/alias/path (for --max-prompt-tokens / --obs-max-tokens)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except Exception as e:  # noqa: BLE001 - any failure to load is a usage error of --tokenizer
        fail(f"--tokenizer {name}: cannot load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def print_manifest_summary(manifest: dict[str, Any], out_dir: str | Path) -> None:
    console = Console()
    if manifest.get("task") == "math" or "trajectories" not in manifest:
        console.print(f"[bold]{out_dir}[/bold]")
        for k, v in manifest.items():
            if isinstance(v, (int, float, str)) or v is None:
                console.print(f"  {k}: {v}")
            elif isinstance(v, dict) and len(str(v)) < 300:
                console.print(f"  {k}: {v}")
        return
    t = manifest["trajectories"]
    table = Table(title=f"{out_dir}: trajectories per format")
    for col in ("format", "read", "used", "skipped", "steps", "skip reasons"):
        table.add_column(col, justify="left" if col in ("format", "skip reasons") else "right")
    for fmt, pf in sorted(t["per_format"].items()):
        table.add_row(fmt, str(pf["read"]), str(pf["used"]), str(pf["skipped"]), str(pf["steps"]),
                      ", ".join(f"{k}={v}" for k, v in pf["skip_reasons"].items()))
    table.add_row("[bold]total", str(t["read"]), str(t["used"]), str(t["skipped"]),
                  str(manifest["steps"]["total"]), "")
    console.print(table)
    st = manifest["steps"]
    console.print(f"steps: {st['total']}  dropped over token budget: {st['dropped_over_budget']}")
    console.print("per tool: " + ", ".join(f"{k}={v}" for k, v in st["per_tool"].items()))
    for name, s in manifest.get("lengths", {}).items():
        if s.get("count"):
            console.print(f"{name}: mean {s['mean']}  p50 {s['p50']}  p90 {s['p90']}  max {s['max']}")
    if manifest.get("replay"):
        print_replay_summary(console, manifest)
    non = manifest["steps"].get("non_actions_not_steps")
    if non:
        console.print("non-actions (not steps): " + ", ".join(f"{k}={v}" for k, v in non.items()))
    if manifest.get("filters"):
        console.print("filtered: " + ", ".join(f"{k}={v}" for k, v in manifest["filters"].items()))
    hz = manifest.get("hazards") or {}
    if hz.get("eval_contaminated") or (hz.get("future_leak") or {}).get("trajectories_with_leak"):
        console.print(f"hazards: {hz}")
    for fmt, s in (manifest.get("prompt_tokens_per_format") or {}).items():
        console.print(f"prompt tokens {fmt} ({s['method']}): p50 {s['p50']}  p90 {s['p90']}  max {s['max']}  "
                      f"over 32k {s['over_32k']}")
    for w in manifest.get("warnings") or []:
        console.print(f"[bold red]WARNING:[/bold red] {w}", markup=True)
    run = manifest.get("this_run", {})
    if run:
        console.print(f"this run: {run}")


def print_replay_summary(console: Console, manifest: dict[str, Any]) -> None:
    """Replay: failures by stage, per-step fidelity by command kind, final-patch check (as submitted / whole tree)."""
    fids = [r.get("mean_fidelity") for r in manifest["replay"].values() if r.get("mean_fidelity") is not None]
    summary = manifest.get("replay_summary") or {}
    allf = summary.get("all") or {}
    line = f"replay: {len(manifest['replay'])} trajectories"
    if fids:
        line += f", mean fidelity {sum(fids) / len(fids):.3f}"
    failed = allf.get("failed") or {}
    if failed:
        line += f", [bold red]{sum(failed.values())} failed[/bold red] (" + ", ".join(
            f"{k}={v}" for k, v in failed.items()) + ") and skipped"
    console.print(line)
    for unit, r in manifest["replay"].items():
        if r.get("error"):
            console.print(f"  replay failed ({r.get('stage') or 'run'}): {unit}: {str(r['error'])[:200]}",
                          markup=False, highlight=False)
    hist = allf.get("histogram") or {}
    if hist.get("total") and sum(hist["total"].values()):
        t = Table(title="replay fidelity by command kind (steps)")
        for col in ("kind", "exact", "near", "diverged", "skipped"):
            t.add_column(col, justify="left" if col == "kind" else "right")
        for kind, row in hist.items():
            t.add_row(f"[bold]{kind}" if kind == "total" else kind,
                      *(str(row.get(k, 0)) for k in ("exact", "near", "diverged", "skipped")))
        console.print(t)
        sh = allf.get("shares") or {}
        console.print("compared steps: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sh.items()))
    p = allf.get("patch") or {}
    if p.get("with_recorded_patch"):
        n = p["with_recorded_patch"]
        console.print(f"final patch (of {n} with a recorded one): as submitted {p['match_as_submitted']}, "
                      f"submission text {p['submission_match']}, whole tree {p['whole_tree_match']}; "
                      f"{p['with_tree_extra_files']} leave scratch files outside the submission "
                      f"({p['tree_extra_files']} files)")


def register(app: typer.Typer) -> None:
    @app.command("collect", help="Build SRL step data from expert trajectories (SWE) or solutions (math).")
    def _cmd(
        out: Path = typer.Option(..., "--out", help="Output directory (steps.jsonl, manifest.json, stats.png)."),
        task: str = typer.Option("swe", "--task", help="swe | math"),
        trajectories: Optional[list[Path]] = typer.Option(None, "--trajectories",
                                                          help="SWE: trajectory files or directories (repeatable): "
                                                          "native agent logs and dataset files (.parquet, .arrow, "
                                                          ".jsonl, .json arrays)."),
        dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="SWE: a Hugging Face dataset "
                                                    "HF_ID[:config][@split], streamed (repeatable)."),
        fmt: str = typer.Option("auto", "--format", help="SWE: auto | sweagent | sweagent_0x | sweagent_1x | "
                                "minisweagent | openhands_completions | openhands_output | swesmith_sft | chat_tools | "
                                "openhands_text | r2egym | swesmith_ticks | sweagent_text | moatless"),
        success_field: str = typer.Option("auto", "--success-field", help="SWE datasets: the success field: auto "
                                          "(the dataset's own), COLUMN, !COLUMN (inverted), all, none."),
        model_filter: Optional[str] = typer.Option(None, "--model-filter", help="SWE: keep rows whose model "
                                                   "(model / model_name / run_id) matches this regex."),
        ids_file: Optional[Path] = typer.Option(None, "--ids-file", help="SWE: keep only these instance ids "
                                                "(one per line or a JSON list)."),
        exclude_eval: Optional[str] = typer.Option(None, "--exclude-eval", help="SWE: drop trajectories of "
                                                   "evaluation instances: verified, lite and/or FILEs, comma-separated."),
        future_leak: str = typer.Option("drop-trajectory", "--future-leak", help="SWE: steps reading git history "
                                        "after the base commit: drop-trajectory | drop-steps | keep (always counted)."),
        replay: str = typer.Option("none", "--replay", help="SWE: none | docker | local (regenerate observations)."),
        sandbox_map: Optional[Path] = typer.Option(None, "--sandbox-map",
                                                   help="SWE replay: JSON object instance_id -> \"IMAGE\" or "
                                                   "{\"image\": IMAGE, \"repo_path\": DIR, \"commit\": SHA} "
                                                   "(docs/collect.md)."),
        on_divergence: str = typer.Option("keep", "--on-divergence", help="SWE replay, whole trajectories with a "
                                          "diverged step: keep | drop | stop (keep steps up to the first one)."),
        on_diverged: str = typer.Option("keep-recorded", "--on-diverged", help="SWE replay, the observation of a "
                                        "diverged step in training rows: keep-recorded (default: what the expert "
                                        "saw) | use-replayed | drop (rows whose prompt holds one)."),
        sandbox_network: bool = typer.Option(False, "--sandbox-network/--no-sandbox-network",
                                             help="SWE replay (docker): let containers reach the package index "
                                             "only (default: no network at all)."),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="SWE replay: per-command timeout in "
                                                "seconds (default: the trajectory's recorded one, else 120)."),
        workers: int = typer.Option(1, "--workers", help="Parallel workers: parse+build processes, and concurrent sandbox replays with --replay."),
        history: str = typer.Option("all", "--history", help="SWE: previous rounds in the prompt: all or K."),
        obs_max_chars: Optional[int] = typer.Option(None, "--obs-max-chars", help="SWE: truncate observations "
                                                    "(head + tail) to N chars."),
        obs_max_tokens: Optional[int] = typer.Option(None, "--obs-max-tokens", help="SWE: truncate observations "
                                                     "to N tokens (needs --tokenizer)."),
        max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens",
                                                        help="SWE: drop (not truncate) steps whose prompt is longer."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Model/tokenizer for token budgets."),
        only_resolved: Optional[bool] = typer.Option(None, "--only-resolved/--no-only-resolved",
                                                     help="SWE: keep resolved trajectories only (default: on for "
                                                     "dataset inputs, off for native agent logs)."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Process at most N trajectories / problems."),
        no_resume: bool = typer.Option(False, "--no-resume", help="Start over instead of resuming into --out."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        input_file: Optional[Path] = typer.Option(None, "--input", help="math: solutions file."),
        solution_field: Optional[str] = typer.Option(None, "--solution-field", help="math: solution field."),
        question_field: Optional[str] = typer.Option(None, "--question-field", help="math: question field."),
        title_hint: bool = typer.Option(False, "--title-hint", help="math: use title hints."),
        include_first_step: bool = typer.Option(False, "--include-first-step", help="math: include step 0."),
        val_size: Optional[int] = typer.Option(None, "--val-size", help="validation split: math problems (default "
                                               "60); swe trajectories, by instance (default 30 if >= 300, else 10%)."),
        seed: int = typer.Option(0, "--seed", help="split seed."),
        test_instances: Optional[Path] = typer.Option(None, "--test-instances", help="swe: drop trajectories of "
                                                      "these instance ids (file, one per line)."),
        structured_only: bool = typer.Option(False, "--structured-only",
                                             help="math: drop solutions without numbered steps."),
        rewrite: str = typer.Option("none", "--rewrite", help="math: none | unstructured | all — restate solutions "
                                    "in the numbered-step format with --rewrite-model first."),
        rewrite_model: Optional[str] = typer.Option(None, "--rewrite-model", help="math: model for --rewrite."),
        backend: str = typer.Option("auto", "--backend", help="math --rewrite: auto | vllm | transformers"),
        batch_size: int = typer.Option(8, "--batch-size", help="math --rewrite: generation batch size."),
    ) -> None:
        if task == "math":
            if input_file is None:
                fail("--input: required with --task math")
            from math_srl.collect import collect_math

            from .evaluate import make_math_generator

            if rewrite not in ("none", "unstructured", "all"):
                fail(f"--rewrite: expected none, unstructured or all, got {rewrite!r}")
            if rewrite != "none" and not rewrite_model:
                fail("--rewrite-model: required with --rewrite unstructured|all")
            gen = make_math_generator(rewrite_model, backend, batch_size) if rewrite != "none" else None
            try:
                with interruptible():     # SIGINT/SIGTERM: one line, manifest "interrupted", exit 130/143
                    manifest = collect_math(str(input_file), str(out), solution_field=solution_field,
                                            question_field=question_field, title_hint=title_hint,
                                            include_first_step=include_first_step,
                                            val_size=60 if val_size is None else val_size, seed=seed,
                                            resume=not no_resume, limit=limit, structured_only=structured_only,
                                            rewrite=rewrite, rewrite_generator=gen)
            except NothingUsable:
                raise                     # the CLI prints it, exit code 3
            except (ValueError, OSError, OutputLocked) as e:
                fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
            print_manifest_summary(manifest, out)
            report_batch(manifest, out, int((manifest.get("counts") or {}).get("steps") or 0))   # errors; rc 3
            return
        if task != "swe":
            fail(f"--task: expected 'swe' or 'math', got {task!r}")
        if not trajectories and not dataset:
            fail("--trajectories: at least one file or directory (or --dataset) is required with --task swe")
        from environments.collect import CollectError, CollectOptions, collect_swe
        from environments.trajectories import DatasetUnavailable, hub_input

        inputs = [str(p) for p in trajectories or []]
        for spec in dataset or []:
            try:
                inputs.append(hub_input(spec))
            except DatasetUnavailable as e:
                fail(str(e))

        opts = CollectOptions(fmt=fmt, history_k=_history(history), obs_max_chars=obs_max_chars,
                              obs_max_tokens=obs_max_tokens, max_prompt_tokens=max_prompt_tokens,
                              tokenizer=tokenizer, only_resolved=only_resolved, replay=replay,
                              sandbox_map=str(sandbox_map) if sandbox_map else None, on_divergence=on_divergence,
                              on_diverged=on_diverged, sandbox_network=sandbox_network, replay_timeout=timeout,
                              workers=workers, limit=limit, success_field=success_field, model_filter=model_filter,
                              ids_file=str(ids_file) if ids_file else None, exclude_eval=exclude_eval,
                              future_leak=future_leak)
        try:
            opts.validate()
        except CollectError as e:
            fail(str(e))
        tok = (load_tokenizer(tokenizer) if tokenizer and (max_prompt_tokens is not None or obs_max_tokens is not None)
               else None)
        try:
            from environments.splits import SplitError, SplitOptions

            with interruptible():     # SIGINT/SIGTERM: one line, manifest "interrupted", exit 130/143
                manifest = collect_swe(inputs, out, opts, resume=not no_resume, progress=not no_progress,
                                       tokenizer=tok, split=SplitOptions(val_size, seed, str(test_instances)
                                                                         if test_instances else None))
        except (CollectError, SplitError) as e:
            fail(str(e))
        except RuntimeError as e:  # StepStore: a directory modified by hand
            fail(str(e).splitlines()[0])
        print_manifest_summary(manifest, out)
        report_batch(manifest, out, int((manifest.get("steps") or {}).get("total") or 0))   # errors, dups; rc 3
