"""LocalSandbox: a temporary copy of a host git repository + subprocess. NOT ISOLATED.

Commands run on the host, as the current user, with the host's network and tools: use it only for trusted
actions (expert trajectories in tests, quick local replays). The copy lives under a temporary directory, but the
sandbox presents it as ``workdir`` (default ``/testbed``): file paths under ``workdir`` are mapped to the copy, and
``run()`` rewrites ``workdir`` to the copy's path in commands and back in outputs (a textual, best-effort mapping).
As in DockerSandbox, a command's stdout and stderr share one pipe, so the output keeps the order they were written.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .base import DEFAULT_WORKDIR, CommandResult, SandboxBase, SandboxError


class LocalSandbox(SandboxBase):
    def __init__(self, repo_path: str | os.PathLike, base_commit: str | None = None, *,
                 workdir: str = DEFAULT_WORKDIR, env: dict[str, str] | None = None):
        self.repo_path = Path(repo_path)
        self.base_commit = base_commit
        self.workdir = posixpath.normpath(workdir)
        self.env = dict(env or {})
        self._tmp: str | None = None
        self.host_root: str | None = None
        self.base_ref = None

    def start(self) -> "LocalSandbox":
        if self._tmp is not None:
            return self
        if not self.repo_path.is_dir():
            raise SandboxError(f"repo_path {self.repo_path} is not a directory")
        self._tmp = tempfile.mkdtemp(prefix="swe-srl-local-")
        self.host_root = os.path.join(self._tmp, "repo")
        try:
            shutil.copytree(self.repo_path, self.host_root, symlinks=True)
            if self.base_commit:
                res = self.run(f"git -c advice.detachedHead=false checkout -q -f {self.base_commit}", timeout=300)
                if res.exit_code != 0:
                    raise SandboxError(f"checkout {self.base_commit} failed: {res.output[-300:]}")
            self._record_base(self.base_commit)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- path mapping ---------------------------------------------------------------------------------------------
    def host_path(self, path: str) -> str:
        p = self.abspath(path)
        if self.host_root is None:
            raise SandboxError("sandbox not started")
        if p == self.workdir or p.startswith(self.workdir.rstrip("/") + "/"):
            return self.host_root + p[len(self.workdir.rstrip("/")):]
        return p

    def _to_host(self, text: str) -> str:
        return text.replace(self.workdir, self.host_root) if self.workdir != self.host_root else text

    def _from_host(self, text: str) -> str:
        return text.replace(self.host_root, self.workdir) if self.workdir != self.host_root else text

    # -- commands ---------------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float = 60, workdir: str | None = None) -> CommandResult:
        if self.host_root is None:
            raise SandboxError("sandbox not started")
        cwd = self.host_path(workdir) if workdir else self.host_root
        env = {**os.environ, **self.env, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8"}
        proc = subprocess.Popen(["bash", "-c", self._to_host(command)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _ = proc.communicate()
            timed_out = True
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        text = self._from_host(out.decode("utf-8", errors="replace"))
        return CommandResult(124 if timed_out else proc.returncode, text, timed_out)

    def read_file(self, path: str) -> str:
        hp = self.host_path(path)
        if os.path.isdir(hp):
            raise IsADirectoryError(self.abspath(path))
        try:
            with open(hp, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            raise FileNotFoundError(self.abspath(path)) from None

    def write_file(self, path: str, content: str) -> None:
        hp = self.host_path(path)
        os.makedirs(os.path.dirname(hp), exist_ok=True)
        with open(hp, "wb") as f:
            f.write(content.encode("utf-8"))
