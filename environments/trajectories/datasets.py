"""Trajectory *datasets* as researchers download them: row files and Hugging Face hub ids.

Row files (``--trajectories``): ``.parquet`` (pyarrow, batch by batch), ``.arrow`` (Arrow IPC file or stream, the
``datasets`` cache layout; record batch by record batch), ``.jsonl`` (line by line) and ``.json`` holding a JSON array of
row objects (ADP ``sample_raw.json``; decoded one row at a time from a buffered read). Nothing reads a whole file into
memory: a 60 GB set streams with memory bounded by one batch / one row.

Hub ids (``--dataset HF_ID[:config][@split]``): ``datasets.load_dataset(id, config, split=split, streaming=True)``;
when the hub cannot be reached the caller gets one line (DatasetUnavailable).

Rows are plain dicts. ``decode_row`` decodes the structural columns that many sets store as JSON strings
(``messages``, ``trajectory``, ``tools``, ``test_result`` ...). ``row_success`` reads each dataset's own success
field (``resolved`` bool/int, ``target``, ``verified``, ``reward == 1``, ``fail`` inverted,
``test_result.report.resolved``, a success split name, or a dataset documented as all successful).
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from ._util import TrajectoryFormatError
from swe_srl.core.errors import SweSrlError

ROW_FILE_SUFFIXES = (".parquet", ".arrow")
#: columns that hold structure and are often stored as JSON text
JSON_COLUMNS = ("messages", "trajectory", "conversations", "conversation", "tools", "test_result", "info",
                "metadata", "instance", "report", "eval_result")
#: split names that mean "every row in it succeeded"
SUCCESS_SPLITS = frozenset({"filtered_reward1", "resolved", "success", "successful", "passed", "solved"})
#: success columns in the order they are looked for (name, kind)
SUCCESS_FIELDS = (("resolved", "bool"), ("target", "bool"), ("verified", "bool"), ("success", "bool"),
                  ("reward", "reward"), ("fail", "inverted"))
#: datasets whose card documents every row as successful (no success column): lower-cased hub id -> note
ALL_SUCCESSFUL = {
    "r2e-gym/r2egym-sft-trajectories": "R2E-Gym SFT set: successful trajectories only (dataset card)",
    "swe-bench/swe-smith-trajectories": "SWE-smith 5k layout without a resolved column: the resolved trajectories "
                                        "SWE-agent-LM-32B was trained on",
}
_CHUNK = 1 << 20


class DatasetUnavailable(SweSrlError, RuntimeError):
    """A --dataset that cannot be loaded (hub unreachable, unknown id, datasets missing). One line."""


# -- row files ---------------------------------------------------------------------------------------------------
def is_row_file(path: Path) -> bool:
    return path.name.endswith(ROW_FILE_SUFFIXES)


def json_array_file(path: Path) -> bool:
    """A ``.json`` file whose first non-blank byte is ``[`` (a JSON array of rows)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return False
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return head.startswith(b"[")


def iter_parquet(path: Path, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError with a multi-line text
        raise TrajectoryFormatError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    for batch in pf.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


def iter_arrow(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path), "r")
    except Exception as e:  # noqa: BLE001
        raise TrajectoryFormatError(f"{path}: cannot open ({_first_line(e)})") from None
    with source:
        try:
            reader: Any = pa.ipc.open_file(source)
            batches: Iterator[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid as e:
                raise TrajectoryFormatError(f"{path}: not an Arrow IPC file or stream ({_first_line(e)})") from None
            batches = iter(reader)
        for batch in batches:
            yield from batch.to_pylist()


def iter_json_array(path: Path, chunk: int = _CHUNK) -> Iterator[dict[str, Any] | TrajectoryFormatError]:
    """The elements of a top-level JSON array, one at a time (memory: one element + one read chunk)."""
    dec = json.JSONDecoder()
    with path.open("rb") as f:
        buf = ""
        pos = 0
        eof = False
        pending = b""

        def more() -> bool:
            nonlocal buf, pos, eof, pending
            if eof:
                return False
            data = f.read(chunk)
            if not data:
                eof = True
                if pending:
                    raise TrajectoryFormatError(f"{path}: not UTF-8 text")
                return False
            data = pending + data
            try:
                text = data.decode("utf-8")
                pending = b""
            except UnicodeDecodeError as e:
                if e.start < len(data) - 4:
                    raise TrajectoryFormatError(f"{path}: not UTF-8 text") from None
                text, pending = data[:e.start].decode("utf-8"), data[e.start:]
            buf = buf[pos:] + text
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return

        more()
        if buf.startswith("\ufeff"):
            pos = 1
        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise TrajectoryFormatError(f"{path}: not a JSON array of rows")
        pos += 1
        index = 0
        while True:
            skip_ws()
            if pos >= len(buf):
                raise TrajectoryFormatError(f"{path}: JSON array not closed (truncated file?)")
            if buf[pos] == "]":
                return
            if index and buf[pos] == ",":
                pos += 1
                skip_ws()
            while True:
                try:
                    obj, end = dec.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if not more():
                        raise TrajectoryFormatError(f"{path}: row {index + 1}: invalid JSON ({e.msg})") from None
                except RecursionError:
                    raise TrajectoryFormatError(f"{path}: row {index + 1}: JSON nested too deeply") from None
            pos = end
            index += 1
            yield obj if isinstance(obj, dict) else TrajectoryFormatError(
                f"{path}: row {index}: expected an object, got {type(obj).__name__}")


def iter_row_file(path: Path) -> Iterator[dict[str, Any] | TrajectoryFormatError]:
    """Rows of a .parquet / .arrow / .json-array file, in file order."""
    name = path.name
    if name.endswith(".parquet"):
        yield from iter_parquet(path)
    elif name.endswith(".arrow"):
        yield from iter_arrow(path)
    else:
        yield from iter_json_array(path)


def split_of_path(path: Path) -> str | None:
    """The split name in the HF file layout: ``data/<split>-00000-of-00004.parquet`` or ``<split>/...``."""
    m = re.match(r"^([A-Za-z0-9_.]+?)(?:-\d{5}-of-\d{5})?\.(?:parquet|arrow|jsonl|json)$", path.name)
    if m and re.search(r"-\d{5}-of-\d{5}\.", path.name):
        return m.group(1)
    return None


def dataset_of_path(path: Path) -> str | None:
    """A hub id named by the path: ``org__name`` folders (ADP, this repo's shared data) or the hub cache's
    ``datasets--org--name``."""
    for part in reversed(path.parts):
        m = re.fullmatch(r"datasets--([^/]+?)--(.+)", part) or re.fullmatch(r"([A-Za-z0-9][\w.-]*)__([\w.-]+)", part)
        if m:
            return f"{m.group(1)}/{m.group(2)}"
    return None


# -- hub -----------------------------------------------------------------------------------------------------------
def parse_dataset_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``HF_ID[:config][@split]`` -> (id, config, split)."""
    s = spec.strip()
    split = None
    if "@" in s:
        s, split = s.rsplit("@", 1)
        split = split or None
    config = None
    if ":" in s:
        s, config = s.split(":", 1)
        config = config or None
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", s):
        raise DatasetUnavailable(f"--dataset {spec}: expected HF_ID[:config][@split], e.g. "
                                 f"SWE-bench/SWE-smith-trajectories@tool")
    return s, config, split


def iter_hub(spec: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset, streamed. Raises DatasetUnavailable (one line) when it cannot be opened."""
    hub_id, config, split = parse_dataset_spec(spec)
    try:
        import datasets
    except ImportError:
        raise DatasetUnavailable(f"--dataset {spec}: the 'datasets' package is not installed") from None
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE",
                                                                                  "HF_DATASETS_OFFLINE"))
    if not offline:
        why = hub_unreachable()
        if why:
            raise DatasetUnavailable(f"--dataset {spec}: the Hugging Face hub cannot be reached ({why}); download "
                                     f"its files and pass them with --trajectories (or set HF_HUB_OFFLINE=1 to "
                                     f"read a local datasets cache)")
    try:
        ds = datasets.load_dataset(hub_id, config, split=split or "train", streaming=True)
        it = iter(ds)
        first = next(it, None)
    except Exception as e:  # noqa: BLE001 - hub/network/unknown id: all one usage error
        raise DatasetUnavailable(f"--dataset {spec}: cannot load from the Hugging Face hub ({type(e).__name__}: "
                                 f"{_first_line(e)[:200]}); download its files and pass them with --trajectories")
    if first is None:
        return
    yield first
    yield from it


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub endpoint cannot be reached (DNS / TCP within ``timeout``), None when it can. Checked first so an
    offline machine gets its one-line error at once instead of after the client's retries."""
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    u = urlparse(url)
    host = u.hostname or "huggingface.co"
    port = u.port or (443 if u.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port}: {e.strerror or type(e).__name__}"


# -- row content -----------------------------------------------------------------------------------------------
def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with JSON-string structural columns decoded (other columns untouched)."""
    out = None
    for k in JSON_COLUMNS:
        v = row.get(k)
        if isinstance(v, str) and v[:1] in ("[", "{"):
            try:
                dec = json.loads(v)
            except (json.JSONDecodeError, RecursionError):
                continue
            if out is None:
                out = dict(row)
            out[k] = dec
    return out if out is not None else row


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    return None


def row_success(row: dict[str, Any], *, split: str | None = None, dataset: str | None = None,
                field: str = "auto") -> tuple[bool | None, str | None]:
    """(success, the field it came from) of one row; (None, None) when the row carries no signal.

    ``field``: ``auto`` (the dataset's own column, then a success split, then a dataset documented as all
    successful), a column name (``!name`` = inverted, e.g. ``!fail``), ``all`` (every row succeeded) or ``none``.
    """
    if field == "none":
        return None, None
    if field == "all":
        return True, "all"
    if field != "auto":
        inv = field.startswith("!")
        name = field.lstrip("!")
        cur: Any = row
        for part in name.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        b = (cur >= 1.0 - 1e-9) if isinstance(cur, float) and not isinstance(cur, bool) else _as_bool(cur)
        return (None if b is None else (not b if inv else b)), field
    for name, kind in SUCCESS_FIELDS:
        if name not in row or row[name] is None:
            continue
        v = row[name]
        if kind == "reward":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v) >= 1.0 - 1e-9, "reward"
            continue
        b = _as_bool(v)
        if b is not None:
            return (not b if kind == "inverted" else b), name
    tr = row.get("test_result")
    if isinstance(tr, dict) and isinstance(tr.get("report"), dict):
        b = _as_bool(tr["report"].get("resolved"))
        if b is not None:
            return b, "test_result.report.resolved"
    if split and split.lower() in SUCCESS_SPLITS:
        return True, f"split:{split}"
    if dataset and dataset.lower() in ALL_SUCCESSFUL:
        return True, f"dataset:{dataset} (all successful)"
    return None, None


def has_success_column(row: dict[str, Any]) -> bool:
    """Whether the row carries one of the dataset success columns (``resolved``, ``target``, ``reward`` ...)."""
    return any(row.get(n) is not None for n, _ in SUCCESS_FIELDS)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
