"""Command helper that runs INSIDE a sandbox container (``python3 -I -S -c BOOT``; BOOT reads this source as the
first line of stdin, JSON-encoded, so ``ps`` inside the container shows a short command line).

It is the fast transport of DockerSandbox: the same three primitives as the ``docker exec`` transport (``exec``: run an
argv, optionally with stdin bytes, return exit code + output; ``read`` / ``write`` a file, which that transport does
with ``cat`` / ``dd``, here in-process, without a process spawn), and no engine round trip per call. One JSON request
per line in, one JSON response per line out, each echoing the request's unique ``id`` (the sentinel that frames a
response). Raw bytes travel base64-encoded, so outputs are byte-exact. Free of non-stdlib imports, for any ``python3``
3.8+ (``os.posix_spawnp`` with ``setsid``); with an older one the helper fails its start-up ping and DockerSandbox
falls back to one ``docker exec`` per call.

Every process runs in a new session (process group), with the environment that ``docker exec`` gave the helper (read
back from /proc/self/environ, so nothing the interpreter changed leaks in), stdin from the request's bytes (then EOF)
or /dev/null, and stdout AND stderr on ONE pipe (as ``2>&1``), so the output is in the order the program wrote it.
A child's exit wakes the helper through SIGCHLD (``signal.set_wakeup_fd``), without polling; a process killed by a
signal reports 128 + its number, as a shell and ``docker exec`` do. On a timeout: SIGTERM to the group, SIGKILL after
2 s (``timeout -k 2``), then SIGKILL to every process of the container except PID 1 and the helper itself.

Fork bombs: the helper is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so orphaned processes become its children
and are reaped (never zombies of PID 1, ``sleep``, that would fill the pids cgroup for good). After every command it
reads the pids cgroup (``pids.events``: how often a fork failed at the limit); when the limit was hit, every process
but PID 1 and the helper is SIGKILLed (repeatedly, until none is left) and the response carries ``killed`` and a
``reason``, so the sandbox stays usable.
"""

import base64
import fcntl
import json
import os
import select
import signal
import sys
import time

DRAIN = 2.0        # like `docker exec`: after the command exits, wait <= 2 s for background holders of its output
KILL_AFTER = 2.0


def _environ():
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
        return dict(kv.split(b"=", 1) for kv in raw.split(b"\0") if b"=" in kv)
    except Exception:
        return dict(os.environb)


ENV = _environ()
ME = os.getpid()


def _others():
    """PIDs of the container's live processes other than PID 1 and the helper (zombies are not counted)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) not in (1, ME):
            try:
                with open("/proc/%s/stat" % d, "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except Exception:
                continue
            if state not in (b"Z", b"X"):
                pids.append(int(d))
    return pids


def kill_all(limit=10.0):
    """SIGKILL every process of the container except PID 1 and the helper, until none is left (a fork bomb forks
    while it is killed: ``kill(-1)`` is repeated); orphans were re-parented to the helper (a subreaper): reaped."""
    end = time.monotonic() + limit
    while True:
        try:
            os.kill(-1, signal.SIGKILL)          # all processes we may signal, except PID 1 and ourselves
        except Exception:
            pass
        for pid in _others():
            try:
                os.kill(pid, signal.SIGKILL)
            except Exception:
                pass
        reap()
        if not _others() or time.monotonic() > end:
            break
        time.sleep(0.01)
    reap()


# -- pids cgroup: a fork bomb saturates it; detected after every command -------------------------------------------
PIDS_DIRS = ("/sys/fs/cgroup", "/sys/fs/cgroup/pids")     # cgroup v2 (namespaced root), v1


def _read_int(path):
    try:
        with open(path) as f:
            v = f.read().strip()
        return None if v == "max" else int(v)
    except Exception:
        return None


def pids_state():
    """(events_max, current, limit) of the container's pids cgroup; None where unknown."""
    for d in PIDS_DIRS:
        try:
            with open(d + "/pids.events") as f:
                ev = dict(line.split() for line in f if line.strip())
        except Exception:
            continue
        return int(ev.get("max", 0)), _read_int(d + "/pids.current"), _read_int(d + "/pids.max")
    return None, None, None


def saturated(before):
    """A reason string when the pids limit was hit since ``before`` (pids.events "max" grew) or is nearly full."""
    ev, cur, lim = pids_state()
    if ev is not None and before is not None and ev > before:
        return "the pids limit (%s) was reached %d time(s): fork bomb?" % (lim or "?", ev - before)
    if cur is not None and lim and cur >= lim - 2:
        return "the pids limit (%s) is saturated (%d processes): fork bomb?" % (lim, cur)
    return None


# -- child subreaper: orphans of commands become the helper's children (and are reaped), never zombies of PID 1 ---
STATUS = {}            # pid -> exit status of a reaped child that a Child object still wants


def _subreaper():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)     # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def reap():
    """Reap every exited child (orphans included); a tracked child's status is kept for its Child.poll()."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if not pid:
            return
        if pid in STATUS:
            STATUS[pid] = 128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)   # as a shell


def b64(data):
    return base64.b64encode(data).decode("ascii")


def _nonblock(fd):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


# SIGCHLD wakes select() through this pipe, so a child's exit is seen at once, without polling
WAKE_R, WAKE_W = os.pipe()
_nonblock(WAKE_R)
_nonblock(WAKE_W)
signal.signal(signal.SIGCHLD, lambda signum, frame: None)
signal.set_wakeup_fd(WAKE_W)
SPAWN = os.posix_spawnp     # Python 3.8+; an older python3 fails here, at boot, and the sandbox uses docker exec
SIGDEF = (signal.SIGPIPE, signal.SIGXFSZ)     # ignored by Python; a child gets them back at default (as Popen does)


def spawn(argv, cwd, with_stdin):
    """Start ``argv`` in a new session: (pid, output fd, input fd or None); stdout and stderr on the one pipe."""
    out_r, out_w = os.pipe()                  # non-inheritable: only the dup2 copies reach the child
    in_r, in_w = os.pipe() if with_stdin else (None, None)
    fa = [(os.POSIX_SPAWN_DUP2, in_r, 0) if with_stdin else (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
          (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, out_w, 2)]
    try:
        os.chdir(cwd)                         # posix_spawn has no cwd: the child inherits the helper's
        pid = SPAWN(argv[0], argv, ENV, file_actions=fa, setsid=True, setsigdef=SIGDEF)
    except BaseException:
        for fd in (out_r, in_w):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        os.chdir("/")
        for fd in (out_w, in_r):
            if fd is not None:
                os.close(fd)
    return pid, out_r, in_w


class Child(object):
    """A spawned process: its output (read until EOF), its stdin (fed from ``data``, then closed), its exit."""

    def __init__(self, argv, cwd, data):
        self.pid, self.fd, self.win = spawn(argv, cwd, data is not None)
        STATUS[self.pid] = None
        self.data = data
        self.chunks = []
        self.eof = False
        self.status = None
        if self.win is not None:
            _nonblock(self.win)
            if not data:
                self.close_in()

    def close_in(self):
        if self.win is not None:
            os.close(self.win)
            self.win = None

    def poll(self):
        if self.status is None:
            reap()
            if STATUS.get(self.pid) is not None:
                self.status = STATUS.pop(self.pid)
        return self.status

    def killpg(self, sig):
        try:
            os.killpg(self.pid, sig)
        except Exception:
            pass

    def pump(self, wait):
        """Wait <= ``wait`` s for output, room in the input pipe or a child's exit; handle what came."""
        rl = [WAKE_R] if self.eof else [self.fd, WAKE_R]
        wl = [self.win] if self.win is not None else []
        r, w, _ = select.select(rl, wl, [], max(wait, 0))
        if WAKE_R in r:
            try:
                os.read(WAKE_R, 4096)
            except OSError:
                pass
        if w:
            try:
                n = os.write(self.win, self.data[:1 << 16])
                self.data = self.data[n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:                       # EPIPE: the command does not read its stdin
                self.data = b""
            if not self.data:
                self.close_in()
        if self.fd in r:
            b = os.read(self.fd, 1 << 16)
            if b:
                self.chunks.append(b)
            else:
                self.eof = True


def exec_(req):
    t = max(float(req.get("timeout", 60)), 0.1)
    start = time.monotonic()
    data = base64.b64decode(req["stdin"]) if req.get("stdin") is not None else None
    before = pids_state()[0]
    try:
        c = Child(req["argv"], req.get("cwd") or "/", data)
    except OSError as e:
        res = {"rc": 127 if isinstance(e, FileNotFoundError) else 126,
               "out": b64(str(e).encode("utf-8", "replace")), "timed_out": False}
        reason = saturated(None)          # e.g. EAGAIN: the pids cgroup is still full
        if reason:
            kill_all()
            res.update(killed=True, reason=reason + "; every process of the sandbox was killed")
        return res
    deadline = start + t
    exit_at = None
    timed_out = False
    while True:
        now = time.monotonic()
        if c.poll() is not None:
            if exit_at is None:
                exit_at = now
            if c.eof or now >= exit_at + DRAIN:
                break
            c.pump(exit_at + DRAIN - now)         # background holders of the output: wait for EOF
        elif now >= deadline:
            timed_out = True
            break
        else:
            c.pump(deadline - now)
    c.close_in()
    rc = c.status
    if timed_out:
        c.killpg(signal.SIGTERM)
        rc = 124
        end = time.monotonic() + KILL_AFTER
        while c.poll() is None and time.monotonic() < end:
            c.pump(end - time.monotonic())
        if c.poll() is None:
            c.killpg(signal.SIGKILL)
            rc = 137
        kill_all()
        end = time.monotonic() + 5
        while c.poll() is None and time.monotonic() < end:
            c.pump(end - time.monotonic())
        while not c.eof and select.select([c.fd], [], [], 0.05)[0]:   # what the killed processes left in the pipe
            c.pump(0)
    reason = saturated(before)
    if reason:                                    # a fork bomb: stop it, so that the sandbox stays usable
        kill_all()
        while not c.eof and select.select([c.fd], [], [], 0.05)[0]:
            c.pump(0)
        if c.poll() is None:
            c.killpg(signal.SIGKILL)
            c.pump(0.5)
        rc = 137
    os.close(c.fd)
    STATUS.pop(c.pid, None)
    res = {"rc": rc if rc is not None else -1, "out": b64(b"".join(c.chunks)), "timed_out": timed_out}
    if reason:
        res.update(killed=True, reason=reason + "; every process of the sandbox was killed")
    return res


def read(req):
    try:
        with open(req["path"], "rb") as f:
            return {"ok": True, "data": b64(f.read())}
    except IsADirectoryError:
        return {"ok": False, "err": "isdir"}
    except Exception as e:
        return {"ok": False, "err": "missing", "msg": str(e)}


def write(req):
    path = req["path"]
    try:
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(path, "wb") as f:                 # O_TRUNC on an existing file: mode and owner are kept
            f.write(base64.b64decode(req["data"]))
        return {"ok": True}
    except Exception as e:
        return {"ok": False, "msg": "%s: %s" % (type(e).__name__, e)}


OPS = {"exec": exec_, "read": read, "write": write, "ping": lambda req: {"pid": ME}}


def main():
    _subreaper()
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    while True:
        line = inp.readline()
        if not line:
            return
        req = {}
        try:
            req = json.loads(line.decode("utf-8"))
            res = OPS[req["op"]](req)
        except Exception as e:  # a malformed request must not kill the channel
            res = {"error": "%s: %s" % (type(e).__name__, e)}
        res["id"] = req.get("id") if isinstance(req, dict) else None
        out.write(json.dumps(res).encode("ascii") + b"\n")
        out.flush()
        reap()                                      # orphans that exited meanwhile (the helper is their subreaper)


if __name__ == "__main__":
    main()
