"""Per-step replay fidelity: how close a regenerated observation is to the recorded one, by command kind.

Both observations are first normalized (``normalize_observation``: CRLF, trailing blanks, timings, hex ids, memory
addresses, temp paths, dates and the repo root masked; Python >= 3.11 traceback caret lines dropped). Then:

- **raw** fidelity = difflib ratio (``autojunk=False``) of the two normalized texts; observations longer than
  ``LONG_CHARS`` together are compared line by line. Always kept (``fidelity_raw``).
- **scored** fidelity depends on the *command kind* of the action (``command_kind``):
  listing commands whose output order is not meaningful — ``find``, ``grep -r``/``-R`` (and ``git grep``), ``ls``
  without ``-l``, ``git status`` — are compared as **line multisets** (Dice coefficient of the two line bags:
  2·|A∩B| / (|A|+|B|), so the same lines in another order score 1.0); ``ls -l`` output has its timestamps
  (``Mon DD HH:MM`` / ``Mon DD  YYYY`` / ISO) masked before the raw comparison; every other kind is the raw ratio.
- **status**: ``exact`` (scored fidelity 1.0), ``near`` (>= ``DIVERGENCE_THRESHOLD`` = 0.9), ``diverged`` (below), or
  ``skipped`` (nothing to compare: the action could not be executed, nothing was recorded, or the replay failed).

A step's entry (``StepFidelity.as_meta``) is stored in each step record's ``meta["replay"]``; ``histogram`` counts
statuses per command kind (manifest ``replay_fidelity``, ``swe-srl inspect``, the stats PNG).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

DIVERGENCE_THRESHOLD = 0.9
LONG_CHARS = 12000
STATUSES = ("exact", "near", "diverged", "skipped")
#: command kinds whose output is compared as a line multiset
LISTING_KINDS = ("find", "grep -r", "ls", "git status")

_MASKS = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<DATE>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<CLOCK>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<ADDR>"),
    (re.compile(r"(?:/private)?/(?:tmp|var/folders|var/tmp)/[^\s'\"():,]+"), "<TMP>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|µs|us|ns|min)\b"), "<TIME>"),
    (re.compile(r"\bpid[ =:]\s*\d+", re.I), "pid <N>"),
]
# `ls -l` dates: "Oct  3 12:34", "Oct  3  2023", or --time-style=long-iso "2023-10-03 12:34"
_LS_DATE = re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\b"
                      r"|\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b")


# Python >= 3.11 traceback position markers (a line of only ^ and ~ under the code line): presentation only
_CARETS = re.compile(r"(?m)^[ \t]*[~^]+[ \t~^]*\n")


def normalize_observation(text: str, roots: tuple[str, ...] = ()) -> str:
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    t = _CARETS.sub("", t)
    for r in sorted({r.rstrip("/") for r in roots if r and r != "/"}, key=len, reverse=True):
        t = re.sub(re.escape(r) + r"(?=[/\s:\"'),]|$)", "<ROOT>", t)
    for rx, rep in _MASKS:
        t = rx.sub(rep, t)
    return "\n".join(line.rstrip() for line in t.split("\n")).strip("\n")


def observation_similarity(a: str, b: str) -> float:
    """The raw ratio (difflib, autojunk off); line-wise when the two are longer than LONG_CHARS together."""
    if a == b:
        return 1.0
    if len(a) + len(b) > LONG_CHARS:
        return difflib.SequenceMatcher(None, a.split("\n"), b.split("\n"), autojunk=False).ratio()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def multiset_similarity(a: str, b: str) -> float:
    """Dice coefficient of the two bags of non-empty lines (order ignored, duplicates counted)."""
    la = Counter(x for x in a.split("\n") if x.strip())
    lb = Counter(x for x in b.split("\n") if x.strip())
    total = sum(la.values()) + sum(lb.values())
    if total == 0:
        return 1.0
    return 2 * sum((la & lb).values()) / total


def mask_ls_dates(text: str) -> str:
    return _LS_DATE.sub("<LSDATE>", text)


# -- command kinds ----------------------------------------------------------------------------------------------
_SEGMENT_SPLIT = re.compile(r"\s*(?:&&|\|\||;|\n)\s*")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PREFIX = {"cd", "export", "source", ".", "set", "unset", "sleep", "true", "clear", "pwd"}
_WRAPPERS = {"sudo", "time", "timeout", "env", "nohup", "command", "exec", "xargs"}


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment, comments=False)
    except ValueError:
        return segment.split()


_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1[^\n]*\n.*?\n[ \t]*\2[ \t]*(?=\n|$)", re.S)
_WRITE = re.compile(r"^\s*(?:cat|echo|printf|tee)\b[^|]*(?:>|\btee\b)")


def _strip_heredocs(command: str) -> str:
    """Heredoc bodies removed (``cat > f.py << 'EOF' ... EOF`` -> ``cat > f.py``), so their lines are not commands."""
    return _HEREDOC.sub(lambda m: "<<" + m.group(2), command)


def _main_segment(command: str) -> list[str]:
    """Words of the first simple command that does the work, first pipe stage: cd/export/assignments are skipped,
    and so are file writes (``cat > f << EOF``, ``echo x > f``) when a command follows them (its output is what the
    observation shows)."""
    segs = [x for x in _SEGMENT_SPLIT.split(_strip_heredocs(command).strip()) if x.strip()]
    fallback: list[str] = []
    for k, seg in enumerate(segs):
        stage = seg.split("|", 1)[0].strip()
        if not stage:
            continue
        words = _words(stage)
        while words and (_ASSIGN.match(words[0]) or words[0] in _WRAPPERS):
            w = words.pop(0)
            if w == "timeout" and words and re.fullmatch(r"[\d.]+[smh]?", words[0]):
                words.pop(0)
        if not words or words[0] in _PREFIX:
            continue
        if _WRITE.match(seg):
            fallback = fallback or ["<write>"]
            if k + 1 < len(segs):
                continue
            return fallback
        return words
    return fallback


def bash_kind(command: str) -> str:
    """The kind of a shell command: find, grep -r, grep, ls, ls -l, git status, git <sub>, cat, sed, python,
    pytest, pip, echo, file-write, file-op, cd/env, other (by its main command's name, see ``_main_segment``)."""
    words = _main_segment(command)
    if not words:
        return "cd/env"
    if words == ["<write>"]:
        return "file-write"
    head = words[0].rsplit("/", 1)[-1]
    flags = [w for w in words[1:] if w.startswith("-") and not w.startswith("--")]
    longs = [w for w in words[1:] if w.startswith("--")]
    if head == "find":
        return "find"
    if head in ("grep", "egrep", "fgrep", "rg"):
        recursive = head == "rg" or any(set(f[1:]) & {"r", "R"} for f in flags) or "--recursive" in longs
        return "grep -r" if recursive else "grep"
    if head in ("ls", "ll", "dir"):
        long_ = head == "ll" or any("l" in f[1:] for f in flags) or "--format=long" in longs
        return "ls -l" if long_ else "ls"
    if head == "git":
        sub = next((w for w in words[1:] if not w.startswith("-")), "")
        if sub == "grep":
            return "grep -r"
        return f"git {sub}" if sub in ("status", "diff", "log", "show", "apply", "checkout", "stash") else "git"
    if head in ("python", "python3") or re.fullmatch(r"python3?\.\d+", head):
        if "-m" in words:
            mod = words[words.index("-m") + 1] if words.index("-m") + 1 < len(words) else ""
            if mod in ("pytest", "unittest"):
                return "pytest"
            if mod == "pip":
                return "pip"
        if any(w.endswith("runtests.py") for w in words[1:]):
            return "pytest"
        return "python"
    if head in ("pytest", "tox", "nosetests") or head.endswith("runtests.py"):
        return "pytest"
    if head in ("pip", "pip3", "conda"):
        return "pip"
    if head in ("cat", "head", "tail", "nl", "less", "more"):
        return "cat"
    if head in ("sed", "awk", "perl", "patch", "mv", "cp", "rm", "mkdir", "touch", "tee", "chmod"):
        return head if head in ("sed", "awk") else "file-op"
    if head in ("echo", "printf"):
        return "echo"
    if head == "wc":
        return "wc"
    return "other"


def command_kind(tool: str | None, arguments: dict[str, Any] | None = None) -> str:
    """Kind of an action: ``bash_kind`` for shell commands, ``str_replace_editor:<command>``, or the tool name."""
    args = arguments or {}
    if tool == "bash":
        return bash_kind(str(args.get("command", "")))
    if tool == "str_replace_editor":
        return f"str_replace_editor:{args.get('command', '?')}"
    return tool or "unknown"


# -- scoring ----------------------------------------------------------------------------------------------------
@dataclass
class StepFidelity:
    kind: str
    fidelity: float | None          # the scored fidelity (multiset for listings, dates masked for ls -l)
    raw: float | None               # the raw difflib ratio of the normalized texts
    status: str                     # exact | near | diverged | skipped
    method: str = "raw"             # raw | multiset | ls-l-dates
    reason: str | None = None       # why skipped

    def as_meta(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "fidelity": _r(self.fidelity), "fidelity_raw": _r(self.raw),
                             "status": self.status, "method": self.method}
        if self.reason:
            d["reason"] = self.reason
        return d


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def status_of(fidelity: float | None) -> str:
    if fidelity is None:
        return "skipped"
    if fidelity >= 1.0:
        return "exact"
    return "near" if fidelity >= DIVERGENCE_THRESHOLD else "diverged"


def score_step(kind: str, replayed: str | None, recorded: str | None, roots: tuple[str, ...] = (),
               skip_reason: str | None = None) -> StepFidelity:
    """Fidelity of one step's regenerated observation against the recorded one (None on either side: skipped)."""
    if replayed is None or recorded is None:
        reason = skip_reason or ("nothing recorded" if recorded is None else "not replayed")
        return StepFidelity(kind, None, None, "skipped", "none", reason)
    a = normalize_observation(replayed, roots)
    b = normalize_observation(recorded, roots)
    raw = observation_similarity(a, b)
    if kind in LISTING_KINDS:
        scored, method = max(raw, multiset_similarity(a, b)), "multiset"
    elif kind == "ls -l":
        scored, method = max(raw, observation_similarity(mask_ls_dates(a), mask_ls_dates(b))), "ls-l-dates"
    else:
        scored, method = raw, "raw"
    return StepFidelity(kind, scored, raw, status_of(scored), method)


def histogram(steps: Iterable[dict[str, Any] | StepFidelity]) -> dict[str, dict[str, int]]:
    """{kind: {exact, near, diverged, skipped}} plus a ``total`` row, from step entries (``as_meta`` dicts)."""
    out: dict[str, dict[str, int]] = {}
    for s in steps:
        d = s.as_meta() if isinstance(s, StepFidelity) else s
        row = out.setdefault(str(d.get("kind") or "unknown"), dict.fromkeys(STATUSES, 0))
        row[str(d.get("status") or "skipped")] += 1
    total = dict.fromkeys(STATUSES, 0)
    for row in out.values():
        for k in STATUSES:
            total[k] += row[k]
    return {**dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values()))), "total": total}


def merge_histograms(hists: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for h in hists:
        for kind, row in (h or {}).items():
            if kind == "total":
                continue
            acc = out.setdefault(kind, dict.fromkeys(STATUSES, 0))
            for k in STATUSES:
                acc[k] += int(row.get(k, 0))
    total = dict.fromkeys(STATUSES, 0)
    for row in out.values():
        for k in STATUSES:
            total[k] += row[k]
    return {**dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values()))), "total": total}


def shares(row: dict[str, int]) -> dict[str, float]:
    """exact / near / diverged shares of the compared (non-skipped) steps."""
    n = sum(row.get(k, 0) for k in ("exact", "near", "diverged"))
    return {k: round(row.get(k, 0) / n, 4) if n else 0.0 for k in ("exact", "near", "diverged")}


# -- final patch --------------------------------------------------------------------------------------------------
def normalize_patch(patch: str) -> str:
    """Per-file blocks sorted by path, ``index`` and file-mode lines dropped, trailing blanks stripped."""
    return "\n".join(b for _, b in sorted(patch_blocks(patch).items()))


def patch_blocks(patch: str | None) -> dict[str, str]:
    """{path: normalized block} of a unified git diff (``index`` lines dropped, trailing blanks stripped; file-mode
    lines dropped and mode-only blocks skipped: locally built images commit ``/testbed`` after ``chmod -R 777``, so
    a file an agent rewrites shows 100755 -> 100644 there and not in the recording)."""
    out: dict[str, str] = {}
    if not patch:
        return out
    for b in re.split(r"(?m)^(?=diff --git )", patch.replace("\r\n", "\n")):
        if not b.strip().startswith("diff --git"):
            continue
        lines = [ln.rstrip() for ln in b.strip("\n").split("\n")
                 if not ln.startswith(("index ", "old mode ", "new mode "))]
        if len(lines) == 1:
            continue                      # a mode-only change: the image's file modes, not the submission's content
        m = re.match(r"diff --git (?:\"?a/(.+?)\"? \"?b/(.+?)\"?)$", lines[0])
        path = (m.group(2) if m else lines[0][len("diff --git "):]).strip()
        out[path] = "\n".join(lines)
    return out


def compare_final_patch(recorded: str | None, submitted: str | None, tree: str | None) -> dict[str, Any]:
    """The final-patch check *as submitted*.

    ``recorded``: the submission in the trajectory; ``submitted``: what the replayed agent's own submit produced (the
    ``cat patch.txt`` output of mini-swe-agent, the diff of SWE-agent's ``submit``); ``tree``: the whole-tree diff of
    the replayed sandbox at the end. ``patch_match``: every file the recorded submission names has the identical
    diff in the replayed tree; ``submission_match``: the replayed submission equals the recorded one;
    ``tree_extra_files``: files the replayed tree changes that the submission does not name (scratch files);
    ``whole_tree_match``: the whole-tree diff equals the submission (the old, strict check)."""
    rec = patch_blocks(recorded)
    sub = patch_blocks(submitted)
    tr = patch_blocks(tree)
    out: dict[str, Any] = {"recorded": recorded is not None}
    if recorded is None:
        out.update(patch_match=None, submission_match=None, whole_tree_match=None, submitted_files=0,
                   matched_files=0, mismatched_files=[], tree_extra_files=sorted(tr))
        return out
    matched = [f for f in rec if tr.get(f) == rec[f]]
    mismatched = sorted(f for f in rec if tr.get(f) != rec[f])
    out.update(
        patch_match=(not mismatched) if tree is not None else None,
        submission_match=(normalize_patch(submitted) == normalize_patch(recorded)) if submitted is not None else None,
        whole_tree_match=(normalize_patch(tree) == normalize_patch(recorded)) if tree is not None else None,
        submitted_files=len(rec), matched_files=len(matched), mismatched_files=mismatched,
        tree_extra_files=sorted(f for f in tr if f not in rec),
    )
    if submitted is not None:
        out["submitted_missing_files"] = sorted(f for f in rec if f not in sub)
    return out
