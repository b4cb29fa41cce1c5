"""`swe-srl quickstart`: the whole SRL idea on a laptop, on the bundled sample tasks.

  1. collect   the bundled expert trajectories -> step data, replaying every action in a sandbox
               (Docker when an engine answers and the base image exists, else the local sandbox)
  2. warm-up   a short SFT on prompt -> <think>brief</think> + expert action: SmolLM2-135M never writes the
               <think> format on its own, so without it every SRL reward is -1 and every group is flat
  3. srl       a few GRPO steps with the step reward and true dynamic sampling
  4. eval      step reward on held-out steps (base / warm-up / SRL), and the oracle file-edit resolve rate on the
               sample tasks (base vs SRL) with the real tests of each task
  5. report    report.md with the reward curve, the dataset stats and the tables

Every stage is resumable: a rerun into the same --out skips what is finished (state.json).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from environments.collect import CollectOptions, collect_swe
from tqdm.auto import tqdm

from .core import read_steps, score_batch, write_json_atomic, write_steps
from .core.io import OutputLock
from .generation import SamplingParams, TransformersGenerator
from .sample_tasks import (base_commit, build_instance_image, eval_instances, load_swe_tasks, materialize_repo,
                           trajectory_path)
from .swe_eval.grading import docker_sandbox_factory, local_sandbox_factory
from .swe_eval.runner import EvalConfig, run_eval
from .train.config import load_settings
from .train.runner import run as run_training

HELDOUT_TASK = "sample__textkit-4"
HISTORY_K = 2            # previous action/observation rounds in a step prompt
OBS_MAX_CHARS = 1000     # observation characters kept per round (head + tail)
#: stages that load a model run in a child process each: its memory (model, optimizer, allocator arenas) goes back to
#: the OS when the stage ends, so the peak RSS is the largest stage's, not the sum of what earlier stages left behind
CHILD_STAGES = ("warmup", "srl", "step_reward_eval", "oracle_eval")


@dataclass
class QuickstartOptions:
    out: str = "runs/quickstart"
    model: str = "smollm2-135m"
    steps: int = 3                  # SRL optimizer steps
    warmup_steps: int = 3           # SFT format warm-up steps (4 examples each)
    tasks: int | None = None        # use only the first N sample tasks (CI: 1)
    sandbox: str = "auto"           # auto | docker | local
    learning_rate: float = 1e-5     # SRL lr (the paper's 5e-7 is for 7B models and 100s of steps)
    num_generations: int = 4
    batch_prompts: int = 1          # step instances (groups of G) per SRL step
    max_completion_length: int = 96
    eval_samples: int = 2           # sampled completions per held-out step
    eval_max_new_tokens: int = 256  # oracle repair generation budget
    seed: int = 0


class Quickstart:
    def __init__(self, opts: QuickstartOptions, log: Callable[[str], None] = print) -> None:
        self.o = opts
        self.out = Path(opts.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.child_stages = True
        self.state_path = self.out / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        prev = self.state.get("options")
        cur = asdict(opts)
        if prev and {k: v for k, v in prev.items() if k != "out"} != {k: v for k, v in cur.items() if k != "out"}:
            raise ValueError(f"--out {self.out}: holds a quickstart run with other options; use a fresh --out")
        self.state["options"] = cur         # written by run(), under the --out lock

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        done = self.state.setdefault("stages", {})
        if name in done:
            self.log(f"[quickstart] {name}: already done ({done[name]['seconds']} s), skipping")
            return done[name].get("result")
        self.log(f"[quickstart] {name} ...")
        t0 = time.time()
        result = _in_child(self, name) if name in CHILD_STAGES and self.child_stages else fn()
        done[name] = {"seconds": round(time.time() - t0, 1), "result": result}
        self._save()
        self.log(f"[quickstart] {name}: done in {done[name]['seconds']} s")
        return result

    # -- tasks and sandboxes -------------------------------------------------------------------------------
    def tasks(self) -> list[dict[str, Any]]:
        tasks = load_swe_tasks()
        if self.o.tasks:
            # keep the held-out task last so that a reduced run still trains on something else when it can
            tasks = sorted(tasks, key=lambda t: t["instance_id"] == HELDOUT_TASK)[: self.o.tasks]
        return tasks

    def backend(self) -> str:
        if "sandbox" in self.state:
            return self.state["sandbox"]
        choice = self.o.sandbox
        if choice == "auto":
            choice = "docker" if _docker_ready() else "local"
        self.state["sandbox"] = choice
        self._save()
        why = "a Docker engine answers and swe-srl/sandbox-base:latest exists" if choice == "docker" else (
            "no Docker engine or no base image (bash docker/build_base_image.sh); the local sandbox is NOT isolated")
        self.log(f"[quickstart] sandbox: {choice} ({why})")
        return choice

    # -- stages ------------------------------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        smap, paths = {}, []
        for t in self.tasks():
            iid = t["instance_id"]
            repo = self.out / "repos" / iid
            if not (repo / ".git").exists():
                shutil.rmtree(repo, ignore_errors=True)
                materialize_repo(iid, repo)
            smap[iid] = {"repo_path": str(repo), "commit": base_commit(repo)}
            paths.append(str(trajectory_path(iid)))
        map_path = self.out / "sandbox_map.json"
        write_json_atomic(map_path, smap)
        # short prompts (issue #17.4): the last HISTORY_K rounds and observations cut to OBS_MAX_CHARS (head + tail,
        # with a marker); the system prompt documents only the tools of each trajectory's format
        opts = CollectOptions(replay=self.backend(), sandbox_map=str(map_path), workers=2, history_k=HISTORY_K,
                              obs_max_chars=OBS_MAX_CHARS)
        manifest = collect_swe(paths, self.out / "data" / "swe_steps", opts)
        steps = read_steps(self.out / "data" / "swe_steps" / "steps.jsonl")
        held = [s for s in steps if s.instance_id == HELDOUT_TASK]
        train = [s for s in steps if s.instance_id != HELDOUT_TASK] or held
        if not held:  # reduced run with one task: evaluate on its own steps (in-sample), said in the report
            held = train
        write_steps(self.out / "data" / "train.jsonl", train)
        write_steps(self.out / "data" / "heldout.jsonl", held)
        replay = manifest.get("replay") or {}
        return {"steps": len(steps), "train_steps": len(train), "heldout_steps": len(held),
                "heldout_in_sample": held is train,
                "replay_fidelity": round(statistics.fmean([r["mean_fidelity"] for r in replay.values()]), 4)
                if replay else None,
                "patch_match": sum(1 for r in replay.values() if r.get("patch_match")),
                "trajectories": len(paths),
                "stats_png": str(self.out / "data" / "swe_steps" / manifest["stats_png"]) if manifest.get("stats_png")
                else None}

    def _train(self, method: str, output_dir: Path, overrides: dict[str, Any]) -> str:
        final = output_dir / "final"
        if (final / "config.json").exists():
            return str(final)
        extra = {"method": method, "model": self.o.model, "data": str(self.out / "data" / "train.jsonl"),
                 "output_dir": str(output_dir), "seed": self.o.seed, "bf16": False, "logging_steps": 1,
                 "save_strategy": "no", "report_to": "none", "activation_checkpointing": False, **overrides}
        settings = load_settings(None, extra=extra)
        run_training(settings)
        _release_memory()
        return str(final)

    def warmup(self) -> str:
        return self._train("sft", self.out / "warmup", {
            "max_steps": self.o.warmup_steps, "batch_prompts": 4, "per_device_train_batch_size": 1,
            "learning_rate": 1e-4, "lr_scheduler_type": "constant", "warmup_steps": 0, "max_length": 1024,
            "sft_target": "step", "sft_think": "brief",
            # peak RSS (issue #17.4; with the CPU LM-head tiles and allocator policy of swe_srl/train: lm_head.py,
            # cpu_malloc.py): the warm-up's peak went from 5.8 GB to 3.3 GB (docs/quickstart/timing.json)
            "activation_checkpointing": True})

    def srl(self) -> str:
        warm = self.state["stages"]["warmup"]["result"]
        return self._train("srl", self.out / "srl", {
            "init_from": warm, "max_steps": self.o.steps, "batch_prompts": self.o.batch_prompts,
            # a micro-batch holds one whole group, so its prompt goes through the model once (shared_prompt)
            "per_device_train_batch_size": self.o.num_generations, "num_generations": self.o.num_generations,
            "max_completion_length": self.o.max_completion_length, "learning_rate": self.o.learning_rate,
            "rollout": "transformers", "dynamic_sampling": True, "ds_max_rounds": 3, "temperature": 1.0,
            # a CPU decode step costs about the same for 4 or 16 rows: the first round makes 4 groups (surplus kept
            # groups are carried into the next step) instead of finding out over several rounds
            "ds_keep_rate_prior": 0.25,
            "activation_checkpointing": True})     # SRL stage peak RSS 4.8 GB -> 3.8 GB (issue #17.4)

    def step_reward_eval(self) -> dict[str, Any]:
        held = read_steps(self.out / "data" / "heldout.jsonl")
        models = {"base": self.o.model, "warm-up (SFT)": self.state["stages"]["warmup"]["result"],
                  "SRL": self.state["stages"]["srl"]["result"]}
        results: dict[str, Any] = {}
        samples_path = self.out / "eval" / "step_reward_samples.jsonl"
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        with samples_path.open("w") as f:
            for name, model in models.items():
                # on CPU a decode step costs about the same for 1 or 16 rows (it streams the weights once), so the
                # held-out prompts go in as few generate() calls as possible; the n samples of a prompt share one
                # prompt prefill (swe_srl.generation.shared_prefill_generate)
                rows_per_call = 16
                gen = TransformersGenerator(model, batch_size=rows_per_call)
                params = SamplingParams(n=self.o.eval_samples, temperature=1.0,
                                        max_new_tokens=self.o.max_completion_length, seed=self.o.seed)
                outs = []
                per_call = max(1, rows_per_call // self.o.eval_samples)     # prompts per generate() call
                with tqdm(total=len(held), desc=f"step reward {name}", unit="step") as bar:   # ETA per model
                    for i in range(0, len(held), per_call):
                        outs += gen.generate([s.prompt for s in held[i:i + per_call]], params)
                        bar.update(len(held[i:i + per_call]))
                comps = [c for group in outs for c in group]
                targets = [s.target for s in held for _ in range(self.o.eval_samples)]
                scored = score_batch(comps, targets, processes=1)
                rewards = [r.reward for r in scored]
                sims = [r.similarity for r in scored if r.similarity is not None]
                n = len(rewards)
                sd = statistics.pstdev(rewards) if n > 1 else 0.0
                results[name] = {
                    "mean_reward": round(statistics.fmean(rewards), 4), "se": round(sd / math.sqrt(n), 4),
                    "format_ok": round(len(sims) / n, 4),
                    "mean_similarity_when_ok": round(statistics.fmean(sims), 4) if sims else None, "n": n}
                for c, t, r in zip(comps, targets, scored):
                    f.write(json.dumps({"model": name, "completion": c, "target": t, "reward": r.reward,
                                        "violation": r.violation}) + "\n")
                del gen
                _release_memory()
        return results

    def oracle_eval(self) -> dict[str, Any]:
        """Oracle file edit on the sample tasks, graded by the one SWE grader (``swe_eval.grade_in_sandbox``): in a
        DockerSandbox of each task's image, or (no Docker) in a LocalSandbox over the materialized repository."""
        backend = self.backend()
        instances = eval_instances(self.tasks())
        if backend == "docker":
            import docker

            client = docker.from_env()
            for inst in instances:
                inst["image"] = build_instance_image(client, inst["instance_id"],
                                                     self.out / "repos" / inst["instance_id"])
            sandboxes = docker_sandbox_factory()
        else:
            sandboxes = local_sandbox_factory(self.out / "repos")
        ds_path = self.out / "eval" / "sample_instances.jsonl"
        ds_path.parent.mkdir(parents=True, exist_ok=True)
        ds_path.write_text("".join(json.dumps(i) + "\n" for i in instances))
        models = {"base": self.o.model, "SRL": self.state["stages"]["srl"]["result"]}
        out: dict[str, Any] = {}
        for name, model in models.items():
            cfg = EvalConfig(model=model, dataset=str(ds_path), mode="oracle",
                             out_dir=str(self.out / "eval" / f"oracle_{name.split()[0].lower()}"),
                             repos_dir=str(self.out / "repos"), source="repos", harness="local",
                             sandbox_factory=sandboxes, max_new_tokens=self.o.eval_max_new_tokens, batch_size=4,
                             backend="transformers", model_name=name, workers=2)
            summary = run_eval(cfg, log=lambda m: self.log(f"    {m}"))
            out[name] = {k: summary.get(k) for k in ("resolve_rate", "resolved", "total", "counts")}
        # the grader itself, validated on the gold patches
        g = run_eval(EvalConfig(dataset=str(ds_path), gold=True, out_dir=str(self.out / "eval" / "oracle_gold"),
                                harness="local", sandbox_factory=sandboxes, workers=2),
                     log=lambda m: self.log(f"    {m}"))
        out["gold patches"] = {k: g.get(k) for k in ("resolve_rate", "resolved", "total", "counts")}
        return out

    def report(self) -> str:
        return write_report(self.out, self.state, self.backend())

    def run(self) -> Path:
        with OutputLock(self.out):   # one quickstart per --out (swe_srl.core.io.OutputLock)
            self._save()
            t0 = time.time()
            self.stage("collect", self.collect)
            self.stage("warmup", self.warmup)
            self.stage("srl", self.srl)
            self.stage("step_reward_eval", self.step_reward_eval)
            self.stage("oracle_eval", self.oracle_eval)
            self.state["wall_seconds_this_run"] = round(time.time() - t0, 1)
            self._save()
            self.report()
            return self.out / "report.md"


def _stage_child(opts: QuickstartOptions, state: dict[str, Any], name: str, conn: Any) -> None:
    """Child-process body of one stage: rebuild the Quickstart from the parent's state, run the stage, send back
    ("ok", result) or ("error", exception)."""
    try:
        qs = Quickstart.__new__(Quickstart)
        qs.o, qs.out, qs.log, qs.state = opts, Path(opts.out).resolve(), print, state
        qs.state_path, qs.child_stages = qs.out / "state.json", False
        qs._save = lambda: None         # the parent owns state.json
        conn.send(("ok", getattr(qs, name)()))
    except BaseException as e:  # noqa: BLE001 - re-raised in the parent
        import traceback

        traceback.print_exc()
        try:
            conn.send(("error", e))
        except Exception:
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))
    finally:
        conn.close()


def _in_child(qs: Quickstart, name: str) -> Any:
    """Run stage ``name`` in a fresh (spawned) process and return its result; an error in the stage is raised here."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_stage_child, args=(qs.o, qs.state, name, child), name=f"quickstart-{name}")
    proc.start()
    child.close()
    try:
        kind, value = parent.recv()
    except EOFError:
        kind, value = "error", RuntimeError(f"stage {name}: its process died (exit code {proc.join() or proc.exitcode})")
    proc.join()
    if kind == "error":
        raise value
    return value


def _release_memory() -> None:
    """Give freed model/optimizer memory back to the OS between stages (glibc keeps it otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _docker_ready() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get("swe-srl/sandbox-base:latest")
        return True
    except Exception:
        return False


def _plot_step_rewards(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    means = [results[n]["mean_reward"] for n in names]
    ses = [results[n]["se"] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(names, means, yerr=ses, capsize=4, color=["#999", "#6a9fd4", "#2b7a3d"][: len(names)])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("mean step reward (held-out)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("held-out step reward (-1 = format broken, 1 = expert action)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, state: dict[str, Any], backend: str) -> str:
    st = state["stages"]
    col = st["collect"]["result"]
    step = st["step_reward_eval"]["result"]
    orc = st["oracle_eval"]["result"]
    img = out / "report_assets"
    img.mkdir(exist_ok=True)
    _plot_step_rewards(step, img / "step_reward.png")
    stats_png = col.get("stats_png")
    if stats_png and Path(stats_png).exists():
        shutil.copy(stats_png, img / "dataset_stats.png")
    curves = sorted((out / "srl" / "plots").glob("*.png")) if (out / "srl" / "plots").is_dir() else []
    for c in curves:
        shutil.copy(c, img / f"srl_{c.name}")
    metrics = []
    mpath = out / "srl" / "metrics.jsonl"
    if mpath.exists():
        metrics = [json.loads(line) for line in mpath.read_text().splitlines() if line.strip()]
    secs = {k: v["seconds"] for k, v in st.items()}
    lines = [
        "# swe-srl quickstart report", "",
        f"Model `{state['options']['model']}`, sandbox `{backend}`, stage times (s): "
        + ", ".join(f"{k} {v}" for k, v in secs.items()) + f"; total {round(sum(secs.values()), 1)} s.", "",
        "## 1. Step data from expert trajectories", "",
        f"{col['trajectories']} bundled expert trajectories (mini-swe-agent and SWE-agent 1.x formats) -> "
        f"{col['steps']} step records; every action was replayed in the `{backend}` sandbox: mean observation "
        f"fidelity {col['replay_fidelity']}, final diff equal to the submitted patch in {col['patch_match']} of "
        f"{col['trajectories']}. Train steps: {col['train_steps']}; held-out steps: {col['heldout_steps']}"
        + (" (**in-sample**: a one-task run evaluates on its own steps)" if col.get("heldout_in_sample") else
           f" (task `{HELDOUT_TASK}`, never trained on)") + f". Step prompts keep the last {HISTORY_K} "
        f"action/observation rounds (observations cut to {OBS_MAX_CHARS} characters, head + tail) and document only "
        "the tools of the trajectory's agent.", "",
        "![dataset stats](report_assets/dataset_stats.png)", "",
        "## 2. Training", "",
        f"Format warm-up: {state['options']['warmup_steps']} SFT steps on prompt -> `<think>brief</think>` + expert "
        f"action. SRL: {state['options']['steps']} GRPO steps, G={state['options']['num_generations']}, "
        f"{state['options']['batch_prompts']} step instance(s) per batch, dynamic sampling on (groups whose G "
        f"rewards have std <= 1e-4 are dropped and regenerated).", "",
    ]
    if metrics:
        lines += ["| step | reward mean | reward std | format errors | kept fraction | generation rounds |",
                  "|---|---|---|---|---|---|"]
        for m in metrics:
            if "reward" not in m:
                continue
            lines.append("| {} | {} | {} | {} | {} | {} |".format(
                m.get("step"), _fmt(m.get("reward")), _fmt(m.get("reward_std")),
                _fmt(m.get("srl/format_error_rate")), _fmt(m.get("ds/kept_fraction")), _fmt(_int(m.get("ds/rounds")))))
        lines.append("")
    lines += [f"![{c.name}](report_assets/srl_{c.name})" for c in curves] + [""]
    lines += ["## 3. Step reward on held-out steps", "",
              f"{state['options']['eval_samples']} samples per step at temperature 1.0; reward = difflib similarity "
              "of the action to the expert's (-1 when the format is broken).", "",
              "| model | mean step reward ± s.e. | format ok | similarity when ok | n |", "|---|---|---|---|---|"]
    for name, r in step.items():
        lines.append(f"| {name} | {r['mean_reward']:.3f} ± {r['se']:.3f} | {r['format_ok']:.0%} | "
                     f"{_fmt(r['mean_similarity_when_ok'])} | {r['n']} |")
    lines += ["", "![step reward](report_assets/step_reward.png)", "",
              "## 4. Oracle file-edit resolve rate on the sample tasks", "",
              "Prompt = issue + full content of the files the gold patch edits; the model answers with SEARCH/REPLACE "
              "edits; the task's own tests decide (FAIL_TO_PASS and PASS_TO_PASS).", "",
              "| model | resolved | total | statuses |", "|---|---|---|---|"]
    for name, r in orc.items():
        lines.append(f"| {name} | {r['resolved']} | {r['total']} | {r.get('counts')} |")
    lines += ["", "A 135M model is not expected to resolve these; the row that must say all resolved is the gold "
              "patches (it validates the grader). Scale up with the GPU configs (README).", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return str(out / "report.md")


def _int(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)

