"""Train / validation split of SWE step data, by instance (paper §5.3: 30 held-out full trajectories -> 650 steps).

After ``collect_swe`` has written every unit, ``apply_swe_splits`` assigns each trajectory a split and writes it into
every record's ``meta["split"]``:

  val_size None (auto)  30 trajectories when there are at least 300 (the paper), else 10% rounded, at least 1 when
                        there are at least 2 (a single trajectory stays train)
  val_size N            N trajectories (at most all but one instance's)

Instances are drawn in a seeded order and all trajectories of a drawn instance go to validation together (until at
least val_size trajectories are there), so no instance is shared between train and validation. ``test_instances``
(a file of instance ids, one per line or a JSON list; ``#`` comments) is an exclusion list: trajectories of those
instances are dropped (ledger reason ``test_instance``), so an evaluation set never leaks into training.

The store's ledger records byte offsets of steps.jsonl, so the records are rewritten through a fresh ``StepStore``
(same units, same order, new offsets) in ``.split.tmp`` and swapped in; a ``.split.swap`` marker makes the swap
restartable (``finish_pending_swap`` completes it before the store is opened again). The result is a function of
the collected set and the seed: a resumed collection re-derives the same split for the same trajectories.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from swe_srl.core.io import read_log, write_json_atomic
from swe_srl.core.schema import StepRecord
from swe_srl.core.store import LEDGER_FILE, MANIFEST_FILE, STEPS_FILE, StepStore
from swe_srl.core.errors import SweSrlError

PAPER_VAL_TRAJECTORIES = 30
PAPER_MIN_TRAJECTORIES = 300
TMP_DIR = ".split.tmp"
SWAP_MARKER = ".split.swap"


class SplitError(SweSrlError, ValueError):
    """A bad split request (one line, names the option)."""


@dataclass
class SplitOptions:
    val_size: int | None = None         # None = auto (see module doc)
    seed: int = 0
    test_instances: str | None = None   # file of instance ids to exclude

    def __post_init__(self) -> None:        # usage errors before anything is collected
        if self.val_size is not None and self.val_size < 0:
            raise SplitError(f"--val-size: must be >= 0, got {self.val_size}")
        if self.test_instances is not None:
            read_ids(self.test_instances)


def val_trajectories(n_trajectories: int, val_size: int | None) -> int:
    """How many trajectories go to validation."""
    if val_size is not None:
        if val_size < 0:
            raise SplitError(f"--val-size: must be >= 0, got {val_size}")
        return val_size
    if n_trajectories >= PAPER_MIN_TRAJECTORIES:
        return PAPER_VAL_TRAJECTORIES
    if n_trajectories >= 2:
        return max(1, round(0.1 * n_trajectories))
    return 0


def read_ids(path: str | Path) -> set[str]:
    p = Path(path)
    if not p.is_file():
        raise SplitError(f"--test-instances {p}: no such file")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return {str(x).strip() for x in json.loads(text) if str(x).strip()}
        except json.JSONDecodeError as e:
            raise SplitError(f"--test-instances {p}: invalid JSON list ({e.msg})") from None
    return {x.strip() for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")}


def choose_val(trajectories: dict[str, list[str]], n_val: int, seed: int) -> set[str]:
    """Validation instances: seeded order of instance ids, whole instances, until >= n_val trajectories; at least
    one instance always stays train."""
    instances = sorted(trajectories)
    random.Random(seed).shuffle(instances)
    val: set[str] = set()
    have = 0
    for iid in instances:
        if have >= n_val or len(val) + 1 >= len(instances):
            break
        val.add(iid)
        have += len(trajectories[iid])
    return val


def finish_pending_swap(out_dir: str | Path) -> None:
    """Complete a swap that a crash interrupted (called before the store is opened)."""
    out = Path(out_dir)
    marker, tmp = out / SWAP_MARKER, out / TMP_DIR
    if not marker.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    for name in (LEDGER_FILE, STEPS_FILE):
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    marker.unlink()
    shutil.rmtree(tmp, ignore_errors=True)


def _units(out: Path) -> list[tuple[dict[str, Any], int, int]]:
    """(ledger entry, start, end byte offsets of its records in steps.jsonl) in file order; nothing is loaded."""
    entries: dict[str, dict[str, Any]] = {}
    for e in read_log(out / LEDGER_FILE):
        if isinstance(e, dict) and "unit" in e:
            entries[e["unit"]] = e                   # last entry of a unit wins (as in StepStore)
    units, prev = [], 0
    for e in sorted(entries.values(), key=lambda e: int(e.get("end", 0))):
        end = int(e["end"]) if e.get("status") == "ok" else prev
        units.append((e, prev, end))
        prev = end
    return units


def _records(f: BinaryIO, start: int, end: int) -> list[StepRecord]:
    """The records of one unit (bytes start..end of steps.jsonl): memory holds one unit at a time."""
    f.seek(start)
    return [StepRecord.from_dict(json.loads(x)) for x in f.read(end - start).splitlines() if x.strip()]


def _first_instance(f: BinaryIO, start: int, end: int) -> str | None:
    if end <= start:
        return None
    f.seek(start)
    return json.loads(f.readline())["instance_id"]


def apply_swe_splits(out_dir: str | Path, options: SplitOptions | None = None,
                     manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assign and write the splits of a finished SWE collection; returns the manifest's ``split`` section (and
    writes ``manifest`` with it to manifest.json when given)."""
    opts = options or SplitOptions()
    out = Path(out_dir)
    finish_pending_swap(out)
    test_ids = read_ids(opts.test_instances) if opts.test_instances else set()
    units = _units(out)
    steps_path = out / STEPS_FILE
    if not steps_path.exists():
        steps_path.touch()
    with steps_path.open("rb") as f:
        first = {e["unit"]: _first_instance(f, start, end) for e, start, end in units}
        trajectories: dict[str, list[str]] = {}
        for e, _, _ in units:
            iid = first[e["unit"]]
            if iid is not None and iid not in test_ids:
                trajectories.setdefault(iid, []).append(e["unit"])
        n_traj = sum(len(v) for v in trajectories.values())
        n_val = val_trajectories(n_traj, opts.val_size)
        val = choose_val(trajectories, n_val, opts.seed)
        tmp = out / TMP_DIR
        shutil.rmtree(tmp, ignore_errors=True)
        counts = {"train_steps": 0, "val_steps": 0, "train_trajectories": 0, "val_trajectories": 0,
                  "test_instance_trajectories_dropped": 0}
        with StepStore(tmp, resume=False) as store:
            for e, start, end in units:
                info = {k: v for k, v in e.items() if k not in ("unit", "status", "n_steps", "end", "reason")}
                iid = first[e["unit"]]
                if e.get("status") != "ok":
                    store.skip(e["unit"], e.get("reason", "skipped"), **info)
                elif iid is not None and iid in test_ids:
                    store.skip(e["unit"], "test_instance", instance_id=iid)
                    counts["test_instance_trajectories_dropped"] += 1
                else:
                    recs = _records(f, start, end)
                    split = "val" if iid in val else "train"
                    for r in recs:
                        r.meta["split"] = split
                    store.commit(e["unit"], recs, **info)
                    counts[f"{split}_steps"] += len(recs)
                    counts[f"{split}_trajectories"] += 1 if recs else 0
    (out / SWAP_MARKER).write_text("swap .split.tmp into place\n")
    finish_pending_swap(out)
    section = {"by": "instance", "val_size_requested": opts.val_size if opts.val_size is not None else "auto",
            "val_trajectories_target": n_val, "seed": opts.seed, "val_instances": sorted(val),
            "test_instances_file": opts.test_instances, "test_instances_excluded": len(test_ids), **counts}
    if manifest is not None:
        manifest["split"] = section
        write_json_atomic(out / MANIFEST_FILE, manifest)
    return section
