"""Container lifecycle: who owns a sandbox container, and removing the containers whose owner is gone.

Every container a ``DockerSandbox`` creates carries, besides ``swe-srl.sandbox=1``, the labels of ``owner_labels()``:

  swe-srl.run          the run id: ``$SWE_SRL_RUN_ID`` when set, else a fresh id per process
  swe-srl.owner        the owner's pid
  swe-srl.owner-start  the owner's start time (``/proc/<pid>/stat`` field 22, clock ticks after boot)
  swe-srl.boot-id      ``/proc/sys/kernel/random/boot_id`` of the owner's host
  swe-srl.host         the owner's host name
  swe-srl.command      the command that made it (``swe-srl collect``, ``pytest``, ...)
  swe-srl.created      creation time, UTC ISO 8601

``owner_state(labels)`` is ``alive`` / ``dead`` / ``foreign``: an owner is dead when, on this host, its pid is gone,
or the pid now belongs to a process started at another time (a reused pid), or the host was rebooted since (another
boot id). A container made on another host (``swe-srl.host`` differs: an engine shared across machines) is
``foreign`` and only ``prune(all_owners=True)`` removes it. Containers of older versions carry only
``swe-srl.owner`` (and the image builder's ``swe-srl.build=1`` containers): they are judged by their pid alone, and a
live pid keeps them (never a false "dead").

``prune`` removes the containers of dead owners whatever their state: running, exited, and created but never
started (which ``auto_remove`` never removes). Every command that creates sandboxes does it once before its first
sandbox (``prune_orphans_once``, called by ``DockerSandbox.start``); ``swe-srl sandbox prune [--all] [--dry-run]``
does it by hand. Nothing here touches a container without one of our labels.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

from swe_srl.core.io import Interrupted, request_stop

from .base import LABEL

LABEL_RUN = "swe-srl.run"
LABEL_OWNER = "swe-srl.owner"
LABEL_OWNER_START = "swe-srl.owner-start"
LABEL_BOOT = "swe-srl.boot-id"
LABEL_HOST = "swe-srl.host"
LABEL_COMMAND = "swe-srl.command"
LABEL_CREATED = "swe-srl.created"
BUILD_LABEL = "swe-srl.build"          # containers of the image builder (environments.images.build)
RUN_ID_ENV = "SWE_SRL_RUN_ID"

ALIVE, DEAD, FOREIGN = "alive", "dead", "foreign"

_RUN: dict[str, Any] = {"pid": None, "id": None, "command": None}


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of ``/proc/<pid>/stat``, clock ticks after boot); None when no
    such process exists. Where /proc is missing, "?" for a live pid (liveness by ``kill(pid, 0)``)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat[stat.rindex(")") + 2:].split()[19]      # fields after "pid (comm)" start at field 3
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def run_id() -> str:
    """This process's run id: ``$SWE_SRL_RUN_ID`` when set (a test or a wrapper scopes its containers with it), else
    one random id per process (a forked child gets its own)."""
    env = os.environ.get(RUN_ID_ENV)
    if env:
        return env
    if _RUN["pid"] != os.getpid():
        _RUN.update(pid=os.getpid(), id=uuid.uuid4().hex[:12])
    return str(_RUN["id"])


def set_command(name: str) -> None:
    """Name the command recorded in ``swe-srl.command`` (default: derived from ``sys.argv``)."""
    _RUN["command"] = name


def command_name() -> str:
    if _RUN["command"]:
        return str(_RUN["command"])
    argv = list(sys.argv or [""])
    name = os.path.basename(argv[0] or "python")
    if name in ("swe-srl", "cli.py"):                 # the console script, or python -m swe_srl.cli
        sub = next((a for a in argv[1:] if a and not a.startswith("-")), "")
        return f"swe-srl {sub}".strip()[:100]
    if name in ("__main__.py", "-c", "-m", ""):
        return "python"
    return name[:100]


def owner_labels() -> dict[str, str]:
    """The owner labels of a container this process creates now."""
    pid = os.getpid()
    return {LABEL_RUN: run_id(), LABEL_OWNER: str(pid), LABEL_OWNER_START: process_start(pid) or "?",
            LABEL_BOOT: boot_id(), LABEL_HOST: socket.gethostname(), LABEL_COMMAND: command_name(),
            LABEL_CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def owner_state(labels: dict[str, str]) -> str:
    """``alive`` | ``dead`` | ``foreign`` for a container's labels (see the module docstring)."""
    pid = str(labels.get(LABEL_OWNER) or "")
    if not pid.isdigit():
        return FOREIGN
    host, boot = labels.get(LABEL_HOST), labels.get(LABEL_BOOT)
    if host is not None and host != socket.gethostname():
        return FOREIGN
    if boot and boot_id() and boot != boot_id():
        return DEAD                                  # this host was rebooted since: every process of then is gone
    start = process_start(int(pid))
    if start is None:
        return DEAD
    recorded = labels.get(LABEL_OWNER_START)
    if recorded and recorded != "?" and start != "?" and recorded != start:
        return DEAD                                  # the pid was reused by a later process
    return ALIVE


@dataclass
class ContainerInfo:
    id: str
    name: str
    state: str            # the engine's: created | running | exited | ...
    kind: str             # sandbox | build
    owner: str
    owner_state: str      # alive | dead | foreign
    run: str
    command: str
    created: str
    action: str = ""      # removed | would remove | kept | failed: ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client(client: Any = None) -> Any:
    if client is not None:
        return client
    import docker   # optional heavy dependency

    return docker.from_env(timeout=60)


def our_containers(client: Any = None, *, labels: dict[str, str] | None = None) -> list[Any]:
    """Every container (any state) with ``swe-srl.sandbox=1`` or ``swe-srl.build=1``, narrowed to those that also
    carry every ``labels`` key=value."""
    client = _client(client)
    extra = [f"{k}={v}" for k, v in (labels or {}).items()]
    seen: dict[str, Any] = {}
    for mark in (f"{LABEL}=1", f"{BUILD_LABEL}=1"):
        for c in client.containers.list(all=True, filters={"label": [mark, *extra]}, ignore_removed=True):
            seen.setdefault(c.id, c)
    return list(seen.values())


def describe(c: Any) -> ContainerInfo:
    lab = c.labels or {}
    return ContainerInfo(id=c.id[:12], name=c.name, state=str(getattr(c, "status", "")),
                         kind="sandbox" if lab.get(LABEL) == "1" else "build", owner=lab.get(LABEL_OWNER, ""),
                         owner_state=owner_state(lab), run=lab.get(LABEL_RUN, ""), command=lab.get(LABEL_COMMAND, ""),
                         created=lab.get(LABEL_CREATED, ""))


def remove_container(c: Any) -> str:
    """Force-remove (kills a running one); '' on success or when it is already gone, else the reason."""
    try:
        c.remove(force=True, v=True)
        return ""
    except Exception as e:  # noqa: BLE001 - docker.errors.* without importing docker here
        msg = str(e)
        if "No such container" in msg or "404" in msg or "already in progress" in msg:
            return ""
        return f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''}"[:300]


def prune(client: Any = None, *, all_owners: bool = False, dry_run: bool = False,
          labels: dict[str, str] | None = None) -> list[ContainerInfo]:
    """Remove our containers whose owner is dead (``all_owners``: every one of ours, live owners included — never
    on an engine others use, unless ``labels`` scopes it); ``labels``: only containers carrying these too;
    ``dry_run``: only say what would go. Returns every container looked at, with its ``action``."""
    out = []
    for c in our_containers(client, labels=labels):
        info = describe(c)
        if info.owner_state == DEAD or all_owners:
            if dry_run:
                info.action = "would remove"
            else:
                err = remove_container(c)
                info.action = f"failed: {err}" if err else "removed"
        else:
            info.action = "kept"
        out.append(info)
    return out


_ONCE = {"done": False}
_ONCE_LOCK = threading.Lock()


def prune_orphans_once(client: Any = None, log: Callable[[str], None] | None = None) -> int:
    """Once per process, before its first sandbox: remove the containers of dead owners. Never raises (an engine
    problem surfaces when the sandbox itself is created); returns how many were removed."""
    with _ONCE_LOCK:
        if _ONCE["done"]:
            return 0
        _ONCE["done"] = True
        try:
            removed = [i for i in prune(client) if i.action == "removed"]
        except Exception:  # noqa: BLE001
            return 0
    if removed:
        line = (f"removed {len(removed)} leftover sandbox container(s) of processes that are gone "
                f"(see `swe-srl sandbox prune`)")
        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(line)
    return len(removed)


def _sigterm(signum: int, frame: Any) -> None:
    request_stop()
    raise Interrupted(signum)


def ensure_sigterm_unwinds() -> None:
    """A process that creates sandboxes and left SIGTERM at its default (which ends the process at once, without
    ``finally`` or ``atexit``) gets a handler raising ``Interrupted``: the stack unwinds and its containers are
    removed. A handler installed by the program itself (``swe_srl.core.io.interruptible``) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _sigterm)
    except (ValueError, OSError):
        pass
