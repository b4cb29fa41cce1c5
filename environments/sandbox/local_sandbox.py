"""LocalSandbox: a temporary copy of a host git repository + subprocess. NOT ISOLATED (unless bubblewrap is used).

Commands run on the host, as the current user, with the host's network, files and environment: use it only for
trusted actions (expert trajectories in tests, quick local replays). ``start()`` prints one warning line to stderr
(once per process) saying so. The copy lives under a temporary directory, but the sandbox presents it as ``workdir``
(default ``/testbed``): file paths under ``workdir`` are mapped to the copy, and ``run()`` rewrites ``workdir`` to the
copy's path in commands and back in outputs (a textual, best-effort mapping). As in DockerSandbox, a command's stdout
and stderr share one pipe, so the output keeps the order they were written, and after the command exits ``run()``
waits at most 2 s for background holders of that pipe.

Containment that does hold:

- files: ``read_file`` / ``write_file`` of a path under ``workdir``, and ``confine()`` (which ToolRuntime calls for
  every editor/ACI path), resolve the real path (symlinks included) and refuse one outside the repository copy with
  ``PermissionError``;
- processes: every command runs in its own session/process group and carries ``SWE_SRL_SANDBOX_ID=<id>`` in its
  environment. On a timeout, and on ``close()``, the group, every descendant (PPid chain) and every process carrying
  the marker are SIGKILLed, so ``setsid sleep 777 &`` does not outlive the sandbox (a process that both leaves the
  session and clears its environment, e.g. ``setsid env -i …``, escapes this tracking: use bubblewrap or Docker);
- ``isolation="bwrap"`` (or ``SWE_SRL_LOCAL_ISOLATION=bwrap``; needs ``bwrap`` on the PATH): each command runs under
  bubblewrap with no network, the host file system read-only, the repository copy and a per-sandbox ``/tmp``
  writable, its own PID namespace (``--unshare-pid --die-with-parent``: every process of the command dies with it,
  background jobs included) and a minimal environment. A middle ground, not a container: the host's files stay
  readable.
"""

from __future__ import annotations

import os
import posixpath
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from swe_srl.core.io import stop_requested

from .base import DEFAULT_WORKDIR, CommandResult, SandboxBase, SandboxError

MARKER = "SWE_SRL_SANDBOX_ID"
DRAIN = 2.0                  # as docker exec / the helper: after the command exits, wait <= 2 s for its pipe's EOF
ISOLATIONS = ("none", "bwrap")
_WARNED: set[str] = set()


def _warn_once(isolation: str) -> None:
    if isolation in _WARNED:
        return
    _WARNED.add(isolation)
    if isolation == "bwrap":
        line = ("warning: local sandbox (--sandbox/--replay local): commands run on the host under bubblewrap (no "
                "network, read-only host files, writable repo copy), not in a container")
    else:
        line = ("warning: local sandbox (--sandbox/--replay local): commands run on the HOST, unisolated (your user, "
                "files, network and environment); use docker for untrusted actions")
    print(line, file=sys.stderr, flush=True)


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, sid) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    try:
        return [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return []


class LocalSandbox(SandboxBase):
    def __init__(self, repo_path: str | os.PathLike, base_commit: str | None = None, *,
                 workdir: str = DEFAULT_WORKDIR, env: dict[str, str] | None = None, isolation: str | None = None):
        self.repo_path = Path(repo_path)
        self.base_commit = base_commit
        self.workdir = posixpath.normpath(workdir)
        self.env = dict(env or {})
        self.isolation = isolation or os.environ.get("SWE_SRL_LOCAL_ISOLATION") or "none"
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, not {self.isolation!r}")
        self.sandbox_id = uuid.uuid4().hex
        self._tmp: str | None = None
        self.host_root: str | None = None
        self._real_root: str | None = None
        self.base_ref = None

    def start(self) -> "LocalSandbox":
        if self._tmp is not None:
            return self
        if not self.repo_path.is_dir():
            raise SandboxError(f"repo_path {self.repo_path} is not a directory")
        if self.isolation == "bwrap" and shutil.which("bwrap") is None:
            raise SandboxError("isolation='bwrap' needs bubblewrap (`bwrap`) on the PATH (apt-get install bubblewrap)")
        _warn_once(self.isolation)
        self._tmp = tempfile.mkdtemp(prefix="swe-srl-local-")
        self.host_root = os.path.join(self._tmp, "repo")
        try:
            shutil.copytree(self.repo_path, self.host_root, symlinks=True)
            self._real_root = os.path.realpath(self.host_root)
            os.mkdir(os.path.join(self._tmp, "tmp"))           # the command's /tmp under bubblewrap
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
            self._kill_tree()                   # background processes, setsid ones included, die with the sandbox
            shutil.rmtree(tmp, ignore_errors=True)

    # -- processes -------------------------------------------------------------------------------------------------
    def _ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return f"{MARKER}={self.sandbox_id}".encode() in f.read().split(b"\0")
        except OSError:
            return False

    def _kill_tree(self, root: int | None = None, limit: float = 10.0) -> None:
        """SIGKILL the process group/session of ``root``, its descendants and every process carrying this sandbox's
        marker, until none is left."""
        me = os.getpid()
        end = time.monotonic() + limit
        while True:
            procs = {pid: st for pid in _pids() if pid != me and (st := _stat(pid)) is not None and st[0] not in "ZX"}
            doomed = {pid for pid, st in procs.items()
                      if (root is not None and (pid == root or root in (st[2], st[3]))) or self._ours(pid)}
            grew = True
            while grew:                           # descendants of what is doomed (PPid chains)
                more = {pid for pid, st in procs.items() if st[1] in doomed and pid not in doomed}
                doomed |= more
                grew = bool(more)
            if root is not None:
                try:
                    os.killpg(root, signal.SIGKILL)
                except OSError:
                    pass
            for pid in doomed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not doomed or time.monotonic() > end:
                return
            time.sleep(0.02)

    def _argv(self, command: str, cwd: str) -> tuple[list[str], dict[str, str]]:
        script = self._to_host(command)
        if self.isolation != "bwrap":
            env = {**os.environ, **self.env, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8",
                   MARKER: self.sandbox_id}
            return ["bash", "-c", script], env
        assert self._tmp is not None and self.host_root is not None
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
               **self.env, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8", MARKER: self.sandbox_id}
        argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--bind", os.path.join(self._tmp, "tmp"), "/tmp", "--bind", self.host_root, self.host_root,
                "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session",
                "--chdir", cwd, "bash", "-c", script]
        return argv, env

    # -- path mapping ---------------------------------------------------------------------------------------------
    def host_path(self, path: str) -> str:
        p = self.abspath(path)
        if self.host_root is None:
            raise SandboxError("sandbox not started")
        if p == self.workdir or p.startswith(self.workdir.rstrip("/") + "/"):
            return self.host_root + p[len(self.workdir.rstrip("/")):]
        return p

    def _in_workdir(self, path: str) -> bool:
        p = self.abspath(path)
        return p == self.workdir or p.startswith(self.workdir.rstrip("/") + "/")

    def confine(self, path: str) -> str:
        """The host path of ``path``; PermissionError when its real path (symlinks resolved) is outside the copy."""
        hp = self.host_path(path)
        root = self._real_root or os.path.realpath(self.host_root or "")
        real = os.path.realpath(hp)
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise PermissionError(f"access to {self.abspath(path)} refused: it resolves (through a symlink) outside "
                                  f"the repository root {self.workdir}")
        return hp

    def _file_path(self, path: str) -> str:
        return self.confine(path) if self._in_workdir(path) else self.host_path(path)

    def _to_host(self, text: str) -> str:
        return text.replace(self.workdir, self.host_root) if self.workdir != self.host_root else text

    def _from_host(self, text: str) -> str:
        return text.replace(self.host_root, self.workdir) if self.workdir != self.host_root else text

    # -- commands ---------------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float = 60, workdir: str | None = None) -> CommandResult:
        if self.host_root is None:
            raise SandboxError("sandbox not started")
        if stop_requested():         # SIGINT/SIGTERM (swe_srl.core.io.interruptible): a replay in a thread ends here
            raise SandboxError("interrupted: no new command is run")
        cwd = self.host_path(workdir) if workdir else self.host_root
        argv, env = self._argv(command, cwd)
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        chunks: list[bytes] = []
        deadline = time.monotonic() + max(float(timeout), 0.0)
        exit_at: float | None = None
        timed_out = eof = False
        try:
            while True:
                now = time.monotonic()
                if proc.poll() is not None:
                    exit_at = now if exit_at is None else exit_at
                    if eof or now >= exit_at + DRAIN:
                        break
                    limit = exit_at + DRAIN           # background holders of the pipe: wait <= 2 s for EOF
                elif now >= deadline:
                    timed_out = True
                    break
                else:
                    limit = deadline
                if eof:                               # output closed: wait for the exit itself
                    try:
                        proc.wait(timeout=max(limit - now, 0))
                    except subprocess.TimeoutExpired:
                        pass
                    continue
                if select.select([fd], [], [], min(max(limit - now, 0), 0.05))[0]:
                    b = os.read(fd, 1 << 16)
                    if b:
                        chunks.append(b)
                    else:
                        eof = True
            if timed_out:
                self._kill_tree(proc.pid)         # the group, setsid descendants, marked processes
                proc.wait()
                while select.select([fd], [], [], 0.05)[0]:
                    b = os.read(fd, 1 << 16)
                    if not b:
                        break
                    chunks.append(b)
        except BaseException:
            self._kill_tree(proc.pid)
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        text = self._from_host(b"".join(chunks).decode("utf-8", errors="replace"))
        return CommandResult(124 if timed_out else proc.returncode, text, timed_out)

    def read_file(self, path: str) -> str:
        hp = self._file_path(path)
        if os.path.isdir(hp):
            raise IsADirectoryError(self.abspath(path))
        try:
            with open(hp, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            raise FileNotFoundError(self.abspath(path)) from None

    def write_file(self, path: str, content: str) -> None:
        hp = self._file_path(path)
        try:
            os.makedirs(os.path.dirname(hp), exist_ok=True)
            with open(hp, "wb") as f:
                f.write(content.encode("utf-8"))
        except OSError as e:                     # name the sandbox's path, not the host copy's
            if isinstance(e.filename, str) and self.host_root:
                e.filename = self._from_host(e.filename)
            raise
