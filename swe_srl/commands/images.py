"""`swe-srl images build | ls | rm`: SWE-bench instance images built locally (no registry), named like swebench's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ._common import fail


def instance_ids(value: str | None) -> list[str] | None:
    """--instances: comma-separated ids, or a file: a JSON list, a JSON object of lists (``instances.json`` of
    the snapshot repos), or one id per line."""
    if not value:
        return None
    p = Path(value)
    if p.is_file():
        text = p.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return [x.strip() for x in text.splitlines() if x.strip()]
        if isinstance(data, dict):
            return [i for ids in data.values() for i in ids]
        if isinstance(data, list):
            return [str(i) for i in data]
        fail(f"--instances {value}: expected a JSON list or an object of lists")
    return [x.strip() for x in value.split(",") if x.strip()]


def _gb(n: Any) -> str:
    return f"{(n or 0) / 1e9:.2f} GB"


def register(app: typer.Typer) -> None:
    images = typer.Typer(help="SWE-bench instance images built locally: base (per Python) -> env (per repo+version) "
                              "-> instance, named like swebench's own (see docs/swebench-local.md).",
                         no_args_is_help=True)
    app.add_typer(images, name="images")

    @images.command("build", help="Build the instance images of a dataset (resumable; one failure never stops the "
                                  "others).")
    def _build(
        dataset: Optional[str] = typer.Option(None, "--dataset", help="local SWE-bench JSON/JSONL"),
        split: str = typer.Option("verified", "--split", help="verified | lite (HF hub) when no --dataset"),
        instances: Optional[str] = typer.Option(None, "--instances",
                                                help="comma-separated ids, or a file of ids (JSON list/object, "
                                                     "one per line)"),
        repos: Optional[str] = typer.Option(None, "--repos", help="dir of bare repos / clones named "
                                                                  "<owner>__<name>[.git] (else GitHub)"),
        workers: int = typer.Option(1, "--workers", help="instances built in parallel"),
        logs: str = typer.Option("image_build_logs", "--logs", help="build logs + builds.jsonl"),
        force: bool = typer.Option(False, "--force", help="rebuild env and instance layers even if up to date"),
        base_image: Optional[str] = typer.Option(None, "--base-image",
                                                 help="a local base image (python3 with venv, git) instead of a "
                                                      "Debian base per Python version"),
        base_python: Optional[str] = typer.Option(None, "--base-python", help="the Python of --base-image, e.g. 3.10"),
    ) -> None:
        from swe_srl.swe_eval.dataset import DatasetError, load_instances

        from environments.images import build_images

        if workers < 1:
            fail(f"--workers: expected >= 1, got {workers}")
        if repos and not Path(repos).is_dir():
            fail(f"--repos {repos}: not a directory")
        if base_image and not base_python:
            fail("--base-image needs --base-python (the Python version it has)")
        try:
            every = load_instances(split=split, dataset=dataset)
            rows = load_instances(split=split, dataset=dataset, instance_ids=instance_ids(instances)) \
                if instances else every
        except DatasetError as e:
            fail(str(e))
        try:
            import docker

            client = docker.from_env(timeout=600)
            client.ping()
        except Exception as e:  # noqa: BLE001 - any failure to reach the engine is one line
            fail(f"no Docker engine answers ({type(e).__name__}); images build needs Docker")
        console = Console()
        from environments.sandbox.lifecycle import prune_orphans_once

        prune_orphans_once(client)   # build / sandbox containers left by dead processes go first
        results = build_images(rows, repos_dir=repos, workers=workers, logs_dir=logs, force=force,
                               base_image=base_image, base_python=base_python, client=client, env_rows=every,
                               echo=lambda s: console.print(s, markup=False, highlight=False))
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        console.print(f"{len(results)} instances: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                      + f"; logs in {logs}/")
        if counts.get("failed"):
            for r in results:
                if r["status"] == "failed":
                    console.print(f"  failed {r['instance_id']}: {r.get('error')}  ({r.get('log', '')})",
                                  markup=False)
            raise typer.Exit(1)

    @images.command("ls", help="List the images swe-srl built (base/env/instance), with what deviates from the "
                               "spec.")
    def _ls(
        layer: Optional[str] = typer.Option(None, "--layer", help="base | env | instance"),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
        deviations: bool = typer.Option(False, "--deviations", help="show each image's deviations from its spec"),
    ) -> None:
        from environments.images import list_images

        try:
            rows = list_images(layer=layer)
        except Exception as e:  # noqa: BLE001
            fail(f"cannot list images ({type(e).__name__}: {str(e)[:200]})")
        if as_json:
            for r in rows:
                typer.echo(json.dumps(r))
            return
        t = Table(title=f"{len(rows)} images")
        for col in ("image", "layer", "python", "spec", "size") + (("deviations",) if deviations else ()):
            t.add_column(col, justify="right" if col == "size" else "left")
        for r in rows:
            t.add_row(r["image"], r["layer"] or "", r["python"], r["spec_python"], _gb(r["size_bytes"]),
                      *(("; ".join(r["deviations"]),) if deviations else ()))
        Console().print(t)

    @images.command("rm", help="Remove images swe-srl built: given names / instance ids, or --all of a layer.")
    def _rm(
        names: Optional[list[str]] = typer.Argument(None, help="image names or instance ids"),
        all_: bool = typer.Option(False, "--all", help="every image swe-srl built (of --layer, if given)"),
        layer: Optional[str] = typer.Option(None, "--layer", help="base | env | instance"),
    ) -> None:
        from environments.images import list_images, remove_images

        rows = list_images(layer=layer)
        if all_:
            targets = [r["image"] for r in sorted(rows, key=lambda r: {"instance": 0, "env": 1}.get(r["layer"], 2))]
        elif names:
            by_iid = {r["instance_id"]: r["image"] for r in rows if r["instance_id"]}
            targets = [by_iid.get(n, n) for n in names]
        else:
            fail("give image names / instance ids, or --all")
        try:
            removed = remove_images(targets)
        except Exception as e:  # noqa: BLE001
            fail(f"{type(e).__name__}: {str(e)[:300]}")
        typer.echo(f"removed {len(removed)} image(s)")
