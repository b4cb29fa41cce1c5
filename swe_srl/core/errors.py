"""The project's one error base class and the one-line error format of every command.

Every error type of the project (``ConfigError``, ``CollectError``, ``TrajectoryFormatError``, ``DatasetError``, …)
subclasses :class:`SweSrlError` *and* keeps its historical base (``ValueError``/``RuntimeError``), so code that
catches ``ValueError`` still works. The CLI (``swe_srl.cli``) catches ``SweSrlError`` plus the expected OS / JSON /
YAML / Unicode errors and prints :func:`one_line` of them: ``error: <file>[:<line>]: <field>: <reason>`` (the parts
that are known), no traceback unless ``--debug`` or ``SWE_SRL_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

#: exit code of a command that failed on its input or configuration
EXIT_ERROR = 2
#: exit code of a batch job that ran but produced nothing usable (every unit bad or skipped)
EXIT_NOTHING_USABLE = 3


def compose(file: Any = None, line: int | None = None, field: str | None = None, reason: str | None = None) -> str:
    """``<file>[:<line>]: <field>: <reason>`` with the parts that are given."""
    head = ""
    if file is not None and str(file) != "":
        head = str(file) + (f":{line}" if line is not None else "")
    parts = [p for p in (head, field, reason) if p]
    return ": ".join(parts)


class SweSrlError(Exception):
    """Base of every project error. ``SweSrlError("message")`` or ``SweSrlError(file=…, line=…, field=…,
    reason=…)`` (the message is then composed from the parts). ``str(e)`` is the full message; :meth:`one_line`
    the CLI line. The parts are kept as attributes (``None`` when unknown); pickling keeps the message."""

    def __init__(self, message: Any = None, *args: Any, file: Any = None, line: int | None = None,
                 field: str | None = None, reason: str | None = None) -> None:
        if message is None:
            message = compose(file, line, field, reason)
        super().__init__(message, *args)
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        # a subclass may own ``reason`` (EditError sets it after this); only set it when it is not there yet
        if reason is not None or not hasattr(self, "reason"):
            self.reason = reason

    def one_line(self) -> str:
        return "error: " + first_line(str(self) or type(self).__name__)


def first_line(text: str) -> str:
    for ln in str(text).splitlines():
        if ln.strip():
            return ln.strip()
    return ""


#: the exceptions, besides SweSrlError, that the CLI turns into one line (expected on bad input / a bad machine)
def expected_errors() -> tuple[type[BaseException], ...]:
    return (SweSrlError, OSError, json.JSONDecodeError, UnicodeDecodeError, yaml.YAMLError)


def one_line(err: BaseException) -> str:
    """The one-line ``error: …`` text of any expected error (the CLI's format)."""
    if isinstance(err, SweSrlError):
        return err.one_line()
    if isinstance(err, UnicodeDecodeError):
        return "error: " + compose(reason=f"not UTF-8 text ({err.reason} at byte {err.start})")
    if isinstance(err, json.JSONDecodeError):
        return "error: " + compose(line=None, reason=f"invalid JSON at line {err.lineno} column {err.colno}: "
                                                     f"{err.msg}")
    if isinstance(err, OSError):
        name = getattr(err, "filename", None)
        reason = err.strerror or first_line(str(err)) or type(err).__name__
        if getattr(err, "filename2", None):
            reason += f" (-> {err.filename2})"
        return "error: " + compose(file=os.fsdecode(name) if name is not None else None, reason=reason)
    mark = getattr(err, "problem_mark", None)         # yaml.MarkedYAMLError
    if mark is not None:
        problem = getattr(err, "problem", None) or first_line(str(err))
        return "error: " + compose(file=getattr(mark, "name", None), line=mark.line + 1,
                                   reason=f"invalid YAML: {problem}")
    return "error: " + (first_line(str(err)) or type(err).__name__)


def debug_enabled() -> bool:
    return os.environ.get("SWE_SRL_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class NothingUsable(SweSrlError):
    """A batch job whose every input was bad or skipped: nothing usable was produced (exit code 3)."""

    exit_code = EXIT_NOTHING_USABLE
