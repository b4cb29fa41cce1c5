"""`swe-srl export --merge-lora ADAPTER_DIR OUT`: a LoRA run's adapter merged into its base model, written as a plain
model + tokenizer (swe_srl/train/export.py) that `swe-srl eval` and vLLM load."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import fail


def register(app: typer.Typer) -> None:
    @app.command("export", help="Export a trained model. --merge-lora RUN/best OUT: fold the LoRA adapter into its "
                                "base model and write a plain model + tokenizer (for `swe-srl eval`, vLLM).")
    def _cmd(
        adapter_dir: Path = typer.Argument(..., help="adapter directory: RUN/best, RUN/final or RUN/checkpoint-N"),
        out: Path = typer.Argument(..., help="output directory for the merged model"),
        merge_lora: bool = typer.Option(False, "--merge-lora", help="merge the LoRA adapter into the base model "
                                                                     "(the only export there is; required)"),
        base: Optional[str] = typer.Option(None, "--base", help="base model (path, hub id or alias); default: the "
                                                                 "adapter's base_model_name_or_path"),
        dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    ) -> None:
        if not merge_lora:
            fail("export: say what to export: --merge-lora (merge a LoRA adapter into its base model)")
        from ..train.export import merge_lora as merge

        path = merge(adapter_dir, out, base=base, dtype=dtype, overwrite=overwrite)
        typer.echo(f"wrote {path} (merged {adapter_dir} into its base; load it as a plain model: "
                   f"swe-srl eval --model {path} …)")
