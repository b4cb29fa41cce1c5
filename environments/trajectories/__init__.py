"""Readers for expert SWE-agent trajectories in their native formats -> ``environments.trajectory.Trajectory``.

Formats (``--format``; ``auto`` detects each file by content):

  sweagent_0x             SWE-agent ``.traj`` with 0.x ACI text commands (incl. CodeR multi-role runs)
  sweagent_1x             SWE-agent ``.traj`` with 1.x tools / function calling (str_replace_editor, bash, submit)
  minisweagent            mini-swe-agent ``.traj.json``
  openhands_completions   OpenHands ``llm_completions/<instance>/*.json`` (last call per instance = full run)
  openhands_output        OpenHands evaluation ``output.jsonl`` rows with event ``history``
  swesmith_sft            SWE-smith SFT jsonl rows ``{"instance_id", "messages"}`` with ``<function=…>`` calls
                          (the SWE-smith-trajectories ``xml`` split)

Dataset rows (``.parquet``, ``.arrow``, ``.jsonl``, ``.json`` arrays, ``hf://HF_ID[:config][@split]``; see
``datasets`` for the files and ``chat_rows`` for the row formats): chat_tools, openhands_text, r2egym,
swesmith_ticks, sweagent_text, minisweagent, moatless, swesmith_sft. A forced row ``--format`` reads every row as that
format; ``auto`` detects each row by its columns and message protocol.

``sweagent`` as a --format value accepts both SWE-agent variants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from environments.trajectory import Trajectory

from . import chat_rows, minisweagent, openhands, sweagent, swesmith
from ._util import TrajectoryFormatError
from .datasets import (DatasetUnavailable, dataset_of_path, decode_row, has_success_column, is_row_file, iter_hub,
                       iter_row_file, json_array_file, parse_dataset_spec, row_success, split_of_path,
                       SUCCESS_SPLITS)

NATIVE_FORMATS = ("sweagent_0x", "sweagent_1x", "minisweagent", "openhands_completions", "openhands_output",
                  "swesmith_sft")
ROW_FORMATS = chat_rows.ROW_FORMATS
FORMATS = (*NATIVE_FORMATS, *(f for f in ROW_FORMATS if f not in NATIVE_FORMATS))
FORMAT_CHOICES = ("auto", "sweagent", *FORMATS)
HUB_PREFIX = "hf://"
MAX_FILE_BYTES = 512 * 1024 * 1024

__all__ = ["FORMATS", "FORMAT_CHOICES", "ROW_FORMATS", "TrajectoryFormatError", "DatasetUnavailable", "InputFile",
           "discover", "detect_format", "iter_file", "read_trajectories", "HUB_PREFIX", "hub_input"]


@dataclass(frozen=True)
class InputFile:
    path: Path                             # (a ``hf://`` string for a --dataset input)
    explicit: bool = False                 # named on the command line (vs found by walking a directory)
    superseded: tuple[str, ...] = ()       # other llm_completions files of the same instance (not read)


def _candidate(p: Path) -> bool:
    n = p.name
    return n.endswith((".traj", ".traj.json", ".jsonl", ".parquet", ".arrow")) or (n.endswith(".json")
                                                                                    and _in_completions(p))


def hub_input(spec: str) -> str:
    """The input string of a ``--dataset`` spec (validated; raises DatasetUnavailable on a bad spec)."""
    parse_dataset_spec(spec)
    return HUB_PREFIX + spec


def _in_completions(p: Path) -> bool:
    return "llm_completions" in p.parts[:-1]


def discover(paths: Iterable[str | Path]) -> tuple[list[InputFile], list[str]]:
    """Input files under ``paths`` (files or directories, walked recursively, sorted), and ignored files.

    In a directory: ``*.traj``, ``*.traj.json``, ``*.jsonl``, ``*.parquet``, ``*.arrow``, and ``*.json`` under an
    ``llm_completions`` folder (only the last call of each instance folder; the others are listed as superseded).
    ``*.json`` files holding a JSON array of rows are dataset files when the directory walked holds no native
    trajectory (a dataset folder); next to native trajectories a ``.json`` is a report/config and is ignored.
    Other files are ignored. ``hf://`` inputs (``--dataset``) pass through as they are.
    """
    out: list[InputFile] = []
    ignored: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        if str(raw).startswith(HUB_PREFIX):
            out.append(InputFile(str(raw), explicit=True))  # type: ignore[arg-type]  # a hub spec, not a path
            continue
        p = Path(raw)
        if p.is_file():
            rp = p.resolve()
            if rp not in seen:
                seen.add(rp)
                out.append(InputFile(rp, explicit=True))
            continue
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such file or directory")
        files = sorted(x.resolve() for x in p.rglob("*") if x.is_file())
        completions: dict[Path, list[Path]] = {}
        native = any(f.name.endswith((".traj", ".traj.json")) or _in_completions(f) for f in files)
        for f in files:
            if f in seen:
                continue
            if not native and f.name.endswith(".json") and not _in_completions(f) and json_array_file(f):
                seen.add(f)
                out.append(InputFile(f))
            elif _candidate(f):
                if f.name.endswith(".json") and not f.name.endswith(".traj.json") and _in_completions(f):
                    completions.setdefault(f.parent, []).append(f)
                else:
                    seen.add(f)
                    out.append(InputFile(f))
            elif not f.name.endswith((".md", ".yaml", ".yml", ".txt", ".log")):
                ignored.append(str(f))
        for d, group in sorted(completions.items()):
            last = openhands.pick_last_completion(group)
            seen.update(group)
            out.append(InputFile(last, superseded=tuple(str(g) for g in group if g != last)))
    hub = [f for f in out if isinstance(f.path, str)]
    out = sorted((f for f in out if f not in hub), key=lambda f: str(f.path)) + hub
    return out, ignored


def _load_json(path: Path) -> object:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TrajectoryFormatError(f"{path}: file too large ({size} bytes)")
    try:
        return json.loads(path.read_bytes())
    except UnicodeDecodeError:
        raise TrajectoryFormatError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise TrajectoryFormatError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    except RecursionError:
        raise TrajectoryFormatError(f"{path}: JSON nested too deeply") from None


def detect_format(obj: object) -> str | None:
    """Format of a loaded JSON document (a whole .traj/.json file or one jsonl row), None if unknown."""
    if minisweagent.looks_like(obj):
        return "minisweagent"
    if openhands.looks_like_output_row(obj):
        return "openhands_output"
    if sweagent.looks_like(obj):
        return "sweagent"
    if openhands.looks_like_completion(obj):
        return "openhands_completions"
    if swesmith.looks_like_row(obj):
        return "swesmith_sft"
    return None


def _accepts(requested: str, detected: str) -> bool:
    return requested in ("auto", detected) or (requested == "sweagent" and detected.startswith("sweagent")) or (
        requested.startswith("sweagent") and detected == "sweagent")


def _keys(obj: object) -> str:
    return ", ".join(sorted(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__


@dataclass(frozen=True)
class RowOptions:
    """How dataset rows are read: ``success_field`` (see datasets.row_success); ``dataset``/``split`` override what
    the path names (the hub id and split of the rows, for dataset-specific success rules)."""
    success_field: str = "auto"
    dataset: str | None = None
    split: str | None = None


def iter_file(path: str | Path, fmt: str = "auto", *, rows: RowOptions | None = None,
              skip: frozenset[str] | set[str] = frozenset()
              ) -> Iterator[tuple[str, Trajectory | TrajectoryFormatError]]:
    """Read one input: yields (unit key, Trajectory or the error of that unit).

    Unit keys are ``<path>`` for a JSON trajectory file, ``<path>:<n>`` for row n (1-based) of a jsonl / parquet /
    arrow / JSON-array dataset file and ``hf://<spec>:<n>`` for a --dataset row, so one bad row skips only that row.
    A file that cannot be read at all yields one error under the key ``<path>``. Units in ``skip`` (already
    collected) are not parsed and not yielded.
    """
    if fmt not in FORMAT_CHOICES:
        raise ValueError(f"format: unknown format {fmt!r} (choose from {', '.join(FORMAT_CHOICES)})")
    rows = rows or RowOptions()
    key = str(path)
    if key.startswith(HUB_PREFIX):
        spec = key[len(HUB_PREFIX):]
        try:
            hub_id, _, split = parse_dataset_spec(spec)
        except DatasetUnavailable as e:
            yield key, TrajectoryFormatError(str(e))
            return
        ctx = RowOptions(rows.success_field, rows.dataset or hub_id, rows.split or split or "train")
        yield from _iter_rows(key, key, iter_hub(spec), fmt, ctx, skip, dataset_file=True)
        return
    path = Path(path)
    try:
        if path.name.endswith(".jsonl"):
            yield from _iter_rows(key, key, _jsonl_rows(path), fmt, _ctx(path, rows), skip, dataset_file=False)
            return
        if is_row_file(path) or (path.name.endswith(".json") and not _in_completions(path) and json_array_file(path)):
            size = path.stat().st_size
            if not size:
                raise TrajectoryFormatError(f"{path}: empty file")
            yield from _iter_rows(key, key, iter_row_file(path), fmt, _ctx(path, rows), skip, dataset_file=True)
            return
        if key in skip:
            return
        obj = _load_json(path)
        detected = detect_format(obj)
        if detected is None:
            raise TrajectoryFormatError(f"{path}: unrecognized trajectory format (top-level keys: {_keys(obj)})")
        if not _accepts(fmt, detected):
            raise TrajectoryFormatError(f"{path}: detected format {detected}, but --format {fmt} was requested")
        assert isinstance(obj, dict)
        if detected == "minisweagent":
            trajs = list(minisweagent.read(path, obj))
        elif detected == "sweagent":
            trajs = list(sweagent.read(path, obj))
            if fmt not in ("auto", "sweagent") and trajs and trajs[0].format != fmt:
                raise TrajectoryFormatError(f"{path}: detected format {trajs[0].format}, but --format {fmt} "
                                            f"was requested")
        elif detected == "openhands_completions":
            trajs = list(openhands.read_completion(path, obj))
        else:
            raise TrajectoryFormatError(f"{path}: a {detected} row in a non-.jsonl file")
        for t in trajs:
            yield key, t
    except TrajectoryFormatError as e:
        yield key, e
    except DatasetUnavailable as e:
        yield key, TrajectoryFormatError(str(e))
    except OSError as e:
        yield key, TrajectoryFormatError(f"{path}: cannot read ({e.strerror or e})")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # defensive: never crash on input
        yield key, TrajectoryFormatError(f"{path}: malformed content ({type(e).__name__}: {e})"[:500])


def _ctx(path: Path, rows: RowOptions) -> RowOptions:
    return RowOptions(rows.success_field, rows.dataset or dataset_of_path(path.parent),
                      rows.split or split_of_path(path) or _split_dir(path))


def _split_dir(path: Path) -> str | None:
    """``.../<split>/<file>`` layouts (e.g. ``filtered_reward1/000.parquet``): a known success split name only."""
    return path.parent.name if path.parent.name.lower() in SUCCESS_SPLITS else None


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any] | TrajectoryFormatError | None]:
    """Rows of a jsonl file; None for blank lines (they keep the line numbering)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES and not _ROW_STREAMING:
        raise TrajectoryFormatError(f"{path}: file too large ({size} bytes)")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                yield None
                continue
            try:
                yield json.loads(raw)
            except UnicodeDecodeError:
                yield TrajectoryFormatError(f"{path}:{lineno}: not UTF-8 text")
            except json.JSONDecodeError as e:
                yield TrajectoryFormatError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})")
            except RecursionError:
                yield TrajectoryFormatError(f"{path}:{lineno}: JSON nested too deeply")


_ROW_STREAMING = True   # jsonl files are read line by line, so their size is not limited


def _iter_rows(path_key: str, source: str, rows_it: Iterator[Any], fmt: str, ctx: RowOptions, skip: Any, *,
               dataset_file: bool) -> Iterator[tuple[str, Trajectory | TrajectoryFormatError]]:
    try:
        for n, row in enumerate(rows_it, 1):
            if row is None:
                continue
            key = f"{path_key}:{n}"
            if key in skip:
                continue
            if isinstance(row, TrajectoryFormatError):
                yield key, row
                continue
            try:
                yield key, read_dataset_row(row, key, fmt, ctx, source=source, row_number=n,
                                            dataset_file=dataset_file)
            except TrajectoryFormatError as e:
                yield key, e
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
                yield key, TrajectoryFormatError(f"{key}: malformed content ({type(e).__name__}: {e})"[:500])
    except TrajectoryFormatError as e:           # the file itself (not one row) cannot be read further
        yield path_key, e


def read_dataset_row(row: Any, key: str, fmt: str = "auto", ctx: RowOptions | None = None, *, source: str = "",
                     row_number: int = 0, dataset_file: bool = True) -> Trajectory:
    """One dataset row -> Trajectory (raises TrajectoryFormatError); success from the row's own field."""
    ctx = ctx or RowOptions()
    if not isinstance(row, dict):
        raise TrajectoryFormatError(f"{key}: expected a row object, got {type(row).__name__}")
    row = decode_row(row)
    if openhands.looks_like_output_row(row):
        detected: str | None = "openhands_output"
    else:
        detected = chat_rows.detect_row(row)
    if fmt in ROW_FORMATS and fmt != detected:
        detected = fmt                               # --format forces the row format
    if detected is None:
        raise TrajectoryFormatError(f"{key}: unrecognized {'jsonl ' if not dataset_file else ''}row (keys: "
                                    f"{_keys(row)})")
    if not _accepts(fmt, detected):
        raise TrajectoryFormatError(f"{key}: detected format {detected}, but --format {fmt} was requested")
    path = Path(source.rsplit(":", 1)[0]) if source and not source.startswith(HUB_PREFIX) else Path(source or ".")
    meta = {"row": row_number, "dataset": ctx.dataset, "split": ctx.split, "dataset_file": dataset_file}
    if detected == "openhands_output":
        t = openhands.read_output_row(path, row_number, row)
        t.meta.update(meta)
    elif detected == "swesmith_sft":
        t = swesmith.read_row(path, row_number, row, meta)
        t.source = key
    else:
        t = chat_rows.read_row(row, key, detected, source=key, meta=meta)
    success, fld = row_success(row, split=ctx.split, dataset=ctx.dataset, field=ctx.success_field)
    if success is not None:
        t.resolved = success
    elif ctx.success_field == "none":
        t.resolved = None
    if fld is None and t.resolved is not None and detected in ("openhands_output", "swesmith_sft"):
        fld = "evaluation report"
    t.meta["success_field"] = fld
    t.meta["has_success_column"] = has_success_column(row)
    return t


def read_trajectories(path: str | Path, fmt: str = "auto") -> list[Trajectory]:
    """All trajectories of one file; raises TrajectoryFormatError on the first bad unit."""
    out = []
    for _, item in iter_file(path, fmt):
        if isinstance(item, TrajectoryFormatError):
            raise item
        out.append(item)
    return out
