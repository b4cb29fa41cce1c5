"""`swe-srl inspect`: manifest summary (with a replay: failures, the per-step fidelity histogram by command kind and
the final-patch check) + one step rendered as the model sees it (and its replay fidelity entry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..core.schema import StepRecordError, validate_record
from ._common import fail
from .collect import load_tokenizer, print_manifest_summary


def render_step(record: dict, tokenizer_name: str | None = None) -> str:
    """The prompt exactly as the model will see it: through the chat template when a tokenizer is given."""
    if tokenizer_name:
        tok = load_tokenizer(tokenizer_name)
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(record["prompt"], tokenize=False, add_generation_prompt=True)
    return "\n".join(f"----- [{m['role']}] -----\n{m['content']}" for m in record["prompt"])


def register(app: typer.Typer) -> None:
    @app.command("inspect", help="Summarize a step-data directory and render one step.")
    def _cmd(
        directory: Path = typer.Argument(..., help="Directory written by `swe-srl collect`."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Render through this model's chat "
                                                "template (e.g. smollm2-135m)."),
        index: int = typer.Option(0, "--index", help="Which step (line of steps.jsonl, 0-based) to render."),
        max_chars: int = typer.Option(6000, "--max-chars", help="Show at most this many prompt characters "
                                      "(head + tail); 0 = all."),
    ) -> None:
        console = Console()
        mp = directory / "manifest.json"
        sp = directory / "steps.jsonl"
        if not sp.exists():
            fail(f"{sp}: missing (not a collect output directory)")
        if mp.exists():
            try:
                print_manifest_summary(json.loads(mp.read_text(encoding="utf-8")), directory)
            except (json.JSONDecodeError, KeyError) as e:
                console.print(f"[yellow]{mp}: unreadable manifest ({e})[/yellow]")
        if index < 0:
            fail(f"--index: must be >= 0, got {index}")
        record = None
        with sp.open("rb") as f:
            for i, raw in enumerate(f):
                if i == index:
                    try:
                        record = json.loads(raw.decode("utf-8"))
                    except UnicodeDecodeError as e:
                        fail(f"{sp}:{i + 1}: not UTF-8 text (byte {e.start})")
                    except json.JSONDecodeError as e:
                        fail(f"{sp}:{i + 1}: invalid JSON ({e.msg})")
                    break
        if record is None:
            fail(f"--index {index}: steps.jsonl has fewer lines")
        try:
            validate_record(record)        # the row is to blame, not --tokenizer: name its line and field
        except StepRecordError as e:
            raise StepRecordError(file=sp, line=index + 1, reason=f"not a step record: {e}") from e
        try:
            text = render_step(record, tokenizer)
        except Exception as e:
            if not tokenizer:
                raise
            fail(f"--tokenizer {tokenizer}: {type(e).__name__}: {e}")
        if max_chars and len(text) > max_chars:
            h = max_chars // 2
            text = text[:h] + f"\n\n[... {len(text) - max_chars} chars not shown (--max-chars) ...]\n\n" + text[-h:]
        console.rule(f"step {record.get('id')}  (tool {record.get('tool')}, step {record.get('step_index')} of "
                     f"{record.get('num_steps')}, {record.get('meta', {}).get('format')})")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        console.rule("target (expert action)")
        console.print(record.get("target", ""), markup=False, highlight=False, soft_wrap=True)
        rep = (record.get("meta") or {}).get("replay")
        if isinstance(rep, dict):
            console.rule("replay of this action")
            console.print(f"kind {rep.get('kind')}  status {rep.get('status')}  fidelity {rep.get('fidelity')}  "
                          f"(raw {rep.get('fidelity_raw')}, {rep.get('method')})  observation in later prompts: "
                          f"{rep.get('observation_in_history')}", markup=False, highlight=False)
