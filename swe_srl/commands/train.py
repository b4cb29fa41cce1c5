"""`swe-srl train`: SRL (GRPO + step reward + dynamic sampling), SFT, RLVR. See docs/train.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from ._common import fail


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train with SRL (GRPO + step reward), SFT or RLVR. Keys: YAML config + --set key=value.")
    def _cmd(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (configs/*.yaml)."),
        set_: list[str] = typer.Option([], "--set", help="Override one config key: key=value (repeatable)."),
        method: Optional[str] = typer.Option(None, "--method", help="srl (default) | sft | rlvr"),
        model: Optional[str] = typer.Option(None, "--model", help="Model id, path or alias."),
        data: Optional[str] = typer.Option(None, "--data", help="steps.jsonl or its directory."),
        output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
        rollout: Optional[str] = typer.Option(None, "--rollout",
                                              help="auto | vllm-colocate | vllm-server | transformers"),
        init_from: Optional[str] = typer.Option(None, "--init-from", help="Start from this checkpoint (SRL->RLVR)."),
        lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA adapter or full fine-tuning."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the run dir."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and command; load nothing."),
        num_processes: int = typer.Option(1, "--num-processes", help="Processes (GPUs); >1 runs accelerate launch."),
        accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config",
                                                        help="configs/accelerate/*.yaml for multi-process runs."),
    ) -> None:
        from ..train.config import (ConfigError, describe, format_command, launch_command, load_settings,
                                    resolve_rollout)

        extra = {"method": method, "model": model, "data": data, "output_dir": output_dir, "rollout": rollout,
                 "init_from": init_from, "lora": lora, "max_steps": max_steps}
        try:
            s = load_settings(config, set_, extra, num_processes=num_processes, accelerate_config=accelerate_config)
        except ConfigError as e:
            fail(str(e))
        if accelerate_config and not Path(accelerate_config).is_file():
            fail(f"--accelerate-config: no such file {accelerate_config!r}")
        from ..train.preflight import check_inputs

        # model path, data (every line), task/method: before any model loads, and in --dry-run
        warnings = check_inputs(s, allow_missing_data=dry_run)
        rollout_resolved = resolve_rollout(s.rollout) if not dry_run else (
            s.rollout if s.rollout != "auto" else "auto (vllm-colocate with CUDA + vllm, else transformers)")
        out = Path(s.trl["output_dir"])
        resolved_path = str(out / "config.resolved.yaml")
        cmd = launch_command(s, resolved_path)
        if dry_run:
            typer.echo(describe(s, rollout_resolved))
            typer.echo("# resolved config is written to " + resolved_path + " at launch")
            typer.echo("launch: " + format_command(cmd) + ("  (SWE_SRL_RESUME=1)" if resume else ""))
            for w in warnings:
                typer.echo(f"warning: {w}", err=True)
            return
        if s.num_processes > 1:
            out.mkdir(parents=True, exist_ok=True)
            Path(resolved_path).write_text(s.to_yaml())
            typer.echo("launch: " + format_command(cmd), err=True)
            env = dict(os.environ, SWE_SRL_RESUME="1" if resume else "0")
            import torch

            if not torch.cuda.is_available():   # accelerate's MULTI_CPU (gloo) needs the CPU flag in every rank
                env.setdefault("ACCELERATE_USE_CPU", "true")
                kind = _distributed_type(accelerate_config)
                if kind in ("FSDP", "DEEPSPEED"):
                    typer.echo(f"warning: --accelerate-config: no CUDA device: accelerate runs a {kind} config as "
                               f"plain DDP (gloo) on CPU, nothing is sharded (docs/train-gpu.md)", err=True)
            raise typer.Exit(subprocess.call(cmd, env=env))
        typer.echo(f"[swe-srl] method={s.method} rollout={rollout_resolved} output_dir={out}", err=True)
        from ..core.io import OutputLocked
        from ..core.task import TaskError
        from ..train.runner import run

        try:
            run(s, resume=resume)
        except (FileNotFoundError, TaskError, OutputLocked) as e:
            fail(str(e))
        typer.echo(f"[swe-srl] done: metrics {out / 'metrics.jsonl'}, plots {out / 'plots'}, final model "
                   f"{out / 'final'}", err=True)
        sys.stdout.flush()


def _distributed_type(accelerate_config: Optional[str]) -> Optional[str]:
    if not accelerate_config:
        return None
    import yaml

    try:
        return str((yaml.safe_load(Path(accelerate_config).read_text()) or {}).get("distributed_type", "")).upper()
    except (OSError, yaml.YAMLError, AttributeError):
        return None
