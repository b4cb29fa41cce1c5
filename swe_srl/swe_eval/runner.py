"""`swe-srl eval` for SWE: instances -> predictions (generated, or read from a file, or gold) -> tests -> reports."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.io import ResumeGuard
from ..generation import SamplingParams, make_generator
from .agent import run_agent
from .dataset import load_instances
from .grading import InstanceResult, SandboxFactory, docker_sandbox_factory, grade_in_sandbox, instance_image
from .harness import run_harness
from .predict import MODES, PredictionWriter, generate_single_turn, read_predictions
from .report import write_reports
from .sources import ImageSource, RepoDirSource

HARNESSES = ("auto", "swebench", "local")


@dataclass
class EvalConfig:
    model: str | None = None
    split: str = "verified"
    dataset: str | None = None
    instances: list[str] | None = None
    limit: int | None = None
    mode: str = "oracle"
    out_dir: str = "eval_out"
    predictions: str | None = None          # evaluate these instead of generating
    predictions_only: bool = False
    gold: bool = False
    repos_dir: str | None = None
    source: str = "auto"                    # auto | repos | image
    harness: str = "auto"                   # auto | swebench (official run_evaluation) | local (grade_in_sandbox)
    namespace: str | None = "swebench"
    workers: int = 1
    timeout: int = 1800
    max_steps: int = 30
    top_n: int = 3
    temperature: float = 0.0
    max_new_tokens: int = 4096
    batch_size: int = 8
    backend: str = "auto"
    max_prompt_chars: int | None = 240_000
    model_name: str | None = None
    generator: Any = None                   # injected Generator (tests / library use)
    sandbox_factory: SandboxFactory | None = None  # instance -> Sandbox for agent mode and the local grader
    #                                            (default: DockerSandbox of the instance image)
    extra: dict[str, Any] = field(default_factory=dict)


def _source(cfg: EvalConfig):
    if cfg.source == "repos" or (cfg.source == "auto" and cfg.repos_dir):
        if not cfg.repos_dir:
            raise ValueError("--source repos needs --repos-dir")
        return RepoDirSource(cfg.repos_dir, cache_dir=Path(cfg.out_dir) / "file_cache")

    return ImageSource(lambda inst: instance_image(inst, cfg.namespace), cache_dir=Path(cfg.out_dir) / "file_cache")


def _sandboxes(cfg: EvalConfig) -> SandboxFactory:
    return cfg.sandbox_factory or docker_sandbox_factory(cfg.namespace)


def generation_options(cfg: EvalConfig, name: str) -> dict[str, Any]:
    """What a resumed generation must share with the run it continues (``ResumeGuard``)."""
    opts: dict[str, Any] = {"model": name, "mode": cfg.mode, "temperature": cfg.temperature,
                            "max_new_tokens": cfg.max_new_tokens}
    if cfg.mode in ("oracle", "e2e"):
        opts["max_prompt_chars"] = cfg.max_prompt_chars
    if cfg.mode == "e2e":
        opts["top_n"] = cfg.top_n
    if cfg.mode == "agent":
        opts["max_steps"] = cfg.max_steps
    return opts


def generate(cfg: EvalConfig, instances: list[dict[str, Any]], log: Callable[[str], None]) -> Path:
    if cfg.mode not in MODES:
        raise ValueError(f"--mode: expected one of {MODES}, got {cfg.mode!r}")
    name = cfg.model_name or str(cfg.model or getattr(cfg.generator, "name", "model"))
    ResumeGuard(cfg.out_dir, "generation_options.json", what="--out").check(generation_options(cfg, name))
    with PredictionWriter(cfg.out_dir) as writer:
        if all(i["instance_id"] in writer.done for i in instances):
            log(f"all {len(instances)} predictions already in {writer.pred_path} (resume)")
            return writer.pred_path
        if writer.done:
            log(f"resume: {len(writer.done)} predictions already written")
        gen = cfg.generator if cfg.generator is not None else make_generator(cfg.model, backend=cfg.backend)
        _generate(cfg, instances, gen, name, writer, log)
    return writer.pred_path


def _generate(cfg: EvalConfig, instances: list[dict[str, Any]], gen: Any, name: str, writer: PredictionWriter,
              log: Callable[[str], None]) -> None:
    params = SamplingParams(n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
    if cfg.mode in ("oracle", "e2e"):
        generate_single_turn(instances, gen, _source(cfg), mode=cfg.mode, writer=writer, model_name=name,
                             params=params, batch_size=cfg.batch_size, top_n=cfg.top_n,
                             max_prompt_chars=cfg.max_prompt_chars, log=log)
    else:
        for inst in instances:
            if inst["instance_id"] in writer.done:
                continue
            r = run_agent(inst, gen, params, max_steps=cfg.max_steps, sandbox_factory=_sandboxes(cfg))
            patch = r.pop("model_patch")
            writer.write({"instance_id": inst["instance_id"], "model_name_or_path": name, "model_patch": patch},
                         {"mode": "agent", **r})
            log(f"{inst['instance_id']}: {'patch' if patch.strip() else 'empty patch'} ({r['reason']}, "
                f"{r['steps']} steps)")


def choose_harness(cfg: EvalConfig, instances: list[dict[str, Any]]) -> str:
    """``auto``: the sandbox grader when a sandbox factory is given or every instance carries its own
    ``eval_script`` (custom rows, the bundled tasks), else the official swebench harness."""
    if cfg.harness not in HARNESSES:
        raise ValueError(f"--harness: expected one of {'|'.join(HARNESSES)}, got {cfg.harness!r}")
    if cfg.harness != "auto":
        return cfg.harness
    return "local" if cfg.sandbox_factory is not None or all(i.get("eval_script") for i in instances) else "swebench"


def evaluate(cfg: EvalConfig, instances: list[dict[str, Any]], predictions: dict[str, dict[str, Any]],
             log: Callable[[str], None]) -> list[InstanceResult]:
    harness = choose_harness(cfg, instances)
    if harness == "local":
        sandboxes = _sandboxes(cfg)

        def one(inst: dict[str, Any]) -> InstanceResult:
            pred = predictions.get(inst["instance_id"]) or {}
            r = grade_in_sandbox(inst, pred.get("model_patch") or "", sandboxes, timeout=cfg.timeout,
                                 log_dir=Path(cfg.out_dir) / "logs", namespace=cfg.namespace,
                                 model_name=str(pred.get("model_name_or_path") or "model"))
            log(f"{inst['instance_id']}: {r.status}{'' if not r.reason else ' (' + r.reason + ')'}")
            return r

        with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as ex:
            return list(ex.map(one, instances))
    dataset_name = cfg.dataset or {"verified": "SWE-bench/SWE-bench_Verified",
                                   "lite": "SWE-bench/SWE-bench_Lite"}.get(cfg.split, cfg.split)
    return run_harness(instances, predictions, out_dir=cfg.out_dir, dataset_name=str(dataset_name),
                       max_workers=cfg.workers, timeout=cfg.timeout, namespace=cfg.namespace)


def run_eval(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    instances = load_instances(split=cfg.split, dataset=cfg.dataset, instance_ids=cfg.instances, limit=cfg.limit)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    if cfg.gold:
        preds = {i["instance_id"]: {"instance_id": i["instance_id"], "model_name_or_path": "gold",
                                    "model_patch": i["patch"]} for i in instances}
        model_name = "gold"
    elif cfg.predictions:
        preds = read_predictions(cfg.predictions)
        model_name = next(iter(preds.values()), {}).get("model_name_or_path", "predictions")
    else:
        path = generate(cfg, instances, log)
        preds = read_predictions(path)
        model_name = cfg.model_name or str(cfg.model)
    if cfg.predictions_only:
        n = sum(1 for i in instances if (preds.get(i["instance_id"]) or {}).get("model_patch", "").strip())
        return {"predictions": str(Path(cfg.out_dir) / "predictions.jsonl"), "total": len(instances),
                "non_empty": n}
    results = evaluate(cfg, instances, preds, log)
    meta = {"model": model_name, "mode": "gold" if cfg.gold else cfg.mode, "split": cfg.dataset or cfg.split,
            "harness": choose_harness(cfg, instances)}
    summary = write_reports(results, cfg.out_dir, meta)
    log(json.dumps({k: summary[k] for k in ("resolve_rate", "resolved", "total", "counts")}))
    return summary
