"""`swe-srl quickstart`: collect -> warm-up -> SRL -> eval -> report on the bundled sample tasks."""

from __future__ import annotations

import typer

from ..models import check_model
from ._common import fail


def register(app: typer.Typer) -> None:
    @app.command("quickstart",
                 help="collect -> format warm-up -> SRL -> eval -> report.md, end to end on the bundled sample tasks "
                      "(CPU friendly; resumable: rerun with the same --out).")
    def _cmd(
        out: str = typer.Option("runs/quickstart", "--out", help="Output directory (report.md, plots, checkpoints)."),
        model: str = typer.Option("smollm2-135m", "--model", help="Model alias, hub id or local path."),
        steps: int = typer.Option(3, "--steps", min=1, help="SRL optimizer steps."),
        warmup_steps: int = typer.Option(3, "--warmup-steps", min=0, help="Format warm-up (SFT) steps."),
        tasks: int = typer.Option(0, "--tasks", min=0, help="Use only the first N sample tasks (0 = all 4)."),
        sandbox: str = typer.Option("auto", "--sandbox", help="auto | docker | local"),
        eval_max_new_tokens: int = typer.Option(256, "--eval-max-new-tokens", min=16,
                                                help="Generation budget of the oracle repair eval."),
        eval_samples: int = typer.Option(2, "--eval-samples", min=1, help="Samples per held-out step."),
    ) -> None:
        if sandbox not in ("auto", "docker", "local"):
            fail(f"--sandbox: expected auto|docker|local, got {sandbox!r}")
        from ..core.io import OutputLock, OutputLocked

        try:      # a held --out fails at once, before any state is written or a model resolved (run() holds it)
            OutputLock(out).acquire().release()
        except OutputLocked as e:
            fail(str(e))
        check_model(model, "--model")
        from ..quickstart import Quickstart, QuickstartOptions     # loads torch: after the cheap checks

        opts = QuickstartOptions(out=out, model=model, steps=steps, warmup_steps=warmup_steps, tasks=tasks or None,
                                 sandbox=sandbox, eval_max_new_tokens=eval_max_new_tokens, eval_samples=eval_samples)
        try:
            qs = Quickstart(opts)
        except ValueError as e:
            fail(str(e))
        try:
            report = qs.run()
        except OutputLocked as e:
            fail(str(e))
        typer.echo(f"\nreport: {report}")
