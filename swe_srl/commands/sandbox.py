"""`swe-srl sandbox ls | prune`: the sandbox (and image-build) containers of this project on the Docker engine.

``prune`` removes the containers whose owner process is gone (``environments.sandbox.lifecycle``: pid gone, pid
reused, or host rebooted), whatever their state (running, exited, created but never started). ``--all`` removes
every one of ours, live owners' included: on an engine shared with other users, scope it with ``--run`` / ``--label``.
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ._common import fail


def _labels(run: str | None, label: list[str] | None) -> dict[str, str]:
    from environments.sandbox.lifecycle import LABEL_RUN

    out: dict[str, str] = {}
    for item in label or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            fail(f"--label: expected KEY=VALUE, got {item!r}")
        out[k] = v
    if run:
        out[LABEL_RUN] = run
    return out


def _table(rows, title: str, action: bool = True) -> None:
    t = Table(title=title)
    cols = ("id", "state", "kind", "owner", "owner state", "run", "command", "created")
    cols += ("action",) if action else ()
    for col in cols:
        t.add_column(col, no_wrap=col in ("id", "owner", "run"))
    for r in rows:
        vals = (r.id, r.state, r.kind, r.owner, r.owner_state, r.run, r.command, r.created)
        t.add_row(*vals, *((r.action,) if action else ()))
    Console().print(t)


def _engine():
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception as e:  # noqa: BLE001 - any engine failure is one line
        fail(f"docker: cannot reach the Docker engine ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(help="Sandbox containers on the Docker engine: list them, remove those whose owner is gone.",
                          no_args_is_help=True)
    app.add_typer(sandbox, name="sandbox")

    @sandbox.command("ls", help="List this project's containers with their owner and whether it is alive.")
    def _ls(
        run: Optional[str] = typer.Option(None, "--run", help="only containers of this run id (swe-srl.run)"),
        label: Optional[list[str]] = typer.Option(None, "--label", help="only containers with KEY=VALUE (repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per container"),
    ) -> None:
        from environments.sandbox.lifecycle import describe, our_containers

        rows = [describe(c) for c in our_containers(_engine(), labels=_labels(run, label))]
        if as_json:
            for r in rows:
                typer.echo(json.dumps(r.to_dict()))
            return
        _table(rows, f"{len(rows)} swe-srl container(s)", action=False)

    @sandbox.command("prune", help="Remove the containers whose owner process is gone (running, exited, or created "
                                   "but never started). --all: every swe-srl container, live owners' too.")
    def _prune(
        all_owners: bool = typer.Option(False, "--all", help="also containers of LIVE owners (scope it with --run / "
                                                              "--label on a shared engine)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="only show what would be removed"),
        run: Optional[str] = typer.Option(None, "--run", help="only containers of this run id (swe-srl.run)"),
        label: Optional[list[str]] = typer.Option(None, "--label", help="only containers with KEY=VALUE (repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per container looked at"),
    ) -> None:
        from environments.sandbox.lifecycle import prune

        rows = prune(_engine(), all_owners=all_owners, dry_run=dry_run, labels=_labels(run, label))
        failed = [r for r in rows if r.action.startswith("failed")]
        if as_json:
            for r in rows:
                typer.echo(json.dumps(r.to_dict()))
        else:
            if rows:
                _table(rows, "swe-srl containers")
            gone = sum(1 for r in rows if r.action in ("removed", "would remove"))
            verb = "would remove" if dry_run else "removed"
            typer.echo(f"{verb} {gone} container(s), kept {sum(1 for r in rows if r.action == 'kept')}"
                       + (f", {len(failed)} failed" if failed else ""))
        if failed:
            raise typer.Exit(1)
