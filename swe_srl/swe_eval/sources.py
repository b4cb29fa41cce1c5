"""Where file contents at ``base_commit`` come from (oracle / e2e modes).

- ``RepoDirSource(repos_dir)`` (``--repos-dir DIR``), per instance, first match wins:
    ``DIR/<instance_id>/``     a snapshot of the repository at base_commit (plain tree or a checkout; read as is);
    ``DIR/<owner>__<name>/``   a git clone or bare mirror (also ``<owner>__<name>.git``, e.g. ../shared/data/repos);
                               contents are read from the base_commit tree (gitpython), nothing is written.
- ``ImageSource(image_for)``: the instance image's repository (``/testbed``, already at base_commit), read through a
  sandbox (``environments.sandbox.DockerSandbox``).

Every source caches what it read (in memory, and under ``cache_dir`` when given).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any, Callable, Protocol

from environments.sandbox import DockerSandbox
from ..core.errors import SweSrlError

SKIP_DIRS = {".git", "__pycache__", ".tox", ".eggs", "node_modules", ".mypy_cache", ".pytest_cache"}


class SourceError(SweSrlError, RuntimeError):
    pass


class FileSource(Protocol):
    def read(self, instance: dict[str, Any], paths: list[str]) -> dict[str, str]: ...

    def list_files(self, instance: dict[str, Any]) -> list[str]: ...


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


class _Cached:
    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._mem: dict[tuple[str, str], Any] = {}

    def _key_path(self, inst: dict[str, Any], what: str) -> Path | None:
        if self.cache_dir is None:
            return None
        h = hashlib.sha1(what.encode()).hexdigest()[:16]
        return self.cache_dir / inst["instance_id"] / f"{h}.json"

    def _cached(self, inst: dict[str, Any], what: str, compute: Callable[[], Any]) -> Any:
        key = (inst["instance_id"], what)
        if key in self._mem:
            return self._mem[key]
        p = self._key_path(inst, what)
        if p is not None and p.exists():
            val = json.loads(p.read_text())
        else:
            val = compute()
            if p is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_suffix(".tmp")
                tmp.write_text(json.dumps(val))
                os.replace(tmp, p)
        self._mem[key] = val
        return val


class RepoDirSource(_Cached):
    def __init__(self, repos_dir: str | Path, cache_dir: str | Path | None = None) -> None:
        super().__init__(cache_dir)
        self.root = Path(repos_dir)
        if not self.root.is_dir():
            raise SourceError(f"--repos-dir {self.root}: not a directory")

    def _locate(self, inst: dict[str, Any]) -> tuple[str, Path]:
        snap = self.root / inst["instance_id"]
        if snap.is_dir():
            return "snapshot", snap
        clone = self.root / inst["repo"].replace("/", "__")
        for c in (clone, clone.with_name(clone.name + ".git")):       # a clone, or a bare mirror NAME.git
            if c.exists():
                return "git", c
        raise SourceError(f"{inst['instance_id']}: neither {snap} nor {clone} exists in --repos-dir")

    def _commit(self, clone: Path, inst: dict[str, Any]) -> Any:
        import git

        try:
            return git.Repo(clone).commit(inst["base_commit"])
        except Exception as e:
            raise SourceError(f"{inst['instance_id']}: base_commit {inst['base_commit'][:12]} not in {clone} "
                              f"({type(e).__name__}); fetch it into the clone") from None

    def read(self, instance: dict[str, Any], paths: list[str]) -> dict[str, str]:
        def compute() -> dict[str, str]:
            kind, where = self._locate(instance)
            out = {}
            if kind == "snapshot":
                for p in paths:
                    f = where / p
                    if not f.is_file():
                        raise SourceError(f"{instance['instance_id']}: {p} not in snapshot {where}")
                    out[p] = _decode(f.read_bytes())
                return out
            tree = self._commit(where, instance).tree
            for p in paths:
                try:
                    out[p] = _decode(tree[p].data_stream.read())
                except KeyError:
                    raise SourceError(f"{instance['instance_id']}: {p} not at base_commit in {where}") from None
            return out

        return self._cached(instance, "read:" + "\n".join(paths), compute)

    def list_files(self, instance: dict[str, Any]) -> list[str]:
        def compute() -> list[str]:
            kind, where = self._locate(instance)
            if kind == "snapshot":
                files = []
                for dp, dns, fns in os.walk(where):
                    dns[:] = sorted(d for d in dns if d not in SKIP_DIRS)
                    rel = Path(dp).relative_to(where)
                    files += [str(rel / f) if str(rel) != "." else f for f in sorted(fns)]
                return sorted(files)
            tree = self._commit(where, instance).tree
            return sorted(b.path for b in tree.traverse() if b.type == "blob")

        return self._cached(instance, "list", compute)


class ImageSource(_Cached):
    """Read from ``/testbed`` of the instance image (``image_for(instance) -> image``), through a DockerSandbox."""

    def __init__(self, image_for: Callable[[dict[str, Any]], str], cache_dir: str | Path | None = None,
                 workdir: str = "/testbed") -> None:
        super().__init__(cache_dir)
        self.image_for = image_for
        self.workdir = workdir

    def _with_sandbox(self, inst: dict[str, Any], fn: Callable[[Any], Any]) -> Any:
        with DockerSandbox(self.image_for(inst), workdir=self.workdir) as sb:
            return fn(sb)

    def read(self, instance: dict[str, Any], paths: list[str]) -> dict[str, str]:
        def compute() -> dict[str, str]:
            def go(sb: Any) -> dict[str, str]:
                out = {}
                for p in paths:
                    r = sb.run(f"git show {instance['base_commit']}:{_shq(p)} > /tmp/_swe_srl_f && echo ok")
                    if r.exit_code != 0:
                        raise SourceError(f"{instance['instance_id']}: {p} not at base_commit in the image")
                    out[p] = sb.read_file("/tmp/_swe_srl_f")
                return out

            return self._with_sandbox(instance, go)

        return self._cached(instance, "read:" + "\n".join(paths), compute)

    def list_files(self, instance: dict[str, Any]) -> list[str]:
        def compute() -> list[str]:
            def go(sb: Any) -> list[str]:
                r = sb.run(f"git ls-tree -r --name-only {instance['base_commit']}")
                if r.exit_code != 0:
                    raise SourceError(f"{instance['instance_id']}: git ls-tree failed in the image")
                return sorted(x for x in r.output.splitlines() if x.strip())

            return self._with_sandbox(instance, go)

        return self._cached(instance, "list", compute)


def _shq(s: str) -> str:
    return shlex.quote(s)
