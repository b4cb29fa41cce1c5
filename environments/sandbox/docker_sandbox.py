"""DockerSandbox: one throw-away container per sandbox, on the `docker` Python SDK's public API.

Isolation defaults: no network, 2 GiB memory (no extra swap), 512 pids, 1 CPU; no disk quota unless ``disk_limit``
(``--storage-opt size=``, enforced only where the storage driver supports it: overlay2 on xfs with pquota; elsewhere
one warning line and ``disk_limit_enforced=False``). Every container carries the label
``swe-srl.sandbox=1`` and the owner labels of ``lifecycle.owner_labels()`` (run id, owner pid + start time + boot id +
host, command, created-at) and is removed on close(), on garbage collection, at interpreter exit, and after an
exception, KeyboardInterrupt or SIGTERM (``lifecycle.ensure_sigterm_unwinds``) inside ``with``. Its main process is
``sleep <ttl>`` so a container orphaned by a SIGKILLed host process stops by itself (auto-remove) after ``ttl``
seconds at the latest; and before its first sandbox every process removes the containers whose owner is gone, the
created-but-never-started ones included (``lifecycle.prune_orphans_once``). After SIGINT/SIGTERM
(``swe_srl.core.io.stop_requested``) no sandbox starts and no command runs: replays in other threads end at once.

Every operation (run, read_file, write_file, and diff, which is a run) is written once, over a small transport
interface: ``exec(argv, cwd, timeout, stdin) -> RawResult(rc, output bytes, timed_out)``, ``read(path) -> bytes`` and
``write(path, data)`` (errors: FileNotFoundError / IsADirectoryError / OSError for the file, SandboxError for the
transport). Both transports capture a process's stdout and stderr on ONE pipe, in the order the program wrote them
(as ``2>&1``), so they return byte-identical results:

- ``HelperChannel`` (fast path, images with ``python3`` >= 3.8): one long-lived helper per container (``_helper.py``)
  on one attached ``docker exec`` stream; a JSON request per line, a JSON response per line framed by the request's
  unique id, bytes base64-encoded. A process costs one local ``posix_spawn`` instead of a ``docker exec`` round trip
  through the engine (~0.1-0.2 s each); a file read or write costs no process at all. Each process runs in its own
  process group with the exec environment; on a timeout the group gets SIGTERM, then SIGKILL after 2 s, then every
  process of the container except PID 1 and the helper is SIGKILLed, so a timed-out command leaves nothing behind.
  A helper killed by a command (``kill -9 -1``) makes that call return 137 and a fresh helper takes over. After every
  command the helper checks the pids cgroup: a fork bomb (the limit was hit) gets every process but PID 1 and the
  helper SIGKILLed, and the result ``killed=True`` with a ``reason``; the helper, a child subreaper, reaps them, so
  the sandbox stays usable.
- ``ExecTransport`` (images without a usable ``python3``, or ``fast=False``): one ``docker exec`` per call of
  ``sh -c 'exec "$@" 2>&1' sh timeout -k 2 T ARGV...``, then ``kill -9 -1`` after an overrun; ``read`` is
  ``cat -- PATH`` and ``write`` is stdin into ``dd of=PATH`` through that same ``exec``.

Both read the engine's multiplexed stream with docker-py's frame reader (``docker.utils.socket.next_frame_header`` /
``read_exactly``) on the socket that ``APIClient.exec_start(socket=True)`` returns; no private attribute is used.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import os
import posixpath
import select
import shlex
import socket
import sys
import tarfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from swe_srl.core.io import deferred_interrupts, stop_requested

from . import lifecycle
from .base import DEFAULT_WORKDIR, LABEL, CommandResult, SandboxBase, SandboxError
from swe_srl.core.errors import SweSrlError

_LIVE: "weakref.WeakSet[DockerSandbox]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()     # replays start and close sandboxes in threads
KILL_ALL = "kill -9 -1 2>/dev/null; exit 0"   # from an exec: every process but PID 1 (sleep) and the killer
MERGE = 'exec "$@" 2>&1'                      # sh -c MERGE sh ARGV...: stderr onto the stdout pipe, in write order
EXEC_GUARD_S = 15.0            # host-side slack over a command's own timeout before the transport is declared stuck
FILE_TIMEOUT_S = 120.0


def close_live_sandboxes() -> int:
    """Close (remove) every sandbox this process has open, from any thread; returns how many. Called on SIGINT /
    SIGTERM before waiting for replay threads (their next call fails at once) and at interpreter exit."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    n = 0
    for sb in live:
        try:
            sb.close()
            n += 1
        except Exception:
            pass
    return n


def _close_all() -> None:
    close_live_sandboxes()


atexit.register(_close_all)


_WARNED: set[str] = set()


def _warn_once(key: str, line: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        print(line, file=sys.stderr, flush=True)


def _remove_container(container) -> None:
    try:
        container.remove(force=True, v=True)
    except Exception:
        pass


HELPER_SOURCE = (Path(__file__).with_name("_helper.py")).read_text(encoding="utf-8")
HELPER_PYTHON = "python3"     # the image's interpreter for the helper; missing (or < 3.8): one docker exec per call
HELPER_BOOT = "import sys,json;exec(json.loads(sys.stdin.buffer.readline()),{'__name__':'__main__'})"


class ChannelError(SweSrlError, RuntimeError):
    """The transport itself failed (the helper exited, the stream broke); says nothing about the command."""


@dataclass
class RawResult:
    rc: int
    out: bytes            # stdout and stderr of the process, one pipe, in the order written
    timed_out: bool = False
    killed: bool = False  # the helper killed every process of the container (pids limit hit: fork bomb)
    reason: str = ""


class Transport(Protocol):
    """How DockerSandbox runs one process in its container."""

    name: str
    dead: bool

    def exec(self, argv: list[str], *, cwd: str, timeout: float, stdin: bytes | None = None) -> RawResult: ...
    def read(self, path: str) -> bytes: ...
    def write(self, path: str, data: bytes) -> None: ...
    def close(self) -> None: ...


# -- one attached `docker exec` ---------------------------------------------------------------------------------
def _as_socket(raw) -> socket.socket:
    """A full socket object for what ``APIClient.exec_start(socket=True)`` returned.

    Over TLS that is already a socket; over the local unix socket (and plain TCP) it is a ``socket.SocketIO``, which
    offers ``fileno()`` but neither ``sendall`` nor ``shutdown`` (needed to close the process's stdin while its output
    is still read). A socket object made on a duplicate of that file descriptor gives both, through public API only.
    """
    if isinstance(raw, socket.socket):
        return raw
    return socket.socket(fileno=os.dup(raw.fileno()))


class ExecStream:
    """One attached ``docker exec``: its stdin, and its stdout/stderr frames read with docker-py's frame reader."""

    def __init__(self, api, container_id: str, argv: list[str], *, workdir: str, stdin: bool):
        from docker.utils.socket import SocketError, next_frame_header, read_exactly   # optional heavy dependency

        self._header, self._exactly, self._short = next_frame_header, read_exactly, SocketError
        self.api = api
        self.exec_id = api.exec_create(container_id, argv, stdin=stdin, stdout=True, stderr=True, tty=False,
                                       workdir=workdir)["Id"]
        self._raw = api.exec_start(self.exec_id, socket=True, tty=False)
        self.sock = _as_socket(self._raw)
        self.sock.settimeout(60)          # bounds a send or a frame body; waiting for a frame uses select()
        self._pending = b""
        self._half_close = False

    def write(self, data: bytes, end: bool = False) -> None:
        """Send bytes to the process's stdin (what does not fit now is sent while frames are read); ``end``: then
        close its stdin."""
        self._pending += data
        self._half_close = self._half_close or end
        self._send()                      # a request line usually goes out whole here, without a select()

    def _send(self) -> None:
        if self._pending:
            n = self.sock.send(self._pending[:1 << 16])
            self._pending = self._pending[n:]
        if not self._pending and self._half_close:
            self._half_close = False
            self.sock.shutdown(socket.SHUT_WR)

    def next_frame(self, deadline: float) -> tuple[int, bytes] | None:
        """The next (stream, payload) frame; None at the end of the stream; TimeoutError after ``deadline``."""
        while True:
            if self._pending or self._half_close:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("docker exec stream: deadline passed")
                r, w, _ = select.select([self.sock], [self.sock], [], left)
                if w:
                    self._send()
                if not r:
                    continue
            else:
                pending_tls = getattr(self.sock, "pending", None)
                if not (pending_tls and pending_tls()):
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                        raise TimeoutError("docker exec stream: deadline passed")
            stream, size = self._header(self.sock)
            if size < 0:
                return None
            try:
                return stream, (self._exactly(self.sock, size) if size else b"")
            except self._short as e:                       # the stream ended inside a frame
                raise ChannelError(f"docker exec stream: {e}") from e

    def exit_code(self) -> int:
        code = self.api.exec_inspect(self.exec_id).get("ExitCode")
        return -1 if code is None else int(code)

    def close(self) -> None:
        for f in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close, self._raw.close):
            try:
                f()
            except Exception:
                pass


# -- transports --------------------------------------------------------------------------------------------------
class ExecTransport:
    """One ``docker exec`` per call (``timeout -k 2 T``, stderr merged into stdout in the container)."""

    name = "exec"
    dead = False

    def __init__(self, api, container_id: str):
        self.api = api
        self.container_id = container_id

    def exec(self, argv: list[str], *, cwd: str, timeout: float, stdin: bytes | None = None) -> RawResult:
        t = max(float(timeout), 0.1)
        cmd = ["sh", "-c", MERGE, "sh", "timeout", "-k", "2", f"{t:g}", *argv]
        start = time.monotonic()
        try:
            s = ExecStream(self.api, self.container_id, cmd, workdir=cwd, stdin=stdin is not None)
        except Exception as e:
            raise SandboxError(f"docker exec failed: {e}") from e
        out = []
        try:
            if stdin is not None:
                s.write(stdin, end=True)
            deadline = start + t + EXEC_GUARD_S          # in case `timeout` itself cannot act
            while (frame := s.next_frame(deadline)) is not None:
                out.append(frame[1])
            code = s.exit_code()
        except TimeoutError:
            self.kill_all()
            return RawResult(137, b"", True)             # as the helper channel: its answer never came
        except (ChannelError, OSError) as e:
            raise SandboxError(f"docker exec stream failed: {e}") from e
        finally:
            s.close()
        timed_out = code in (124, 137) and time.monotonic() - start >= t - 0.05
        if timed_out:
            self.kill_all()
        return RawResult(code, b"".join(out), timed_out)

    def read(self, path: str) -> bytes:
        r = self.exec(["cat", "--", path], cwd="/", timeout=FILE_TIMEOUT_S)
        if r.rc == 0:
            return r.out
        msg = r.out.decode("utf-8", "replace")
        if r.timed_out or r.rc > 1:
            raise SandboxError(f"read({path}) failed ({r.rc}): {msg[-300:]}")
        raise IsADirectoryError(path) if "Is a directory" in msg else FileNotFoundError(path)

    def write(self, path: str, data: bytes) -> None:
        """stdin into ``dd of=PATH`` (O_TRUNC: an existing file keeps its mode and owner); a missing parent directory
        is created and the write retried once."""
        dd = ["dd", f"of={path}", "bs=65536"]
        r = self.exec(dd, cwd="/", timeout=FILE_TIMEOUT_S, stdin=data)
        if r.rc != 0 and not r.timed_out:
            if self.exec(["mkdir", "-p", "--", posixpath.dirname(path)], cwd="/", timeout=60).rc == 0:
                r = self.exec(dd, cwd="/", timeout=FILE_TIMEOUT_S, stdin=data)
        if r.rc != 0:
            raise OSError(f"write({path}) failed ({r.rc}): {r.out.decode('utf-8', 'replace')[-300:]}")

    def kill_all(self) -> None:
        """SIGKILL every process of the container except PID 1 (the ``sleep`` main process)."""
        try:
            s = ExecStream(self.api, self.container_id, ["sh", "-c", KILL_ALL], workdir="/", stdin=False)
        except Exception:
            return
        try:
            deadline = time.monotonic() + 30
            while s.next_frame(deadline) is not None:
                pass
        except Exception:
            pass
        finally:
            s.close()

    def close(self) -> None:
        pass


class HelperChannel:
    """The in-container helper (``_helper.py``) on one long-lived attached exec: ``exec`` without the engine."""

    name = "helper"

    def __init__(self, api, container_id: str, python: str = HELPER_PYTHON):
        self.fallback = ExecTransport(api, container_id)          # kills everything when the helper is stuck
        self.stream = ExecStream(api, container_id, [python, "-I", "-S", "-c", HELPER_BOOT], workdir="/",
                                 stdin=True)
        self.dead = False
        self._out = b""                           # stdout payload not yet consumed
        self._err = b""                           # the helper's own stderr (tail), for error messages
        self.stream.write(json.dumps(HELPER_SOURCE).encode("ascii") + b"\n")

    def _recv_line(self, deadline: float) -> bytes:
        while (nl := self._out.find(b"\n")) < 0:
            frame = self.stream.next_frame(deadline)
            if frame is None:
                raise ChannelError(f"helper exited: {self._err.decode('utf-8', 'replace')[-300:]}")
            if frame[0] == 2:
                self._err = (self._err + frame[1])[-4000:]
            else:
                self._out += frame[1]
        line, self._out = self._out[:nl], self._out[nl + 1:]
        return line

    def request(self, op: str, wait: float, **kw) -> dict:
        if self.dead:
            raise ChannelError("helper channel is closed")
        rid = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        try:
            self.stream.write(json.dumps({"op": op, "id": rid, **kw}).encode("ascii") + b"\n")
            while True:
                try:
                    res = json.loads(self._recv_line(deadline))
                except ValueError:
                    continue                       # not a response line (cannot happen: children never share it)
                if res.get("id") == rid:
                    break
        except BaseException:
            self.close()                           # framing is unknown now: never reuse this channel
            raise
        if "error" in res:
            raise ChannelError(res["error"])
        return res

    def exec(self, argv: list[str], *, cwd: str, timeout: float, stdin: bytes | None = None) -> RawResult:
        t = max(float(timeout), 0.1)
        try:
            res = self.request("exec", wait=t + 2 + 2 + EXEC_GUARD_S, argv=argv, cwd=cwd, timeout=t,
                               stdin=None if stdin is None else base64.b64encode(stdin).decode("ascii"))
        except TimeoutError:
            self.fallback.kill_all()
            return RawResult(137, b"", True)
        except (ChannelError, OSError):
            # the helper died under the process (e.g. it ran `kill -9 -1`): like an exec killed by SIGKILL
            return RawResult(137, b"", False)
        return RawResult(int(res["rc"]), base64.b64decode(res["out"]), bool(res["timed_out"]),
                         bool(res.get("killed")), str(res.get("reason", "")))

    def _file_request(self, op: str, path: str, **kw) -> dict:
        try:
            return self.request(op, wait=FILE_TIMEOUT_S, path=path, **kw)
        except (ChannelError, OSError) as e:               # TimeoutError included
            raise SandboxError(f"{op}({path}): helper channel failed: {e}") from e

    def read(self, path: str) -> bytes:
        r = self._file_request("read", path)
        if not r["ok"]:
            raise IsADirectoryError(path) if r.get("err") == "isdir" else FileNotFoundError(path)
        return base64.b64decode(r["data"])

    def write(self, path: str, data: bytes) -> None:
        r = self._file_request("write", path, data=base64.b64encode(data).decode("ascii"))
        if not r["ok"]:
            raise OSError(f"write({path}) failed: {r.get('msg', '')[-300:]}")

    def close(self) -> None:
        self.dead = True
        self.stream.close()


def repo_tar(repo_path: str | os.PathLike, arc_root: str) -> bytes:
    """Tar of a host directory (symlinks kept, owner root) with members under ``arc_root`` (no leading slash)."""
    buf = io.BytesIO()
    root = Path(repo_path)

    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(root), arcname=arc_root, recursive=True, filter=owner)
    return buf.getvalue()


class DockerSandbox(SandboxBase):
    def __init__(self, image: str, *, workdir: str = DEFAULT_WORKDIR, repo_path: str | os.PathLike | None = None,
                 base_commit: str | None = None, network: bool = False, mem_limit: str | None = "2g",
                 pids_limit: int | None = 512, cpus: float | None = 1.0, nano_cpus: int | None = None,
                 env: dict[str, str] | None = None, ttl: float = 6 * 3600, client=None,
                 labels: dict[str, str] | None = None, fast: bool = True, disk_limit: str | None = None):
        self.image = image
        self.disk_limit = disk_limit          # e.g. "10g": --storage-opt size=; needs overlay2 on xfs with pquota
        self.disk_limit_enforced: bool | None = None   # after start(): False when the storage driver refused it
        self.fast = fast
        self._transport: Transport | None = None
        self._fast_ok = fast
        self.workdir = posixpath.normpath(workdir)
        self.repo_path = repo_path
        self.base_commit = base_commit
        self.network = network
        self.mem_limit = mem_limit
        self.pids_limit = pids_limit
        self.nano_cpus = nano_cpus if nano_cpus is not None else (int(cpus * 1e9) if cpus else None)
        self.env = dict(env or {})
        self.ttl = ttl
        self.labels = {LABEL: "1", **lifecycle.owner_labels(), **(labels or {})}
        self._client = client
        self.container = None
        self.base_ref = None
        self._finalizer = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            import docker   # optional heavy dependency

            self._client = docker.from_env(timeout=120)
        return self._client

    def start(self) -> "DockerSandbox":
        if self.container is not None:
            return self
        import docker.errors   # optional heavy dependency

        if stop_requested():
            raise SandboxError("interrupted: no new sandbox is started")
        lifecycle.ensure_sigterm_unwinds()
        lifecycle.prune_orphans_once(self.client)

        kw = dict(
            image=self.image, command=["sleep", str(int(self.ttl))], detach=True, labels=self.labels,
            name=f"swe-srl-sb-{uuid.uuid4().hex[:12]}", working_dir="/", environment=self.env or None,
            auto_remove=True, stdin_open=False, tty=False,
        )
        if not self.network:
            kw["network_mode"] = "none"
        if self.mem_limit:
            kw["mem_limit"] = self.mem_limit
            kw["memswap_limit"] = self.mem_limit
        if self.pids_limit:
            kw["pids_limit"] = self.pids_limit
        if self.nano_cpus:
            kw["nano_cpus"] = self.nano_cpus
        if self.disk_limit:
            kw["storage_opt"] = {"size": str(self.disk_limit)}
        # a SIGINT/SIGTERM while the engine creates the container waits until it is registered (then removed by the
        # cleanup), so no created-but-never-started container is left behind by an interrupt
        try:
            with deferred_interrupts():
                try:
                    try:
                        container = self.client.containers.create(**kw)
                        self.disk_limit_enforced = bool(self.disk_limit) or None
                    except docker.errors.APIError as e:
                        if "storage_opt" not in kw or "storage" not in str(e).lower():
                            raise
                        # the driver cannot enforce a size (overlay2 needs xfs with pquota): run without, say so once
                        kw.pop("storage_opt")
                        _warn_once("disk", f"warning: disk_limit={self.disk_limit} is not enforced by this Docker "
                                           f"storage driver ({str(e).splitlines()[0][-200:]}); the sandbox has no "
                                           "disk quota")
                        container = self.client.containers.create(**kw)
                        self.disk_limit_enforced = False
                except docker.errors.ImageNotFound as e:
                    raise SandboxError(f"image {self.image!r} not found locally (build it first): {e}") from None
                except docker.errors.DockerException as e:
                    raise SandboxError(f"cannot create container from {self.image!r}: {e}") from e
                self.container = container
                self._finalizer = weakref.finalize(self, _remove_container, container)
                with _LIVE_LOCK:
                    _LIVE.add(self)
        except KeyboardInterrupt:
            self.close()
            raise
        try:
            if stop_requested():     # SIGINT/SIGTERM while it was being created
                raise SandboxError("interrupted: no new sandbox is started")
            if self.repo_path is not None:
                data = repo_tar(self.repo_path, self.workdir.strip("/"))
                if not container.put_archive("/", data):
                    raise SandboxError(f"copying {self.repo_path} into the container failed")
            container.start()
            self._transport = self._open_transport()
            setup = [f"mkdir -p {shlex.quote(self.workdir)}"]
            if self.base_commit:
                setup.append(f"cd {shlex.quote(self.workdir)} && git -c advice.detachedHead=false checkout -q -f "
                             f"{shlex.quote(self.base_commit)}")
            res = self.run(" && ".join(setup), timeout=300, workdir="/")
            if res.exit_code != 0:
                raise SandboxError(f"sandbox setup failed ({res.exit_code}): {res.output[-500:]}")
            self._record_base(self.base_commit)
        except BaseException:
            self.close()
            raise
        return self

    def _open_transport(self) -> Transport:
        """The helper channel; images without a usable python3 (or fast=False) get one docker exec per call."""
        if self._fast_ok:
            ch = None
            try:
                ch = HelperChannel(self.client.api, self.container.id, HELPER_PYTHON)
                ch.request("ping", wait=60)
                return ch
            except Exception:
                if ch is not None:
                    ch.close()
                self._fast_ok = False
        return ExecTransport(self.client.api, self.container.id)

    @property
    def transport(self) -> Transport:
        if self.container is None:
            raise SandboxError("sandbox not started")
        if self._transport is None or self._transport.dead:
            self._transport = self._open_transport()   # e.g. the helper was killed by a command (`kill -9 -1`)
        return self._transport

    def close(self) -> None:
        tr, self._transport = self._transport, None
        if tr is not None:
            tr.close()
        c, self.container = self.container, None
        if c is not None:
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if self._finalizer is not None:
                self._finalizer.detach()
            _remove_container(c)

    # -- operations: each written once, over the Transport ------------------------------------------------------
    def run(self, command: str, timeout: float = 60, workdir: str | None = None) -> CommandResult:
        if stop_requested():
            raise SandboxError("interrupted: no new command is run")
        cwd = self.abspath(workdir) if workdir else self.workdir
        r = self.transport.exec(["bash", "-c", command], cwd=cwd, timeout=timeout)
        return CommandResult(r.rc, r.out.decode("utf-8", errors="replace"), r.timed_out, r.killed, r.reason)

    def read_file(self, path: str) -> str:
        return self.transport.read(self.abspath(path)).decode("utf-8", errors="replace")

    def write_file(self, path: str, content: str) -> None:
        """Creates missing parent directories; an existing file keeps its mode and owner."""
        self.transport.write(self.abspath(path), content.encode("utf-8"))


def live_sandbox_containers(client=None) -> list:
    """Containers (running or not) that carry our label (``lifecycle.our_containers`` adds the image builder's)."""
    import docker

    client = client or docker.from_env()
    return client.containers.list(all=True, filters={"label": f"{LABEL}=1"}, ignore_removed=True)


def remove_sandbox_containers(client=None, owner_pid: int | None = None) -> int:
    """Remove labelled containers (all, or those of one owner pid); returns how many were removed."""
    n = 0
    for c in live_sandbox_containers(client):
        if owner_pid is not None and c.labels.get("swe-srl.owner") != str(owner_pid):
            continue
        _remove_container(c)
        n += 1
    return n
