"""SWE-bench instances: Verified / Lite from the HF hub, or a local JSON / JSONL file; oracle file selection."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable
from ..core.errors import SweSrlError
from ..core.io import read_json_rows

HUB_DATASETS = {
    "verified": "SWE-bench/SWE-bench_Verified",
    "lite": "SWE-bench/SWE-bench_Lite",
    "full": "SWE-bench/SWE-bench",
}

_DIFF_HEADER = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


class DatasetError(SweSrlError, RuntimeError):
    pass


def _as_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = v.strip()
        return json.loads(v) if v.startswith("[") else ([v] if v else [])
    return list(v or [])


def normalize_instance(row: dict[str, Any]) -> dict[str, Any]:
    """FAIL_TO_PASS / PASS_TO_PASS as lists (the hub stores JSON strings)."""
    row = dict(row)
    for k in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        if k in row:
            row[k] = _as_list(row[k])
    return row


#: the field every SWE-bench instance must have (the others are checked where they are used, per instance)
REQUIRED_FIELDS = ("instance_id",)


def _check_row(p: Path, line: int | None, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DatasetError(file=p, line=line, field="--dataset",
                           reason=f"expected a JSON object (one SWE-bench instance), got {type(row).__name__}")
    missing = [k for k in REQUIRED_FIELDS if not isinstance(row.get(k), str) or not row.get(k)]
    if missing:
        raise DatasetError(file=p, line=line, field="--dataset",
                           reason=f"not a SWE-bench instance: missing {', '.join(missing)}")
    try:
        return normalize_instance(row)
    except (json.JSONDecodeError, TypeError) as e:
        raise DatasetError(file=p, line=line, field="--dataset",
                           reason=f"FAIL_TO_PASS/PASS_TO_PASS: not a list ({e})") from None


def read_local(path: str | Path) -> list[dict[str, Any]]:
    """A local SWE-bench file (a JSON array/object or JSONL), every row checked; the first bad one raises
    ``DatasetError`` naming file and line (``error: <file>:<line>: --dataset: <reason>``)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(file=p, field="--dataset", reason="no such file")
    if not p.is_file():
        raise DatasetError(file=p, field="--dataset", reason="not a file")
    rows = []
    for line, value in read_json_rows(p, error=DatasetError, field="--dataset"):
        if line is None:            # a .json document: an array of rows or one row
            rows += [_check_row(p, None, r) for r in (value if isinstance(value, list) else [value])]
        else:
            rows.append(_check_row(p, line, value))
    if not rows:
        raise DatasetError(file=p, field="--dataset", reason="no instances (empty file)")
    return rows


def load_hub(split: str) -> list[dict[str, Any]]:
    name = HUB_DATASETS.get(split)
    if name is None:
        raise DatasetError(f"--split: expected one of {sorted(HUB_DATASETS)}, got {split!r}")
    try:
        from datasets import load_dataset

        ds = load_dataset(name, split="test")
    except Exception as e:  # offline, hub down, missing package
        raise DatasetError(
            f"could not load {name} from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}). "
            f"Offline? Pass a local copy with --dataset PATH.jsonl (one SWE-bench row per line)."
        ) from None
    return [normalize_instance(dict(r)) for r in ds]


def load_instances(*, split: str = "verified", dataset: str | Path | None = None,
                   instance_ids: Iterable[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    rows = read_local(dataset) if dataset else load_hub(split)
    if instance_ids:
        wanted = [i.strip() for i in instance_ids if i.strip()]
        by_id = {r["instance_id"]: r for r in rows}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise DatasetError(f"--instances: not in the dataset: {', '.join(missing)}")
        rows = [by_id[i] for i in wanted]
    if limit is not None:
        rows = rows[:limit]
    return rows


def patch_files(patch: str) -> list[tuple[str, str]]:
    """(path, kind) for every file of a git patch; kind is 'added', 'removed' or 'modified'."""
    from unidiff import PatchSet

    out = []
    for f in PatchSet(patch):
        kind = "added" if f.is_added_file else "removed" if f.is_removed_file else "modified"
        path = f.target_file[2:] if kind != "removed" else f.source_file[2:]
        out.append((path, kind))
    return out


def oracle_files(instance: dict[str, Any]) -> list[str]:
    """The `.py` files that the gold patch modifies (files it creates or deletes excluded), in patch order —
    SWE-RL's oracle-file definition for SWE-bench Verified."""
    return [p for p, kind in patch_files(instance["patch"]) if kind == "modified" and p.endswith(".py")]
