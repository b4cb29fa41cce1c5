"""Edit-path self-check: the gold patch written as the oracle answer a perfect model would give, run through the code
that turns MODEL OUTPUT into a patch (``predict.repair_from_completion``: ``split_answer`` -> ``parse_edits`` ->
``apply_edits`` -> syntax check -> ``make_unified_diff`` -> ``validate_patch``), must change the files exactly as
the gold patch does (and, where an image exists, resolve the same instances).

``gold_answer(patch, files)``: every hunk of every oracle file (the ``.py`` files the gold patch modifies, the files
the oracle prompt shows) becomes one SEARCH/REPLACE block in the answer format of ``prompts.REPAIR_TEMPLATE``. Its
SEARCH is the hunk's old lines (context + removed), widened by neighbouring lines of the file AS IT IS WHEN THE EDIT
APPLIES (edits to one file apply in order) until it occurs exactly once there, so that the applier's
first-occurrence rule picks the hunk's place; REPLACE is the same span with the hunk's new lines.

``check_instance(instance, source)`` compares, file by file, the contents after ``git apply`` of the produced patch
with the contents after ``git apply`` of the gold patch, both on the base_commit files read from ``source``. Files
the gold patch touches outside the oracle scope (created, deleted, non-``.py``) cannot be edited through the oracle
prompt; they are listed (``outside_oracle``), not counted as failures of the edit path.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .dataset import oracle_files, patch_files
from .edits import DIVIDER, REPLACE_MARK, SEARCH_MARK
from .predict import repair_from_completion
from .sources import FileSource
from ..core.errors import SweSrlError

THINK = "<think>The gold patch, written as SEARCH/REPLACE edits.</think>\n"
_MARKERS = {SEARCH_MARK, DIVIDER, REPLACE_MARK}


class ConversionError(SweSrlError, ValueError):
    """A hunk that cannot be written as a SEARCH/REPLACE block (``reason``: short code)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _block(path: str, search: str, replace: str) -> str:
    if search.endswith("\n") and replace.endswith("\n"):
        search, replace = search[:-1], replace[:-1]
    body = [f"### {path}", SEARCH_MARK, search, DIVIDER] + ([replace] if replace else []) + [REPLACE_MARK]
    return "```python\n" + "\n".join(body) + "\n```"


def _lines(s: str) -> list[str]:
    """Lines with their ``\n`` (only ``\n`` ends a line, as in a diff; str.splitlines also splits on \f etc.)."""
    parts = s.split("\n")
    return [x + "\n" for x in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _unique_at(text: str, needle: str, at: int) -> bool:
    return bool(needle.strip()) and text.find(needle) == at and text.find(needle, at + 1) == -1


def file_blocks(path: str, content: str, hunks: list[Any]) -> list[str]:
    """SEARCH/REPLACE blocks for the unidiff ``hunks`` of one file (see the module docstring)."""
    cur = _lines(content.replace("\r\n", "\n"))
    offset = 0
    blocks = []
    for h in hunks:
        old = [ln.value.replace("\r\n", "\n") for ln in h if ln.is_context or ln.is_removed]
        new = [ln.value.replace("\r\n", "\n") for ln in h if ln.is_context or ln.is_added]
        a = _locate(cur, old, (h.source_start - 1 if h.source_length else h.source_start) + offset)
        if a is None:
            raise ConversionError("hunk_mismatch", f"{path}: hunk @@ -{h.source_start} does not match the file")
        offset = a - (h.source_start - 1 if h.source_length else h.source_start)   # the drift carries on, as git's
        b = a + len(old)
        text = "".join(cur)
        lo, hi, step = a, b, 0
        while True:
            search = "".join(cur[lo:hi])
            replace = "".join(cur[lo:a]) + "".join(new) + "".join(cur[b:hi])
            applied = search[:-1] if search.endswith("\n") and replace.endswith("\n") else search
            if _unique_at(text, applied, len("".join(cur[:lo]))) or (lo == 0 and hi == len(cur)):
                break
            if (step % 2 == 0 and hi < len(cur)) or lo == 0:
                hi += 1                      # widen below, then above, alternately
            else:
                lo -= 1
            step += 1
        if any(x.rstrip("\r\n").strip() in _MARKERS for x in cur[lo:hi] + new):
            raise ConversionError("marker_line", f"{path}: a line of the edit is a SEARCH/REPLACE marker")
        blocks.append(_block(path, search, replace))
        cur[lo:hi] = _lines(replace)
        offset += len(new) - len(old)
    return blocks


def _locate(cur: list[str], old: list[str], at: int) -> int | None:
    """Where the hunk's old lines are: at the line the hunk header says, else the nearest place (a patch whose
    line numbers are off, which ``git apply`` accepts with an offset)."""
    n = len(old)
    for d in range(0, len(cur) + 1):
        for i in ((at,) if d == 0 else (at - d, at + d)):
            if 0 <= i <= len(cur) - n and cur[i:i + n] == old:
                return i
    return None


def gold_answer(patch: str, files: dict[str, str]) -> str:
    """The oracle answer (``<think>`` + SEARCH/REPLACE blocks) that edits ``files`` (the oracle files, path ->
    base content) as ``patch`` does. Files of the patch that are not in ``files`` are left out."""
    from unidiff import PatchSet

    blocks: list[str] = []
    for f in PatchSet(patch):
        path = f.target_file[2:] if f.target_file.startswith("b/") else f.target_file
        if path in files and not (f.is_added_file or f.is_removed_file):
            blocks += file_blocks(path, files[path], list(f))
    return THINK + "\n\n".join(blocks) + "\n"


def _git_apply(root: Path, patch: str) -> str | None:
    """None when ``git apply`` (strict: no fuzz, no reject) applies ``patch`` under ``root``, else its error."""
    (root / ".selfcheck.diff").write_text(patch, encoding="utf-8", errors="surrogateescape")
    r = subprocess.run(["git", "apply", "--whitespace=nowarn", ".selfcheck.diff"], cwd=root, capture_output=True,
                       text=True)
    (root / ".selfcheck.diff").unlink()
    return None if r.returncode == 0 else (r.stderr or r.stdout).strip()[:300]


def _tree(root: Path, files: dict[str, str]) -> None:
    for p, c in files.items():
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(c.encode("utf-8", errors="surrogateescape"))


def _read(root: Path, paths: list[str]) -> dict[str, str | None]:
    return {p: (root / p).read_bytes().decode("utf-8", errors="surrogateescape") if (root / p).is_file() else None
            for p in paths}


def edit_path_patch(instance: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """The gold answer and what the model-output path makes of it: {answer, model_patch, reason, notes}."""
    answer = gold_answer(instance["patch"], files)
    return {"answer": answer, **repair_from_completion(answer, files)}


def check_instance(instance: dict[str, Any], source: FileSource) -> dict[str, Any]:
    """One instance of the self-check (see the module docstring). ``ok`` is True when the produced patch applies
    with ``git apply`` and every oracle file ends up byte-identical to the gold result."""
    t0 = time.time()
    iid = instance["instance_id"]
    kinds = patch_files(instance["patch"])
    oracle = oracle_files(instance)
    rec: dict[str, Any] = {"instance_id": iid, "repo": instance.get("repo", ""), "oracle_files": oracle,
                           "outside_oracle": [f"{p} ({k})" for p, k in kinds if p not in oracle]}
    try:
        base = source.read(instance, [p for p, k in kinds if k != "added"])
    except Exception as e:
        return {**rec, "ok": False, "cause": f"source_error: {type(e).__name__}: {str(e)[:200]}"}
    files = {p: base[p] for p in oracle}
    try:
        out = edit_path_patch(instance, files)
    except ConversionError as e:
        return {**rec, "ok": False, "cause": f"conversion: {e}"}
    rec.update(blocks=out["answer"].count(SEARCH_MARK), hunks=_hunks(instance["patch"], oracle),
               notes=out.get("notes") or [])
    if out["reason"] is not None:
        return {**rec, "ok": False, "cause": f"edit_path: {out['reason']}", "patch_valid": False}
    rec["patch_valid"] = True
    with tempfile.TemporaryDirectory(prefix="swe-srl-selfcheck-") as tmp:
        gold_root, edit_root = Path(tmp) / "gold", Path(tmp) / "edit"
        _tree(gold_root, base)
        _tree(edit_root, base)
        err = _git_apply(gold_root, instance["patch"])
        if err:
            return {**rec, "ok": False, "cause": f"gold_patch_does_not_apply: {err}"}
        err = _git_apply(edit_root, out["model_patch"])
        if err:
            return {**rec, "ok": False, "cause": f"produced_patch_does_not_apply: {err}"}
        want, got = _read(gold_root, oracle), _read(edit_root, oracle)
    differ = [p for p in oracle if want[p] != got[p]]
    rec.update(identical_files=len(oracle) - len(differ), differing_files=differ,
               patch_chars=len(out["model_patch"]), seconds=round(time.time() - t0, 3))
    if differ:
        return {**rec, "ok": False, "cause": "content_differs: " + ", ".join(differ)}
    return {**rec, "ok": True, "cause": None}


def _hunks(patch: str, paths: list[str]) -> int:
    from unidiff import PatchSet

    return sum(len(f) for f in PatchSet(patch) if f.target_file[2:] in paths)


def summarize_checks(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r["ok"]]
    return {
        "instances": len(records),
        "identical": len(ok),
        "failed": len(records) - len(ok),
        "oracle_files": sum(len(r["oracle_files"]) for r in records),
        "identical_files": sum(r.get("identical_files", 0) for r in records),
        "hunks": sum(r.get("hunks", 0) for r in records),
        "instances_with_files_outside_oracle": sum(1 for r in records if r["outside_oracle"]),
        "failures": [{"instance_id": r["instance_id"], "cause": r["cause"]} for r in records if not r["ok"]],
    }
