"""SEARCH/REPLACE edits (Agentless / SWE-RL Agentless-mini style): parse, apply, syntax-check, diff.

An answer contains blocks of the form (the surrounding ```python fences are optional)::

    ### path/to/file.py
    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

Application rules (documented in docs/paper-fidelity.md):

- the SEARCH text is looked up in the current file content (edits to one file apply in order);
- exact match first; when it occurs more than once, the FIRST occurrence is replaced and the edit is flagged
  ``ambiguous``;
- fallback (``whitespace_tolerant=True``): line-wise match ignoring trailing whitespace / CR, then a match that ignores
  a constant indentation offset, in which case the REPLACE lines are re-indented by the same offset;
- CRLF files are matched in LF form and written back with CRLF;
- an empty SEARCH is only allowed on an empty file;
- any edit that does not match, or names a file that is not given, makes the whole answer invalid;
- an answer that changes nothing (no blocks, or only no-op edits) gives an empty patch;
- every edited ``.py`` file must still compile; the patch is a git-style unified diff validated with unidiff.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from ..core.errors import SweSrlError

SEARCH_MARK, DIVIDER, REPLACE_MARK = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
_HEADER_RE = re.compile(r"^\s*#{3}\s+(\S.*?)\s*$")
_FENCE_RE = re.compile(r"^\s*```")


@dataclass(frozen=True)
class Edit:
    path: str
    search: str
    replace: str


class EditError(SweSrlError, ValueError):
    """An answer whose edits cannot be applied; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _norm_path(p: str) -> str:
    p = p.strip().strip("`").strip()
    for prefix in ("./", "/testbed/"):
        if p.startswith(prefix):
            p = p[len(prefix):]
    return p.lstrip("/")


def _resolve(path: str, files: dict[str, str]) -> str | None:
    """The given path, or it without a git-style ``a/`` / ``b/`` prefix, when that is one of the files."""
    if path in files:
        return path
    if path[:2] in ("a/", "b/") and path[2:] in files:
        return path[2:]
    return None


def parse_edits(text: str) -> list[Edit]:
    """All SEARCH/REPLACE blocks of ``text``, each attached to the last ``### path`` header before it.
    Raises EditError('malformed_edit') on an unterminated block or a block without a file header."""
    lines = text.replace("\r\n", "\n").split("\n")
    edits: list[Edit] = []
    path: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _HEADER_RE.match(line)
        if m and not line.strip().startswith(SEARCH_MARK):
            path = _norm_path(m.group(1))
            i += 1
            continue
        if line.strip() == SEARCH_MARK:
            if path is None:
                raise EditError("malformed_edit", "SEARCH block without a '### path' header")
            search: list[str] = []
            replace: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != DIVIDER:
                if lines[i].strip() in (SEARCH_MARK, REPLACE_MARK):
                    raise EditError("malformed_edit", "SEARCH block without '======='")
                search.append(lines[i])
                i += 1
            if i >= len(lines):
                raise EditError("malformed_edit", "unterminated SEARCH block")
            i += 1
            while i < len(lines) and lines[i].strip() != REPLACE_MARK:
                if lines[i].strip() in (SEARCH_MARK, DIVIDER):
                    raise EditError("malformed_edit", "REPLACE block without '>>>>>>> REPLACE'")
                replace.append(lines[i])
                i += 1
            if i >= len(lines):
                raise EditError("malformed_edit", "unterminated REPLACE block")
            edits.append(Edit(path, "\n".join(search), "\n".join(replace)))
        i += 1
    return edits


@dataclass
class ApplyResult:
    files: dict[str, str]                       # path -> new content (only changed files)
    notes: list[str] = field(default_factory=list)


def _indent(s: str) -> str:
    return s[: len(s) - len(s.lstrip(" \t"))]


def _apply_one(content: str, edit: Edit, *, whitespace_tolerant: bool, notes: list[str]) -> str:
    search, replace = edit.search, edit.replace
    if search.strip() == "":
        if content.strip() == "":
            return replace + ("\n" if replace and not replace.endswith("\n") else "")
        raise EditError("empty_search", edit.path)
    n = content.count(search)
    if n >= 1:
        # Match whole lines when possible so that "x" in "xx = 1" does not win over the line "x".
        if n > 1:
            notes.append(f"ambiguous:{edit.path}")
        i = content.find(search)
        return content[:i] + replace + content[i + len(search):]
    if not whitespace_tolerant:
        raise EditError("search_not_found", edit.path)
    flines = content.split("\n")
    slines = search.split("\n")
    while slines and not slines[0].strip():
        slines = slines[1:]
    while slines and not slines[-1].strip():
        slines = slines[:-1]
    rlines = replace.split("\n")
    if not slines:
        raise EditError("empty_search", edit.path)
    k = len(slines)
    # 1) trailing-whitespace-insensitive
    for i in range(len(flines) - k + 1):
        if all(flines[i + j].rstrip() == slines[j].rstrip() for j in range(k)):
            notes.append(f"fuzzy_trailing_ws:{edit.path}")
            return "\n".join(flines[:i] + rlines + flines[i + k:])
    # 2) constant indentation offset
    first = next(j for j, s in enumerate(slines) if s.strip())
    s_ind = _indent(slines[first])
    for i in range(len(flines) - k + 1):
        f_ind = _indent(flines[i + first])
        ok = True
        for j in range(k):
            f, s = flines[i + j].rstrip(), slines[j].rstrip()
            if not s.strip() and not f.strip():
                continue
            if not s.startswith(s_ind) or not f.startswith(f_ind) or f[len(f_ind):] != s[len(s_ind):]:
                ok = False
                break
        if ok:
            notes.append(f"fuzzy_indent:{edit.path}")
            new = []
            for r in rlines:
                if not r.strip():
                    new.append(r)
                elif r.startswith(s_ind):
                    new.append(f_ind + r[len(s_ind):])
                else:
                    new.append(r)
            return "\n".join(flines[:i] + new + flines[i + k:])
    raise EditError("search_not_found", edit.path)


def apply_edits(files: dict[str, str], edits: list[Edit], *, whitespace_tolerant: bool = True) -> ApplyResult:
    """Apply ``edits`` to ``files`` (path -> original content). Returns only the files whose content changed.
    Raises EditError on a missing file or a SEARCH text that cannot be found."""
    notes: list[str] = []
    current: dict[str, str] = {}
    crlf: dict[str, bool] = {}
    for e in edits:
        path = _resolve(e.path, files)
        if path is None:
            raise EditError("missing_file", e.path)
        e = Edit(path, e.search, e.replace)
        if e.path not in current:
            orig = files[e.path]
            crlf[e.path] = "\r\n" in orig
            current[e.path] = orig.replace("\r\n", "\n")
        current[e.path] = _apply_one(current[e.path], e, whitespace_tolerant=whitespace_tolerant, notes=notes)
    changed = {}
    for p, c in current.items():
        if crlf[p]:
            c = c.replace("\n", "\r\n")
        if c != files[p]:
            changed[p] = c
    return ApplyResult(changed, notes)


def check_syntax(path: str, content: str) -> str | None:
    """None when a .py file compiles (other files always pass), else the error message."""
    if not path.endswith(".py"):
        return None
    try:
        compile(content, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _split_keep(s: str) -> list[str]:
    return s.splitlines(keepends=True)


def make_unified_diff(original: dict[str, str], changed: dict[str, str], *, context: int = 3) -> str:
    """git-style unified diff (``diff --git a/p b/p``) from original to changed contents, files sorted by path."""
    out: list[str] = []
    for path in sorted(changed):
        a = _split_keep(original.get(path, ""))
        b = _split_keep(changed[path])
        body = list(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=context))
        if not body:
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        for line in body:
            if line.endswith("\n"):
                out.append(line)
            else:  # last line of a file without a trailing newline
                out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def validate_patch(patch: str) -> str | None:
    """None when ``patch`` parses as a non-empty unified diff (unidiff), else the reason."""
    from unidiff import PatchSet
    from unidiff.errors import UnidiffParseError

    if not patch.strip():
        return "empty"
    try:
        ps = PatchSet(patch)
    except UnidiffParseError as e:
        return f"unidiff: {e}"
    if len(ps) == 0:
        return "unidiff: no files"
    return None


@dataclass
class PatchResult:
    patch: str                      # "" when invalid
    reason: str | None              # None when a valid non-empty patch was produced
    notes: list[str] = field(default_factory=list)
    edits: int = 0


def answer_to_patch(answer: str, files: dict[str, str], *, whitespace_tolerant: bool = True) -> PatchResult:
    """Model answer (the action after ``</think>``) + original file contents -> validated patch, or an empty
    patch with the reason (malformed_edit, no_edits, missing_file, search_not_found, empty_search, no_change,
    syntax_error, invalid_diff)."""
    try:
        edits = parse_edits(answer)
        if not edits:
            return PatchResult("", "no_edits")
        res = apply_edits(files, edits, whitespace_tolerant=whitespace_tolerant)
    except EditError as e:
        return PatchResult("", e.reason, [e.detail] if e.detail else [])
    if not res.files:
        return PatchResult("", "no_change", res.notes, len(edits))
    for p, c in res.files.items():
        err = check_syntax(p, c)
        if err:
            return PatchResult("", "syntax_error", res.notes + [f"{p}: {err}"], len(edits))
    patch = make_unified_diff(files, res.files)
    bad = validate_patch(patch)
    if bad:
        return PatchResult("", "invalid_diff", res.notes + [bad], len(edits))
    return PatchResult(patch, None, res.notes, len(edits))
