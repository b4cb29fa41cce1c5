"""Checks of a training run's inputs before anything heavy loads (and in ``swe-srl train --dry-run``).

``check_inputs(s)`` validates the model argument (``swe_srl.models.check_model``: a local directory must hold a
model, a path-like name must exist; aliases and hub ids pass without network), ``init_from``, and the data files
(``data``, ``eval_data``): every line is decoded and parsed as a step record (an RLVR problem file: as a JSON
object), the first bad line named — ``error: <file>:<line>: data: <reason>``. Then the task that serves the data
builds its reward functions for the method, so a run the task cannot serve fails here too. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import SweSrlError
from ..core.schema import StepRecord, StepRecordError
from ..core.task import STEPS_FILE
from ..models import check_model
from ..tasks import task_for_data
from .config import TrainSettings
from .data import reward_options


class InputError(SweSrlError, ValueError):
    """A training input (model, init_from, data) that cannot be used. ``file``/``line``/``field`` name it."""


def data_path(data: str) -> Path:
    p = Path(data)
    if p.is_dir():
        p = p / STEPS_FILE
    if not p.is_file():
        raise InputError(file=p, field="data", reason="no such file" if not p.exists() else "not a file")
    return p


def check_data_file(path: Path, field: str = "data") -> int:
    """Parse every line of a training data file; the first bad one raises ``InputError`` naming file and line.
    Returns the number of records."""
    n = 0
    steps = None                             # decided by the first record: step records or {problem, answer} rows
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(file=path, line=i, field=field, reason=f"not UTF-8 text (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                d = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise InputError(file=path, line=i, field=field, reason=f"not valid JSON ({e.msg}, column "
                                                                         f"{e.colno})") from None
            if not isinstance(d, dict):
                raise InputError(file=path, line=i, field=field, reason=f"expected a JSON object, got "
                                                                         f"{type(d).__name__}")
            if steps is None:
                steps = "schema_version" in d and "target" in d
            if steps:
                try:
                    StepRecord.from_dict(d)
                except (StepRecordError, TypeError, KeyError, ValueError) as e:
                    raise InputError(file=path, line=i, field=field, reason=f"not a step record: {e}") from None
            n += 1
    if n == 0:
        raise InputError(file=path, field=field, reason="no records (empty file)")
    return n


def check_inputs(s: TrainSettings, *, model: bool = True, allow_missing_data: bool = False) -> list[str]:
    """Everything a run needs that can be checked before a model loads. Raises ``InputError`` /
    ``TaskError`` (both ``SweSrlError``) with one line. ``allow_missing_data`` (``--dry-run``): a data file that
    does not exist yet (a config for data still to be collected) is a returned warning, not an error; a file that
    exists is checked in full either way. Returns the warnings."""
    warnings: list[str] = []
    if model:                                # False: the caller passes a loaded model object
        check_model(str(s.model), "model")
        if s.init_from:
            check_model(str(s.init_from), "init_from")
    for key in ("data", "eval_data"):
        value = getattr(s, key, None)
        if not value:
            continue
        try:
            path = data_path(str(value))
        except InputError as e:
            if allow_missing_data and not Path(value).exists():
                warnings.append(f"{key}: {value}: no such file yet (a real run stops here)")
                continue
            raise InputError(file=e.file, field=key, reason=e.reason) from None
        check_data_file(path, key)
        if key == "data":
            task_for_data(path).reward_funcs(s.method, reward_options(s))  # TaskError: a method it cannot serve
    return warnings


__all__ = ["InputError", "check_data_file", "check_inputs", "data_path"]
