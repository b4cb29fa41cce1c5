"""`swe-srl eval`: SWE-bench resolve rates (oracle file edit / end-to-end / agent) or math benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import typer

from ..core.generation import Generator, Prompt, SamplingParams
from ..core.errors import SweSrlError
from ..core.io import OutputLocked, ResumeMismatch, interruptible
from ._common import fail


def _split_csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def register(app: typer.Typer) -> None:
    @app.command("eval", help="Evaluate a model: SWE-bench resolve rates (--task swe) or math benchmarks (--task math).")
    def _cmd(
        task: str = typer.Option("swe", "--task", help="swe | math"),
        model: Optional[str] = typer.Option(None, "--model", help="model id / path / alias (smollm2-135m)"),
        out: str = typer.Option("eval_out", "--out", help="output directory"),
        limit: Optional[int] = typer.Option(None, "--limit", help="first N instances / problems"),
        temperature: Optional[float] = typer.Option(None, "--temperature",
                                                    help="sampling temperature (swe: default 0 = greedy; math: 1.0)"),
        max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens"),
        batch_size: int = typer.Option(8, "--batch-size"),
        backend: str = typer.Option("auto", "--backend", help="auto | vllm | transformers"),
        # --- swe
        split: str = typer.Option("verified", "--split", help="verified | lite (HF hub) when no --dataset"),
        dataset: Optional[str] = typer.Option(None, "--dataset", help="local SWE-bench JSON/JSONL instead of the hub"),
        instances: Optional[str] = typer.Option(None, "--instances", help="comma-separated instance ids"),
        mode: str = typer.Option("oracle", "--mode", help="oracle | e2e | agent"),
        predictions_only: bool = typer.Option(False, "--predictions-only", help="generate predictions, run no tests"),
        predictions: Optional[str] = typer.Option(None, "--predictions", help="evaluate an existing predictions file"),
        gold: bool = typer.Option(False, "--gold", help="evaluate the gold patches (harness check)"),
        gold_edits: bool = typer.Option(False, "--gold-edits",
                                        help="evaluate the gold patches converted to the oracle prompt's SEARCH/REPLACE "
                                             "edits and applied by the model-output path (edit-path self-check)"),
        repos_dir: Optional[str] = typer.Option(None, "--repos-dir", "--repos",
                                                help="DIR/<instance_id> snapshots or DIR/<owner>__<name> git clones"),
        source: str = typer.Option("auto", "--source", help="file contents: auto | repos | image"),
        harness: str = typer.Option("auto", "--harness",
                                    help="auto | swebench (official run_evaluation, prebuilt images) | local "
                                         "(swebench's eval script + report in a DockerSandbox of the instance image)"),
        namespace: str = typer.Option("swebench", "--namespace",
                                      help="image namespace: swebench = prebuilt swebench/sweb.eval.* names (pulled "
                                           "when a registry answers, else the local sweb.eval.* name); 'none' = "
                                           "local names only, built, never pulled"),
        pull: bool = typer.Option(True, "--pull/--no-pull", help="pull a missing namespaced image"),
        build: bool = typer.Option(False, "--build", help="build a missing instance image (swe-srl images build)"),
        cache_level: str = typer.Option("instance", "--cache-level",
                                        help="swebench harness: none|base|env|instance; images above it that the run "
                                             "pulled or built are removed (instance keeps them)"),
        workers: int = typer.Option(1, "--workers"),
        timeout: int = typer.Option(1800, "--timeout", help="per-instance test timeout, seconds"),
        max_steps: int = typer.Option(30, "--max-steps", help="agent mode: turns"),
        top_n: int = typer.Option(3, "--top-n", help="e2e mode: files kept from localization"),
        max_prompt_chars: int = typer.Option(240_000, "--max-prompt-chars",
                                             help="oracle/e2e: longer prompts give an empty patch (0 = no limit)"),
        # --- math
        benchmarks: Optional[str] = typer.Option(None, "--benchmarks",
                                       help="math: comma-separated names (amc23, aime24, aime25, minerva_math, "
                                            "math500; the HF hub by the paper's names when reachable, else "
                                            "--data-dir / ../shared/data) or .jsonl paths; default amc23,aime24, "
                                            "with --predictions: those in the file"),
        k: int = typer.Option(32, "--k"),
        greedy: bool = typer.Option(True, "--greedy/--no-greedy"),
        avg: bool = typer.Option(True, "--avg/--no-avg"),
        data_dir: Optional[str] = typer.Option(None, "--data-dir"),
        dry_run: bool = typer.Option(False, "--dry-run", help="check the options, the dataset, the model path and "
                                     "--predictions (every row), then stop: no model, no Docker, nothing written"),
    ) -> None:
        if task == "math":
            if dry_run:
                _math_dry_run(model, predictions)
                return
            _math(model, benchmarks, k, 1.0 if temperature is None else temperature, greedy, avg, data_dir, out,
                  limit, backend, max_new_tokens, batch_size, predictions)
            return
        if task != "swe":
            fail(f"--task: expected swe or math, got {task!r}")
        from ..swe_eval import EvalConfig, run_eval
        from ..swe_eval.dataset import DatasetError

        from ..swe_eval.runner import EvalSetupError

        if not (model or predictions or gold or gold_edits):
            fail("--model, --predictions, --gold or --gold-edits is required")
        if mode not in ("oracle", "e2e", "agent"):
            fail(f"--mode: expected oracle, e2e or agent, got {mode!r}")
        cfg = EvalConfig(model=model, split=split, dataset=dataset, instances=_split_csv(instances), limit=limit,
                         mode=mode, out_dir=out, predictions=predictions, predictions_only=predictions_only,
                         gold=gold, gold_edits=gold_edits, repos_dir=repos_dir, source=source, harness=harness,
                         namespace=None if namespace.lower() in ("", "none", "null") else namespace, pull=pull,
                         build=build, cache_level=cache_level, workers=workers,
                         timeout=timeout, max_steps=max_steps, top_n=top_n,
                         temperature=0.0 if temperature is None else temperature,
                         max_new_tokens=max_new_tokens or 4096, batch_size=batch_size, backend=backend,
                         max_prompt_chars=max_prompt_chars or None)
        try:
            with interruptible("rerun the same command to resume (graded results are kept)"):   # exit 130/143
                summary = run_eval(cfg, log=lambda s: typer.echo(s, err=True), **({"dry_run": True} if dry_run else {}))
        except (DatasetError, ResumeMismatch, EvalSetupError, OutputLocked) as e:
            fail(str(e))
        if dry_run:
            typer.echo(json.dumps(summary, indent=2))
            return
        if "resolve_rate" in summary:
            from ..swe_eval.report import to_markdown

            typer.echo(to_markdown(summary))
            typer.echo(f"reports: {out}/report.json, {out}/report.md, {out}/report.png")
        else:
            typer.echo(f"predictions: {summary['predictions']} ({summary['non_empty']}/{summary['total']} non-empty, "
                       f"{summary.get('errors', 0)} errors)")


class _LazyGenerator:
    """A Generator from swe_srl.generation.make_generator that loads its model at the first generate() call (a
    resumed evaluation with nothing left to generate loads no model). The backend is chosen at once: "auto" is
    vLLM on a CUDA machine with vllm installed (no batch size: vLLM batches itself), else transformers."""

    def __init__(self, model: str, backend: str = "auto", batch_size: int = 8) -> None:
        from ..generation import vllm_usable

        if backend == "auto":
            backend = "vllm" if vllm_usable() else "transformers"
        self.name = backend
        self.model = model
        self._kw = {"batch_size": batch_size} if backend == "transformers" else {}
        self._gen: Generator | None = None

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        if self._gen is None:
            from ..generation import make_generator

            self._gen = make_generator(self.model, backend=self.name, **self._kw)
        return self._gen.generate(prompts, params)


def make_math_generator(model: str, backend: str = "auto", batch_size: int = 8) -> Generator:
    """The generator of `eval --task math` and of `collect --task math --rewrite`."""
    if backend not in ("auto", "vllm", "transformers"):
        fail(f"--backend: expected auto, vllm or transformers, got {backend!r}")
    return _LazyGenerator(model, backend, batch_size)


def _math_dry_run(model: str | None, predictions: str | None) -> None:
    """``eval --task math --dry-run``: the model path or the predictions file (every row parsed), nothing loaded."""
    from ..models import check_model

    if predictions:
        from ..core.io import iter_jsonl

        if not Path(predictions).is_file():
            fail(f"{predictions}: --predictions: no such file")
        n = sum(1 for _ in iter_jsonl(predictions, label="--predictions", error=EvalInputError))
        typer.echo(json.dumps({"dry_run": True, "predictions": predictions, "rows": n}, indent=2))
        return
    if not model:
        fail("--model is required (or --predictions FILE to grade existing completions)")
    check_model(model, "--model")
    typer.echo(json.dumps({"dry_run": True, "model": model}, indent=2))


class EvalInputError(SweSrlError, ValueError):
    """A bad input file of ``swe-srl eval`` (one line)."""


def _math(model, benchmarks, k, temperature, greedy, avg, data_dir, out, limit, backend, max_new_tokens,
          batch_size, predictions=None) -> None:
    from math_srl.evaluate import evaluate_math, grade_predictions

    names = _split_csv(benchmarks) or ([] if predictions else ["amc23", "aime24"])
    try:
        if predictions:              # grade an existing file (samples.jsonl of any run, or another tool's), no model
            result = grade_predictions(predictions, benchmarks=names or None,
                                       data_dir=data_dir, out_dir=out, model_name=model)
        else:
            if not model:
                fail("--model is required (or --predictions FILE to grade existing completions)")
            optional = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}  # else evaluate_math's default
            result = evaluate_math(make_math_generator(model, backend, batch_size), names, model_name=model, k=k,
                                   temperature=temperature, greedy=greedy, avg=avg, data_dir=data_dir, out_dir=out,
                                   limit=limit, batch_size=batch_size, **optional)
    except (ResumeMismatch, FileNotFoundError, ValueError, OutputLocked) as e:
        fail(str(e).splitlines()[0])
    report_md = Path(out) / "report.md"               # evaluate_math / grade_predictions write their tables there
    typer.echo(report_md.read_text(encoding="utf-8") if report_md.exists() else json.dumps(result, indent=2,
                                                                                          default=str))
