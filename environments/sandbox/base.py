"""The Sandbox protocol shared by every backend, and helpers the backends share."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from swe_srl.core.errors import SweSrlError

LABEL = "swe-srl.sandbox"          # every container we start carries LABEL=1
DEFAULT_WORKDIR = "/testbed"


class SandboxError(SweSrlError, RuntimeError):
    """Infrastructure failure of a sandbox (start, copy, engine errors), as opposed to a failing command."""


@dataclass
class CommandResult:
    exit_code: int
    output: str          # stdout and stderr through ONE pipe, in the order the program wrote them (as 2>&1)
    timed_out: bool = False
    killed: bool = False  # the sandbox killed the command's processes for another reason than its timeout
    reason: str = ""      # why (e.g. "the pids limit (512) was reached ...: fork bomb?")


@runtime_checkable
class Sandbox(Protocol):
    workdir: str

    def start(self) -> "Sandbox": ...
    def run(self, command: str, timeout: float = 60, workdir: str | None = None) -> CommandResult: ...
    def read_file(self, path: str) -> str: ...
    def write_file(self, path: str, content: str) -> None: ...
    def diff(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Sandbox": ...
    def __exit__(self, *exc) -> None: ...


# git diff of the working tree against the base commit, new untracked files included, without touching the real
# index: a throw-away index is filled from the base tree plus `git add -A`.
def diff_script(base_ref: str) -> str:
    b = shlex.quote(base_ref)
    return (
        "export GIT_INDEX_FILE=\"$(mktemp -u /tmp/.swe-srl-index.XXXXXX)\"; "
        f"git read-tree {b} && git add -A . >/dev/null 2>&1; "
        f"git -c core.quotepath=false diff --cached --no-color --no-ext-diff {b}; rc=$?; "
        "rm -f \"$GIT_INDEX_FILE\"; exit $rc"
    )


class SandboxBase:
    """Context manager and path helpers; subclasses implement start/run/read_file/write_file/close."""

    workdir: str = DEFAULT_WORKDIR
    base_ref: str | None = None

    def abspath(self, path: str) -> str:
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.workdir, path))

    def diff(self) -> str:
        if self.base_ref is None:
            raise SandboxError("diff(): no base commit (is the workdir a git repository?)")
        res = self.run(diff_script(self.base_ref), timeout=120)
        if res.exit_code != 0:
            raise SandboxError(f"git diff failed ({res.exit_code}): {res.output[-500:]}")
        return res.output

    def _record_base(self, base_commit: str | None) -> None:
        res = self.run("git rev-parse HEAD", timeout=60)
        if res.exit_code == 0:
            self.base_ref = res.output.strip().splitlines()[-1]
        elif base_commit:
            raise SandboxError(f"cannot resolve base commit {base_commit}: {res.output[-300:]}")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
