"""Known data hazards of public SWE trajectory sets, found per trajectory (the collector counts and filters them).

* Evaluation-set contamination: a trajectory whose instance is in an evaluation set (SWE-bench Verified / Lite)
  teaches the test answers. ``load_eval_sets("verified,lite")`` reads the sets from local files (the shared data
  folders ``swe_bench_verified`` / ``swe_bench_lite`` under ``$SWE_SRL_SHARED_DATA`` or ``<repo>/../shared/data``),
  a FILE (jsonl/json rows with ``instance_id`` [+ ``repo``, ``base_commit``], or one id per line), or, as a last
  resort, the hub (``datasets.load_dataset``; a one-line error when it cannot be reached). ``EvalSets.match`` checks
  the instance id (also with an ADP ``_<n>`` suffix removed) and, when both sides know it, ``repo@base_commit``.
* Future leak (mini-swe-agent#787): task images keep the repository's later history, and ``git log --all`` /
  ``git show <later commit>`` / ``git reflog`` hand the agent the upstream fix. ``future_leak_steps`` flags steps
  whose command reads git history and whose output lists commits newer than the base commit (commits listed
  before the base commit in the output, or, with the base unknown, any commit from a history walk that reaches
  beyond HEAD: ``--all``, ``--branches``, ``--remotes``, ``--tags``, ``reflog``, ``origin/…``, ``FETCH_HEAD`` ...;
  a later ``git show`` of a commit such a step revealed is flagged too).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from swe_srl.core.errors import SweSrlError

EVAL_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name -> (shared-data folder, hub ids tried last)
    "verified": ("swe_bench_verified", ("SWE-bench/SWE-bench_Verified", "princeton-nlp/SWE-bench_Verified")),
    "lite": ("swe_bench_lite", ("SWE-bench/SWE-bench_Lite", "princeton-nlp/SWE-bench_Lite")),
}
_ADP_SUFFIX = re.compile(r"^(.+-\d+)_\d+$")


class EvalSetError(SweSrlError, ValueError):
    """An --exclude-eval entry that cannot be loaded (one line)."""


@dataclass
class EvalSets:
    ids: dict[str, str] = field(default_factory=dict)                   # instance id -> set name
    commits: dict[tuple[str, str], str] = field(default_factory=dict)   # (repo, base_commit) -> set name
    sizes: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def match(self, instance_id: str, repo: str | None = None, base_commit: str | None = None) -> str | None:
        """The eval set an instance belongs to (None: clean)."""
        if instance_id in self.ids:
            return self.ids[instance_id]
        m = _ADP_SUFFIX.match(instance_id)
        if m and m.group(1) in self.ids:
            return self.ids[m.group(1)]
        if repo and base_commit:
            return self.commits.get((repo, base_commit))
        return None


def _shared_dirs() -> list[Path]:
    out = []
    if os.environ.get("SWE_SRL_SHARED_DATA"):
        out.append(Path(os.environ["SWE_SRL_SHARED_DATA"]))
    out.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return out


def _rows_of_file(path: Path) -> Iterable[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    s = text.lstrip()
    if s.startswith("["):
        for r in json.loads(s):
            yield r if isinstance(r, dict) else {"instance_id": str(r)}
        return
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            yield json.loads(line)
        else:
            yield {"instance_id": line}


def _add(sets: EvalSets, name: str, rows: Iterable[dict[str, Any]], source: str) -> None:
    n = 0
    for r in rows:
        iid = r.get("instance_id")
        if not isinstance(iid, str) or not iid:
            continue
        n += 1
        sets.ids.setdefault(iid, name)
        if isinstance(r.get("repo"), str) and isinstance(r.get("base_commit"), str):
            sets.commits.setdefault((r["repo"], r["base_commit"]), name)
    if not n:
        raise EvalSetError(f"--exclude-eval {name}: {source} holds no instance ids")
    sets.sizes[name] = n
    sets.sources[name] = source


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in (".jsonl", ".json", ".txt") and p.is_file())


def load_eval_sets(spec: str) -> EvalSets:
    """``verified,lite,path/to/ids.jsonl`` -> EvalSets; raises EvalSetError (one line)."""
    sets = EvalSets()
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        p = Path(item)
        if p.is_file():
            try:
                _add(sets, p.name, _rows_of_file(p), str(p))
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                raise EvalSetError(f"--exclude-eval {item}: cannot read ({type(e).__name__}: {e})"[:300]) from None
            continue
        key = item.lower()
        if key not in EVAL_SETS:
            raise EvalSetError(f"--exclude-eval {item}: neither a file nor a known set ({', '.join(EVAL_SETS)})")
        folder, hub_ids = EVAL_SETS[key]
        found = next((f for d in _shared_dirs() for f in _files_in(d / folder)), None)
        if found is not None:
            _add(sets, key, _rows_of_file(found), str(found))
            continue
        _add(sets, key, _hub_rows(item, hub_ids), f"hub:{hub_ids[0]}")
    return sets


def _hub_rows(item: str, hub_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise EvalSetError(f"--exclude-eval {item}: no local copy and the 'datasets' package is missing; pass the "
                           f"set as a FILE") from None
    last = ""
    for hid in hub_ids:
        try:
            ds = datasets.load_dataset(hid, split="test")
            return [{"instance_id": r["instance_id"], "repo": r.get("repo"), "base_commit": r.get("base_commit")}
                    for r in ds]
        except Exception as e:  # noqa: BLE001 - unreachable hub / unknown id
            last = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]
    raise EvalSetError(f"--exclude-eval {item}: no local copy and the hub cannot be reached ({last}); pass the set "
                       f"as a FILE (jsonl rows with instance_id, or one id per line)")


# -- future leak ---------------------------------------------------------------------------------------------------
_GIT_HIST = re.compile(r"\bgit\b(?:\s+(?:-C\s+\S+|-c\s+\S+|--no-pager|--git-dir=\S+))*\s+"
                       r"(log|show|reflog|rev-list|whatchanged|shortlog|cherry|for-each-ref|branch|tag|describe)\b")
_BEYOND = re.compile(r"(?:--all|--branches|--remotes|--tags|--glob|--reflog|--contains)\b|\breflog\b|\borigin/|"
                     r"\bupstream/|FETCH_HEAD|ORIG_HEAD|@\{u(?:pstream)?\}|\bbranch\s+-[ar]\b|\bfor-each-ref\b")
_COMMIT_LINE = re.compile(r"^(?:\*[\s|/\\]*)?(?:commit\s+)?([0-9a-f]{7,40})\b", re.MULTILINE)
_HEX = re.compile(r"\b[0-9a-f]{7,40}\b")


def _command_of(action: str) -> str | None:
    if not action.startswith("<function=bash>"):
        return None
    a = action.find("<parameter=command>")
    if a < 0:
        return None
    b = action.rfind("</parameter>")
    return action[a + len("<parameter=command>"):b]


def _same(h: str, base: str) -> bool:
    return base.startswith(h) or h.startswith(base)


def future_leak_steps(steps: list[Any], base_commit: str | None) -> dict[int, str]:
    """{step index: why} for the steps whose observation shows commits after the base (see module doc)."""
    out: dict[int, str] = {}
    revealed: set[str] = set()
    for i, st in enumerate(steps):
        cmd = _command_of(st.action)
        obs = st.observation or ""
        if cmd is None or not obs or not _GIT_HIST.search(cmd):
            continue
        listed = _COMMIT_LINE.findall(obs)
        beyond = bool(_BEYOND.search(cmd))
        why = None
        if revealed and any(h in revealed or any(_same(h, r) for r in revealed) for h in _HEX.findall(cmd)):
            why = "shows a commit revealed by an earlier history step"
        elif listed and base_commit:
            idx = next((k for k, h in enumerate(listed) if _same(h, base_commit)), None)
            if idx is not None and idx > 0:
                why = f"lists {idx} commit(s) newer than the base commit"
                revealed.update(listed[:idx])
            elif idx is None and beyond:
                why = "walks history beyond HEAD; the base commit is not among the commits shown"
                revealed.update(listed)
        elif listed and beyond:
            why = "walks history beyond HEAD (base commit unknown)"
            revealed.update(listed)
        if why:
            out[i] = why
    return out
