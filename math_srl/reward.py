"""Final-answer checking: the last ``\\boxed{}`` of a completion vs a reference answer, with math-verify.

``answer_reward(completion, answer)`` is 1.0 when the last boxed expression of the completion is
mathematically equivalent to the answer, else 0.0 (also when nothing is boxed, on a parse error, or on timeout).

Never hangs, from any thread: math-verify's own timeouts use SIGALRM, which only works in the main thread
(``signal.signal`` raises elsewhere) and cannot interrupt C code. So the sympy work runs in a persistent worker
process (``math_srl._verify_worker``, started on first use, one per calling process) and the caller waits at most
``timeout`` seconds for its answer; on a timeout the worker is killed (restarted on the next call) and the item
scores 0. Cheap cases never reach the worker: identical normalized strings, and multiple-choice letters.

``AnswerReward`` is the same check as a TRL reward function (RLVR). It refuses to exist without math-verify
(``require_math_verify``): grading without it would silently fall back to string equality.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from swe_srl.core.reward_funcs import completion_text
from swe_srl.core.task import TaskError

__all__ = ["extract_boxed", "answer_reward", "answers_equivalent", "normalize_answer", "format_answer",
           "require_math_verify", "AnswerReward"]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in text, braces balanced; None if none."""
    if not text:
        return None
    last = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            last = (m.start(), text[m.end():i - 1])
    spaced = [m for m in re.finditer(r"\\boxed\s+([^\s$]+)", text)]
    if spaced and (last is None or spaced[-1].start() > last[0]):
        return spaced[-1].group(1).strip()
    return last[1].strip() if last else None


def format_answer(answer) -> str:
    """Reference answers as strings: 27.0 -> "27", 0.5 -> "0.5"."""
    if isinstance(answer, bool):
        return str(answer)
    if isinstance(answer, float):
        return str(int(answer)) if answer.is_integer() else repr(answer)
    return str(answer).strip()


def normalize_answer(s: str) -> str:
    """Light string normalization for the fast exact-match path (not a substitute for math-verify)."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ ", "", s)
    s = re.sub(r"\\text\{\s*\}", "", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


_CHOICE = re.compile(r"^\(?([A-E])\)?$")
_CHOICE_IN_PRED = re.compile(r"^(?:\\text(?:bf)?\{)?\s*\(?([A-E])\)?(?:[\s}:.]|$)")


def _choice_letter(s: str, pred: bool = False) -> str | None:
    s = s.strip().strip("$").strip()
    m = re.fullmatch(r"\\text(?:bf)?\{\s*(.*?)\s*\}", s)
    inner = m.group(1) if m else s
    m2 = _CHOICE.match(inner)
    if m2:
        return m2.group(1)
    if pred:
        m3 = _CHOICE_IN_PRED.match(s)
        if m3:
            return m3.group(1)
    return None


class _Worker:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.lock = threading.Lock()

    def _start(self, deadline: float) -> None:
        self.kill()
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "math_srl._verify_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.buf = b""
        line = self._readline(max(deadline, time.monotonic() + 60.0))  # first import of sympy may be slow
        if line is None:
            self.kill()
            raise TimeoutError("math-verify worker did not start")

    def _readline(self, deadline: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # worker died
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def check(self, gold: str, pred: str, timeout: float, *, _sleep: float = 0.0) -> bool:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start(time.monotonic() + timeout)
            assert self.proc is not None and self.proc.stdin is not None
            req = json.dumps({"gold": gold, "pred": pred, "t": max(1, int(timeout)), "sleep": _sleep}) + "\n"
            try:
                self.proc.stdin.write(req.encode("utf-8"))
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self.kill()
                return False
            line = self._readline(time.monotonic() + timeout)
            if line is None:  # timed out or died: kill it so no stale answer can be read later
                self.kill()
                return False
            try:
                return bool(json.loads(line).get("ok"))
            except json.JSONDecodeError:
                self.kill()
                return False

    def kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:
                pass
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f:
                        f.close()
                except Exception:
                    pass
        self.proc = None
        self.buf = b""


_WORKER: _Worker | None = None
_WORKER_PID: int | None = None
_GLOBAL_LOCK = threading.Lock()


def _worker() -> _Worker:
    global _WORKER, _WORKER_PID
    with _GLOBAL_LOCK:
        if _WORKER is None or _WORKER_PID != os.getpid():  # a forked child gets its own worker
            _WORKER, _WORKER_PID = _Worker(), os.getpid()
        return _WORKER


@atexit.register
def _shutdown() -> None:
    if _WORKER is not None and _WORKER_PID == os.getpid():
        _WORKER.kill()


def answers_equivalent(pred: str | None, gold, *, timeout: float = 5.0) -> bool:
    """Whether a predicted answer string (already extracted) equals the reference answer."""
    if pred is None:
        return False
    gold_s = format_answer(gold)
    if not pred.strip() or not gold_s:
        return False
    if normalize_answer(pred) == normalize_answer(gold_s):
        return True
    g_letter = _choice_letter(gold_s)
    if g_letter is not None:
        return _choice_letter(pred, pred=True) == g_letter
    try:
        return _worker().check(gold_s, pred, timeout)
    except Exception:
        return False


def answer_reward(completion: str, answer, *, timeout: float = 5.0) -> float:
    """RLVR reward: 1.0 if the completion's last ``\\boxed{}`` is equivalent to ``answer``, else 0.0.

    Never raises and never takes (much) longer than ``timeout`` seconds, in any thread."""
    try:
        return 1.0 if answers_equivalent(extract_boxed(completion), answer, timeout=timeout) else 0.0
    except Exception:
        return 0.0


def require_math_verify() -> None:
    """Raise a one-line ``TaskError`` when math-verify cannot be imported (answer grading needs it)."""
    try:
        found = importlib.util.find_spec("math_verify") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise TaskError("answer reward: math-verify is not importable (pip install 'math-verify>=0.8'); "
                        "refusing to grade answers by string equality")


class AnswerReward:
    """RLVR reward in TRL's signature: 1.0 when the completion's last ``\\boxed{}`` equals the ``answer`` column."""

    __name__ = "rlvr_answer_reward"   # TRL names the reward metrics after this

    def __init__(self, timeout: float = 5.0) -> None:
        require_math_verify()
        self.timeout = timeout

    def __call__(self, prompts: list, completions: list, answer: list[str],
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        out = [answer_reward(completion_text(c), a, timeout=self.timeout) for c, a in zip(completions, answer)]
        if log_metric is not None and out:
            log_metric("rlvr/accuracy", sum(out) / len(out))
        return out
