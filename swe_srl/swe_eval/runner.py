"""`swe-srl eval` for SWE: instances -> predictions (generated, or read from a file, or gold) -> tests -> reports.

Integrity: an infrastructure failure (no image, a build that failed, a sandbox that did not start, a timeout of the
harness, a crash) is status ``error`` with its reason, never ``empty_patch`` / ``unresolved``. Every graded result
is appended to ``OUT/results.jsonl`` with the sha256 of the patch it graded; a rerun into the same ``--out`` keeps
the real results (resolved / unresolved / empty_patch) of unchanged patches and grades again only the errors, the
new instances and the changed patches. Prediction-step errors (``prediction_errors.jsonl``) are generated again."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from environments.images import build as image_build
from environments.images import use_repo_requirements

from environments.sandbox import close_live_sandboxes

from ..core.io import AppendLog, OutputLock, ResumeGuard, reraise_interrupted, stopping, write_json_atomic
from ..generation import SamplingParams, make_generator
from ..models import check_model
from .agent import run_agent
from .dataset import load_instances, oracle_files
from .grading import ERROR, InstanceResult, SandboxFactory, docker_sandbox_factory, grade_in_sandbox
from .harness import CACHE_LEVELS, run_harness
from .images import ImageBuilder, ImageProvider
from .predict import MODES, PredictionWriter, generate_single_turn, read_prediction_errors, read_predictions
from .report import write_reports
from .selfcheck import ConversionError, edit_path_patch
from .sources import ImageSource, RepoDirSource
from ..core.errors import SweSrlError

HARNESSES = ("auto", "swebench", "local")
RESULTS_FILE = "results.jsonl"
STATUS_FILE = "status.json"        # {"status": "interrupted" | "complete", ...} of the last run into --out


class EvalSetupError(SweSrlError, ValueError):
    """A configuration that cannot run (one line, for the CLI)."""


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
    gold_edits: bool = False                # the gold patches through the edit path (selfcheck.edit_path_patch)
    repos_dir: str | None = None
    source: str = "auto"                    # auto | repos | image
    harness: str = "auto"                   # auto | swebench (official run_evaluation) | local (grade_in_sandbox)
    namespace: str | None = "swebench"     # None: local image names only (built, never pulled)
    pull: bool = True                       # pull a missing namespaced image when a registry answers
    build: bool = False                     # build a missing image (environments.images, `swe-srl images build`)
    cache_level: str = "instance"           # swebench harness: images above this level are removed after the run
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
    image_builder: ImageBuilder | None = None  # instance -> image name, for --build (default: environments.images)
    docker_client: Any = None               # injected docker client (tests)
    extra: dict[str, Any] = field(default_factory=dict)


def default_builder(cfg: EvalConfig) -> ImageBuilder:
    """``--build``: ``environments.images.build.build_images`` (what ``swe-srl images build`` runs) for one instance;
    a ``failed`` build record raises (the instance is then an ``error`` with the build's reason)."""

    def builder(instance: dict[str, Any]) -> str:
        rec = image_build.build_images([instance], repos_dir=cfg.repos_dir, client=image_provider_client(cfg),
                                       logs_dir=Path(cfg.out_dir) / "image_build_logs")[0]
        if rec.get("status") == "failed":
            raise RuntimeError(f"{rec.get('error')} (log: {rec.get('log')})")
        return rec["image"]

    return builder


def image_provider_client(cfg: EvalConfig) -> Any:
    if cfg.docker_client is None:
        import docker   # optional heavy dependency

        cfg.docker_client = docker.from_env(timeout=120)
    return cfg.docker_client


def make_image_provider(cfg: EvalConfig) -> ImageProvider:
    builder = (cfg.image_builder or default_builder(cfg)) if cfg.build else None
    return ImageProvider(cfg.namespace, pull=cfg.pull, builder=builder, client=cfg.docker_client)


def _source(cfg: EvalConfig, images: ImageProvider):
    if cfg.source not in ("auto", "repos", "image"):
        raise EvalSetupError(f"--source: expected auto, repos or image, got {cfg.source!r}")
    if cfg.source == "repos" or (cfg.source == "auto" and cfg.repos_dir):
        if not cfg.repos_dir:
            raise EvalSetupError("--source repos needs --repos-dir")
        return RepoDirSource(cfg.repos_dir, cache_dir=Path(cfg.out_dir) / "file_cache")
    return ImageSource(images.ensure, cache_dir=Path(cfg.out_dir) / "file_cache")


def _sandboxes(cfg: EvalConfig, images: ImageProvider) -> SandboxFactory:
    return cfg.sandbox_factory or docker_sandbox_factory(cfg.namespace, images)


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


def generate(cfg: EvalConfig, instances: list[dict[str, Any]], log: Callable[[str], None],
             images: ImageProvider | None = None) -> Path:
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
        _generate(cfg, instances, gen, name, writer, log, images or make_image_provider(cfg))
    return writer.pred_path


def _generate(cfg: EvalConfig, instances: list[dict[str, Any]], gen: Any, name: str, writer: PredictionWriter,
              log: Callable[[str], None], images: ImageProvider) -> None:
    params = SamplingParams(n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
    if cfg.mode in ("oracle", "e2e"):
        generate_single_turn(instances, gen, _source(cfg, images), mode=cfg.mode, writer=writer, model_name=name,
                             params=params, batch_size=cfg.batch_size, top_n=cfg.top_n,
                             max_prompt_chars=cfg.max_prompt_chars, log=log)
    else:
        for inst in instances:
            if inst["instance_id"] in writer.done:
                continue
            r = run_agent(inst, gen, params, max_steps=cfg.max_steps, sandbox_factory=_sandboxes(cfg, images))
            patch = r.pop("model_patch")
            if r["reason"].startswith("error"):      # the sandbox did not start or broke: infrastructure
                writer.write_error(inst["instance_id"], r["reason"], {"mode": "agent", **r})
                log(f"{inst['instance_id']}: error ({r['reason']})")
                continue
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


def patch_sha(patch: str) -> str:
    return hashlib.sha256((patch or "").encode("utf-8", errors="surrogateescape")).hexdigest()


def dataset_name(cfg: EvalConfig) -> str:
    """What the swebench harness loads: a local file as an ABSOLUTE path (the harness runs in ``OUT/harness``)."""
    if cfg.dataset:
        return str(Path(cfg.dataset).expanduser().resolve())
    return {"verified": "SWE-bench/SWE-bench_Verified", "lite": "SWE-bench/SWE-bench_Lite"}.get(cfg.split, cfg.split)


def evaluate(cfg: EvalConfig, instances: list[dict[str, Any]], predictions: dict[str, dict[str, Any]],
             log: Callable[[str], None], images: ImageProvider | None = None,
             prediction_errors: dict[str, str] | None = None,
             on_result: Callable[[InstanceResult], None] | None = None) -> list[InstanceResult]:
    """Grade every instance; one with no prediction is ``error`` (its prediction-step failure, or
    ``no_prediction``), never graded as an empty patch. ``on_result`` gets each graded result as it comes (run_eval
    stores it at once, so an interrupted run keeps what was graded); on SIGINT/SIGTERM the open sandboxes are removed
    and the grading threads stop before ``Interrupted`` propagates."""
    errors = prediction_errors or {}
    results: dict[str, InstanceResult] = {}
    todo: list[dict[str, Any]] = []
    for inst in instances:
        iid = inst["instance_id"]
        if iid in predictions:
            todo.append(inst)
            continue
        why = errors.get(iid)
        results[iid] = InstanceResult(iid, ERROR, f"prediction: {why}" if why else "no_prediction",
                                      repo=inst.get("repo", ""))
        log(f"{iid}: error ({results[iid].reason})")
    harness = choose_harness(cfg, instances)
    if harness == "local" and todo:
        sandboxes = _sandboxes(cfg, images or make_image_provider(cfg))

        def one(inst: dict[str, Any]) -> InstanceResult:
            pred = predictions[inst["instance_id"]]
            r = grade_in_sandbox(inst, pred.get("model_patch") or "", sandboxes, timeout=cfg.timeout,
                                 log_dir=Path(cfg.out_dir) / "logs", namespace=cfg.namespace,
                                 model_name=str(pred.get("model_name_or_path") or "model"))
            log(f"{inst['instance_id']}: {r.status}{'' if not r.reason else ' (' + r.reason + ')'}")
            return r

        ex = ThreadPoolExecutor(max_workers=max(1, cfg.workers))
        try:
            for r in ex.map(one, todo):
                results[r.instance_id] = r
                if on_result is not None:
                    on_result(r)
        except KeyboardInterrupt:     # SIGINT/SIGTERM (core.io.Interrupted): no new sandbox; the open ones go now
            with stopping():
                close_live_sandboxes()
                ex.shutdown(wait=True, cancel_futures=True)
                close_live_sandboxes()
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    elif todo:
        for r in run_harness(todo, predictions, out_dir=cfg.out_dir, dataset_name=dataset_name(cfg),
                             max_workers=cfg.workers, timeout=cfg.timeout, namespace=cfg.namespace,
                             cache_level=cfg.cache_level):
            results[r.instance_id] = r
            log(f"{r.instance_id}: {r.status}{'' if not r.reason else ' (' + r.reason + ')'}")
            if on_result is not None:
                on_result(r)
    return [results[i["instance_id"]] for i in instances]


class ResultStore:
    """``OUT/results.jsonl``: every graded result with the sha256 of its patch. ``reusable(iid, sha)`` is the last
    result of that instance for that same patch unless it is an ``error`` (errors are always graded again)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.log = AppendLog(Path(out_dir) / RESULTS_FILE)
        self.last: dict[str, dict[str, Any]] = {}
        for r in self.log.records:
            if "instance_id" in r:
                self.last[r["instance_id"]] = r

    def reusable(self, iid: str, sha: str) -> InstanceResult | None:
        r = self.last.get(iid)
        if r is None or r.get("patch_sha256") != sha or r.get("status") == ERROR:
            return None
        fields = {k: r[k] for k in ("instance_id", "status", "reason", "tests", "seconds", "repo") if k in r}
        return InstanceResult(**fields)

    def add(self, result: InstanceResult, sha: str | None) -> None:
        rec = {**result.to_dict(), "patch_sha256": sha}
        self.log.append(rec)
        self.last[result.instance_id] = rec

    def close(self) -> None:
        self.log.close()


def gold_edit_predictions(cfg: EvalConfig, instances: list[dict[str, Any]], images: ImageProvider,
                          log: Callable[[str], None]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``--gold-edits``: each gold patch as the oracle answer, through the model-output path, on the oracle files
    read from the file source (an unreadable source is an ``error``, as for a model)."""
    source = _source(cfg, images)
    preds: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for inst in instances:
        iid = inst["instance_id"]
        try:
            files = source.read(inst, oracle_files(inst))
        except Exception as e:
            errors[iid] = f"source_error: {type(e).__name__}: {str(e)[:300]}"
            log(f"{iid}: error ({errors[iid]})")
            continue
        try:
            out = edit_path_patch(inst, files)
        except ConversionError as e:
            out = {"model_patch": "", "reason": f"conversion: {e}"}
        preds[iid] = {"instance_id": iid, "model_name_or_path": "gold-edits", "model_patch": out["model_patch"]}
        if out["reason"]:
            log(f"{iid}: edit path gave no patch ({out['reason']})")
    return preds, errors


def validate(cfg: EvalConfig) -> None:
    """Option checks that need no data, no model and no Docker (also ``swe-srl eval --dry-run``)."""
    if cfg.cache_level not in CACHE_LEVELS:
        raise EvalSetupError(f"--cache-level: expected one of {'|'.join(CACHE_LEVELS)}, got {cfg.cache_level!r}")
    if cfg.mode not in MODES:
        raise EvalSetupError(f"--mode: expected one of {'|'.join(MODES)}, got {cfg.mode!r}")
    if cfg.harness not in HARNESSES:
        raise EvalSetupError(f"--harness: expected one of {'|'.join(HARNESSES)}, got {cfg.harness!r}")
    if cfg.source not in ("auto", "repos", "image"):
        raise EvalSetupError(f"--source: expected auto, repos or image, got {cfg.source!r}")


def check_generation_model(cfg: EvalConfig) -> None:
    """A model that will be loaded must exist (a missing path: one line, before anything loads)."""
    if not (cfg.gold or cfg.gold_edits or cfg.predictions) and cfg.generator is None and cfg.model:
        check_model(str(cfg.model), "--model")


def match_predictions(preds: dict[str, dict[str, Any]], instances: list[dict[str, Any]], source: str,
                      log: Callable[[str], None]) -> None:
    """``--predictions`` against the instances: none matching is an error (nothing would be graded: the wrong
    --dataset/--split or the wrong file), some not matching a warning."""
    ids = {i["instance_id"] for i in instances}
    matched = [k for k in preds if k in ids]
    if not matched:
        first = next(iter(preds), None)
        raise EvalSetupError(file=source, field="--predictions",
                             reason=(f"none of its {len(preds)} predictions matches one of the {len(instances)} "
                                     f"instances (first: {first!r}); wrong --dataset/--split/--instances?")
                             if preds else "no predictions (empty file)")
    extra = len(preds) - len(matched)
    missing = len(ids) - len(matched)
    if extra or missing:
        log(f"warning: --predictions {source}: {len(matched)} of {len(instances)} instances have a prediction"
            + (f"; {missing} without one are graded error (no_prediction)" if missing else "")
            + (f"; {extra} predictions match no instance and are ignored" if extra else ""))


def run_eval(cfg: EvalConfig, log: Callable[[str], None] = print, *, dry_run: bool = False) -> dict[str, Any]:
    """Generate (or read) predictions and grade them. Options, the dataset (every row), the model path and a
    ``--predictions`` file (every row, and that it matches the instances) are checked before the output lock, a
    model or Docker; ``dry_run`` stops there and returns what would run."""
    validate(cfg)
    instances = load_instances(split=cfg.split, dataset=cfg.dataset, instance_ids=cfg.instances, limit=cfg.limit)
    check_generation_model(cfg)
    given: dict[str, dict[str, Any]] | None = None
    if cfg.predictions and not (cfg.gold or cfg.gold_edits):
        given = read_predictions(cfg.predictions)
        match_predictions(given, instances, cfg.predictions, log)
    if dry_run:
        return {"dry_run": True, "instances": len(instances), "mode": "gold" if cfg.gold else "gold-edits"
                if cfg.gold_edits else cfg.mode, "predictions": cfg.predictions, "out": cfg.out_dir,
                "harness": choose_harness(cfg, instances) if instances else cfg.harness,
                "matched_predictions": None if given is None else sum(1 for i in instances
                                                                      if i["instance_id"] in given)}
    if cfg.repos_dir:   # swebench's specs read requirement files from these repos, not from GitHub
        use_repo_requirements(cfg.repos_dir)
    with OutputLock(cfg.out_dir):   # one writer per output directory (swe_srl.core.io.OutputLock)
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        images = make_image_provider(cfg)
        pred_errors: dict[str, str] = {}
        if cfg.gold:
            preds = {i["instance_id"]: {"instance_id": i["instance_id"], "model_name_or_path": "gold",
                                        "model_patch": i["patch"]} for i in instances}
            model_name = "gold"
        elif cfg.gold_edits:
            preds, pred_errors = gold_edit_predictions(cfg, instances, images, log)
            model_name = "gold-edits"
        elif given is not None:
            preds = given
            model_name = next(iter(preds.values()), {}).get("model_name_or_path", "predictions")
        else:
            path = generate(cfg, instances, log, images)
            preds = read_predictions(path)
            pred_errors = {k: v for k, v in read_prediction_errors(cfg.out_dir).items() if k not in preds}
            model_name = cfg.model_name or str(cfg.model)
        if cfg.predictions_only:
            n = sum(1 for i in instances if (preds.get(i["instance_id"]) or {}).get("model_patch", "").strip())
            errs = {i["instance_id"]: pred_errors[i["instance_id"]] for i in instances if i["instance_id"] in pred_errors}
            return {"predictions": str(Path(cfg.out_dir) / "predictions.jsonl"), "total": len(instances),
                    "non_empty": n, "errors": len(errs), "prediction_errors": errs}
        store = ResultStore(cfg.out_dir)
        try:
            kept: dict[str, InstanceResult] = {}
            for inst in instances:
                pred = preds.get(inst["instance_id"])
                if pred is not None:
                    r = store.reusable(inst["instance_id"], patch_sha(pred.get("model_patch") or ""))
                    if r is not None:
                        kept[r.instance_id] = r
            if kept:
                log(f"resume: {len(kept)} results kept from {store.log.path} (errors and changed patches are graded "
                    "again)")
            todo = [i for i in instances if i["instance_id"] not in kept]
            added: set[str] = set()

            def keep(r: InstanceResult) -> None:     # stored as it comes: an interrupted run keeps what it graded
                pred = preds.get(r.instance_id)
                store.add(r, patch_sha(pred.get("model_patch") or "") if pred is not None else None)
                added.add(r.instance_id)

            try:
                fresh = evaluate(cfg, todo, preds, log, images, pred_errors, on_result=keep) if todo else []
            except KeyboardInterrupt as e:
                write_json_atomic(Path(cfg.out_dir) / STATUS_FILE, {"status": "interrupted", "graded_this_run":
                                                                    len(added), "results": RESULTS_FILE})
                detail = (f"{len(added)} results graded by this run are kept in {store.log.path} (status.json: "
                          f"interrupted)")
                reraise_interrupted(e, detail)
            for r in fresh:
                if r.instance_id not in added:
                    keep(r)
        finally:
            store.close()
        by_id = {**kept, **{r.instance_id: r for r in fresh}}
        results = [by_id[i["instance_id"]] for i in instances]
        meta = {"model": model_name, "mode": "gold" if cfg.gold else "gold-edits" if cfg.gold_edits else cfg.mode, "split": cfg.dataset or cfg.split,
                "harness": choose_harness(cfg, instances), "source": cfg.source if not cfg.gold and not cfg.predictions
                and cfg.mode != "agent" else None, "namespace": cfg.namespace, "kept_from_previous_run": len(kept),
                "images_pulled": list(images.pulled), "images_built": list(images.built)}
        summary = write_reports(results, cfg.out_dir, meta)
        write_json_atomic(Path(cfg.out_dir) / STATUS_FILE, {"status": "complete", "results": RESULTS_FILE})
        log(json.dumps({k: summary[k] for k in ("resolve_rate", "resolve_rate_graded", "resolved", "graded", "total",
                                                "counts")}))
        return summary
