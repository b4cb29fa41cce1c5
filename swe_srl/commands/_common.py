"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from ..core.errors import EXIT_NOTHING_USABLE, debug_enabled

#: per-input errors printed on screen by a batch job (the rest: <out>/errors.jsonl)
SHOW_ERRORS = 5


#: set by the root callback of ``swe_srl.cli`` on every invocation (``swe-srl --debug …``)
DEBUG = False


def debug_on() -> bool:
    return DEBUG or debug_enabled()


def fail(message: str, code: int = 2) -> NoReturn:
    """One-line error to stderr, non-zero exit. Called while handling an exception with ``--debug`` (or
    ``SWE_SRL_DEBUG=1``): that exception is re-raised instead, so its traceback is shown."""
    exc = sys.exc_info()[1]
    if exc is not None and debug_on():
        raise exc
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _read_errors(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def report_batch(manifest: dict[str, Any], out_dir: str | Path, steps: int) -> None:
    """After a batch job (collect, math collect): the inputs that failed (first ``SHOW_ERRORS`` on stderr, the
    count and where the rest are), the duplicate inputs skipped, and exit code 3 when ``steps`` is 0 (nothing
    usable was produced)."""
    out = Path(out_dir)
    errors_file = out / str((manifest.get("errors") or {}).get("file") or "errors.jsonl")
    errors = _read_errors(errors_file)
    if errors:
        typer.echo(f"errors: {len(errors)} input unit(s) could not be used and were skipped:", err=True)
        for e in errors[:SHOW_ERRORS]:
            reason = str(e.get("reason", "")).replace("\n", " ")[:300]
            where = e.get("source") or e.get("unit")
            typer.echo(f"  {reason}" if reason.startswith("malformed:") or str(where) in reason
                       else f"  {where}: {reason}", err=True)
        if len(errors) > SHOW_ERRORS:
            typer.echo(f"  … and {len(errors) - SHOW_ERRORS} more, see {errors_file}", err=True)
        else:
            typer.echo(f"  (all in {errors_file})", err=True)
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    n_dup = int(files.get("duplicate_files") or 0)
    if n_dup:
        ex = (files.get("duplicates") or [{}])[0]
        typer.echo(f"duplicates: {n_dup} input file(s) byte-identical to an earlier one, skipped (e.g. "
                   f"{ex.get('path')} = {ex.get('same_as')}; all in {out / 'manifest.json'})", err=True)
    if steps == 0:
        typer.echo(f"error: {out}: nothing usable was produced (0 steps); see the summary above"
                   + (f" and {errors_file}" if errors else ""), err=True)
        raise typer.Exit(EXIT_NOTHING_USABLE)
