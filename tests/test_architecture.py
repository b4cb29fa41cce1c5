"""The layering rule (docs/architecture.md), checked on the source of every module:

  ground  swe_srl.core                      imports only itself (+ stdlib / third-party), never torch at import
  middle  environments, math_srl            import only the ground (+ each other's own package)
  top     the rest of swe_srl               may import anything below

Every import counts, including those inside functions. A function-level import of first-party code is refused
(that is how cycles used to be hidden); function-level imports are for optional heavy dependencies, plus the
command layer deferring a command's implementation until it runs (CLI start-up time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("swe_srl", "environments", "math_srl")
FIRST_PARTY = set(PACKAGES)


def layer(module: str) -> int:
    if module == "swe_srl.core" or module.startswith("swe_srl.core."):
        return 0
    if module.split(".")[0] in ("environments", "math_srl"):
        return 1
    return 2


def deferred_ok(module: str) -> bool:
    """The command layer may defer loading a command's implementation until the command runs, so that
    ``swe-srl --help`` does not import torch; those edges still point down (checked above)."""
    return module == "swe_srl.cli" or module.startswith("swe_srl.commands")


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), path))
    return out


ALL = modules()
KNOWN = {m for m, _ in ALL}


def imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every first-party import of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    found.append((a.name, child.lineno, in_func))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_pkg else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append((target, child.lineno, in_func))
                for a in child.names:          # `from pkg import submodule` imports the submodule too
                    if f"{target}.{a.name}" in KNOWN:
                        found.append((f"{target}.{a.name}", child.lineno, in_func))
            visit(child, nested)

    visit(tree, False)
    return [(t, line, f) for t, line, f in found if t.split(".")[0] in FIRST_PARTY]




def test_modules_found():
    names = {m for m, _ in ALL}
    assert {"swe_srl.core", "environments", "math_srl", "swe_srl.train", "swe_srl.swe_eval"} <= names


@pytest.mark.parametrize("module,path", ALL, ids=[m for m, _ in ALL])
def test_no_upward_or_hidden_import(module, path):
    bad = []
    for target, line, in_func in imports(module, path):
        rel = path.relative_to(REPO)
        if layer(target) > layer(module):
            bad.append(f"{rel}:{line}: {module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
        elif in_func and not deferred_ok(module):
            bad.append(f"{rel}:{line}: first-party import inside a function: {target}")
    assert not bad, "\n".join(bad)


def test_middle_layers_do_not_import_each_other():
    bad = []
    for module, path in ALL:
        top = module.split(".")[0]
        if top not in ("environments", "math_srl"):
            continue
        other = "math_srl" if top == "environments" else "environments"
        for target, line, _ in imports(module, path):
            if target.split(".")[0] == other:
                bad.append(f"{path.relative_to(REPO)}:{line}: {module} imports {target}")
    assert not bad, "\n".join(bad)


def test_core_and_package_roots_import_without_torch():
    code = ("import sys, swe_srl, swe_srl.core, environments, math_srl\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_wheel_ships_no_developer_tools(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("swe_srl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("swe_srl/core/") for n in names)
    offenders = [n for n in names if "_build_trajectories" in n or n.endswith("tiny.py") or "tiny_model" in n
                 or n.startswith(("tests/", "scripts/", "benchmarks/"))]
    assert not offenders, offenders
