"""swebench's spec of an instance -> a three-layer build plan (base per Python, env per repo+version, instance).

Everything an image installs comes from swebench's own ``MAP_REPO_VERSION_TO_SPECS[repo][version]``: ``python``,
``packages`` (``requirements.txt`` / ``environment.yml`` / conda package names), ``pip_packages``, ``pre_install``,
``install``; the eval script that later runs in the image is swebench's ``make_test_spec(...).eval_script``, unchanged.
What cannot match the spec exactly is recorded in ``deviations`` (per image, also as an image label):

- the Python: the nearest Debian Python at or above the spec's (3.9 / 3.11 / 3.13, ``base.nearest_python``);
- conda: a venv at ``/opt/miniconda3/envs/testbed`` and a shim at ``/opt/miniconda3/bin/activate`` (``conda
  activate`` of that venv, every other ``conda`` a no-op); conda package names are installed with pip, unpinned;
- requirements files are read from the repo at ``base_commit`` (swebench fetches them from GitHub at
  ``environment_setup_commit``; ``use_repo_requirements`` replaces that fetch);
- pip/setuptools/wheel pinned to ``pip<24.1 setuptools<70 wheel<0.44`` (SWE-bench's 2024 environments);
- the install runs at build time; at test time the image has no index (``PIP_NO_INDEX``) and no build isolation, so
  the eval script's reinstall works offline;
- django with a Python-3.6 spec on Python >= 3.7: a startup shim restores 3.6's ``shortDescription`` (swebench's
  django parser matches the test names 3.6 printed);
- setuptools_scm: the snapshot's ``base-<hex>`` tags are dropped and ``<version>.0`` is tagged;
- network fakes (``FAKES``): hosts a test suite dials mapped to 127.0.0.1 and served by a local httpbin (+ a local
  test CA appended to the repo's CA bundle).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from environments.sandbox.images import instance_image_name

from . import assets
from .base import base_image_name, nearest_python

PIP_PINS = ("pip<24.1", "setuptools<70", "wheel<0.44")
VENV = "/opt/miniconda3/envs/testbed"
ENV_REPOSITORY = "swe-srl/env"
PLAN_VERSION = "1"          # bump when the build recipe changes: existing images are then rebuilt

# Local network fakes per repo: hosts the test suite dials -> 127.0.0.1, served by a local httpbin on 80/443.
FAKES: dict[str, dict[str, Any]] = {
    "psf/requests": {"hosts": ["httpbin.org", "www.httpbin.org", "www.google.co.uk"], "httpbin": True,
                     "ca_bundles": ["requests/cacert.pem"]},
}
PY36_SHORT_DESCRIPTION_REPOS = ("django/django",)


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", str(v))[:2])


def repo_dir_name(repo: str) -> str:
    return repo.replace("/", "__")


def find_repo(repos_dir: str | Path | None, repo: str) -> Path | None:
    """``<owner>__<name>.git`` or ``<owner>__<name>`` under ``repos_dir`` (bare repo or clone), else None."""
    if not repos_dir:
        return None
    for name in (repo_dir_name(repo) + ".git", repo_dir_name(repo)):
        p = Path(repos_dir) / name
        if p.exists():
            return p
    return None


def git_show(repo_path: Path, commit: str, path: str) -> str | None:
    """A file of ``repo_path`` at ``commit`` (bare or not), None when absent."""
    r = subprocess.run(["git", "-C", str(repo_path), "show", f"{commit}:{path}"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def requirements_at(repo_path: Path, repo: str, commit: str) -> str:
    """swebench's ``get_requirements_by_commit`` with the files read from the local repo at ``commit``: the first
    of ``MAP_REPO_TO_REQS_PATHS[repo]`` that exists, ``-r`` includes inlined, ``-e .``/comments/``.[test`` dropped,
    then swebench's own ``clean_requirements``."""
    from swebench.harness.constants import MAP_REPO_TO_REQS_PATHS
    from swebench.harness.test_spec.python import clean_requirements

    for req_path in MAP_REPO_TO_REQS_PATHS[repo]:
        text = git_show(repo_path, commit, req_path)
        if text is not None:
            break
    else:
        raise ValueError(f"no requirements file {MAP_REPO_TO_REQS_PATHS[repo]} in {repo_path} at {commit}")

    def excluded(line: str) -> bool:
        return any(line.strip().startswith(x) for x in ("-e .", "#", ".[test"))

    req_dir = posixpath.dirname(req_path)
    original, extra = [], []
    for line in text.split("\n"):
        if line.strip().startswith("-r"):
            inc = git_show(repo_path, commit, posixpath.normpath(posixpath.join(req_dir, line.strip()[2:].strip())))
            extra += [x for x in (inc or "").split("\n") if not excluded(x)]
        elif not excluded(line):
            original.append(line)
    extra.append("\n".join(original))
    return clean_requirements("\n".join(extra))


def environment_yml_at(repo_path: Path, repo: str, commit: str, env_name: str) -> str:
    from swebench.harness.constants import MAP_REPO_TO_ENV_YML_PATHS
    from swebench.harness.test_spec.python import clean_environment_yml

    for p in MAP_REPO_TO_ENV_YML_PATHS[repo]:
        text = git_show(repo_path, commit, p)
        if text is not None:
            lines = [f"name: {env_name}" if x.startswith("name:") else x for x in text.split("\n")]
            return clean_environment_yml("\n".join(lines))
    raise ValueError(f"no environment.yml {MAP_REPO_TO_ENV_YML_PATHS[repo]} in {repo_path} at {commit}")


_PROVIDER: dict[str, Any] = {}


def use_repo_requirements(repos_dir: str | Path | None) -> None:
    """Make swebench's ``make_test_spec`` read requirements.txt / environment.yml from ``repos_dir`` at the
    instance's ``base_commit`` instead of fetching them from GitHub (which fails offline, and
    ``environment_setup_commit`` is not in the snapshot repos). Falls back to swebench's fetch for repos not under
    ``repos_dir``. Idempotent; the last ``repos_dir`` wins."""
    import swebench.harness.test_spec.python as py

    _PROVIDER["repos_dir"] = repos_dir
    if "get_requirements" not in _PROVIDER:
        _PROVIDER["get_requirements"], _PROVIDER["get_environment_yml"] = py.get_requirements, py.get_environment_yml

    def get_requirements(instance: dict[str, Any]) -> str:
        path = find_repo(_PROVIDER["repos_dir"], instance["repo"])
        if path is None:
            return _PROVIDER["get_requirements"](instance)
        return requirements_at(path, instance["repo"], instance["base_commit"])

    def get_environment_yml(instance: dict[str, Any], env_name: str) -> str:
        path = find_repo(_PROVIDER["repos_dir"], instance["repo"])
        if path is None:
            return _PROVIDER["get_environment_yml"](instance, env_name)
        return environment_yml_at(path, instance["repo"], instance["base_commit"], env_name)

    py.get_requirements, py.get_environment_yml = get_requirements, get_environment_yml


def _conda_to_pip(pkgs: str) -> list[str]:
    """Conda package specs -> pip requirements (``python=`` dropped, ``name=ver`` -> ``name==ver``)."""
    out = []
    for p in pkgs.split():
        name = re.split(r"[=<>!]", p, maxsplit=1)[0]
        if name.lower() in ("python", "pip", "setuptools", "wheel") or p.startswith("-"):
            continue
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)=([^=<>!].*)$", p)
        out.append(f"{m.group(1)}=={m.group(2)}" if m else p)
    return out


def _env_yml_to_pip(text: str) -> list[str]:
    """Best effort: the dependencies of an environment.yml (conda and pip sections) as pip requirements."""
    out, in_deps = [], False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps and s.startswith("- ") and not s.endswith(":"):
            out += _conda_to_pip(s[2:].strip().replace(" ", ""))
    return out


@dataclass
class EnvPlan:
    repo: str
    version: str
    python: str                   # the Python the image has
    spec_python: str | None       # the Python the spec asks
    base_image: str
    requirements: str = ""        # requirements.txt content (pip -r)
    packages: list[str] = field(default_factory=list)        # pip requirements from conda names / env yml
    pip_packages: list[str] = field(default_factory=list)
    py36_short_description: bool = False
    fakes: dict[str, Any] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """Of what the layer installs (not of ``version``/``deviations``): versions of a repo whose specs install
        the same things share one env image (all sympy versions, most pytest ones)."""
        d = asdict(self)
        for k in ("version", "deviations"):
            d.pop(k)
        d["plan_version"], d["assets"] = PLAN_VERSION, assets.digest()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"{ENV_REPOSITORY}:{repo_dir_name(self.repo).lower()}-py{self.python}-{self.digest}"


@dataclass
class InstancePlan:
    instance_id: str
    repo: str
    version: str
    base_commit: str
    image: str                    # environments.sandbox.images.instance_image_name(...): swebench's instance key
    env: EnvPlan
    pre_install: list[str] = field(default_factory=list)
    install: str = ""
    repo_install: str = ""        # swebench's MAP_REPO_TO_INSTALL entry, if any
    build_requires: list[str] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        d = asdict(self)
        d["env"] = self.env.digest
        d["plan_version"] = PLAN_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _build_requires(repo_path: Path | None, commit: str) -> list[str]:
    """``[build-system].requires`` of pyproject.toml at ``commit`` (installed so the offline reinstall needs no
    build isolation); [] without one."""
    if repo_path is None:
        return []
    text = git_show(repo_path, commit, "pyproject.toml")
    if not text:
        return []
    try:
        import tomllib
    except ImportError:            # Python < 3.11 on the host
        return []
    try:
        reqs = tomllib.loads(text).get("build-system", {}).get("requires", [])
    except Exception:
        return []
    return [str(r) for r in reqs]


def env_commits(instances: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(repo, version) -> (instance_id, base_commit) whose requirements file the env image of that version installs:
    the newest instance of the version among ``instances`` (swebench's ``environment_setup_commit`` is the newest
    commit of a version; it is not in the snapshot repos). One env image per repo+version."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for inst in instances:
        k = (inst["repo"], str(inst["version"]))
        if k not in best or (inst.get("created_at") or "", inst["instance_id"]) > \
                (best[k].get("created_at") or "", best[k]["instance_id"]):
            best[k] = inst
    return {k: (v["instance_id"], v["base_commit"]) for k, v in best.items()}


def plan_instance(instance: dict[str, Any], repos_dir: str | Path | None = None, *,
                  base_image: str | None = None, base_python: str | None = None,
                  env_commit: tuple[str, str] | None = None) -> InstancePlan:
    """The build plan of one SWE-bench row (``repo``, ``version``, ``base_commit``, ``test_patch``...).
    ``base_image``/``base_python``: a user-given base image (and the Python it has) instead of a Debian base.
    ``env_commit``: (instance_id, commit) whose requirements the env layer installs (``env_commits``; default this
    instance's base_commit)."""
    from swebench.harness.constants import MAP_REPO_TO_INSTALL, MAP_REPO_VERSION_TO_SPECS

    repo, version = instance["repo"], str(instance["version"])
    try:
        specs = MAP_REPO_VERSION_TO_SPECS[repo][version]
    except KeyError:
        raise ValueError(f"swebench has no spec for {repo} {version}") from None
    spec_py = str(specs["python"]) if specs.get("python") else None
    python = base_python or nearest_python(spec_py)
    env_dev: list[str] = []
    if spec_py and spec_py != python:
        env_dev.append(f"python {python} instead of {spec_py} (nearest available at or above the spec)")
    env_dev.append("venv + conda shim instead of conda; " + " ".join(PIP_PINS) + " pinned")
    repo_path = find_repo(repos_dir, repo)
    env = EnvPlan(repo=repo, version=version, python=python, spec_python=spec_py,
                  base_image=base_image or base_image_name(python), pip_packages=list(specs.get("pip_packages", [])))
    pkgs = specs.get("packages", "")
    if pkgs == "requirements.txt":
        if repo_path is None:
            raise ValueError(f"{repo} {version}: the spec installs requirements.txt; give --repos with "
                             f"{repo_dir_name(repo)}[.git]")
        src_id, src_commit = env_commit or (instance["instance_id"], instance["base_commit"])
        env.requirements = requirements_at(repo_path, repo, src_commit)
        env_dev.append(f"requirements.txt read from the repo at the base_commit of {src_id} (newest instance of "
                       "this version), not environment_setup_commit")
    elif pkgs == "environment.yml":
        if repo_path is None:
            raise ValueError(f"{repo} {version}: the spec installs environment.yml; give --repos")
        src_commit = (env_commit or ("", instance["base_commit"]))[1]
        env.packages = _env_yml_to_pip(environment_yml_at(repo_path, repo, src_commit, "testbed"))
        env_dev.append("environment.yml dependencies installed with pip (conda names, best effort)")
    elif pkgs:
        env.packages = _conda_to_pip(pkgs)
        env_dev.append(f"conda packages '{pkgs}' installed with pip (unpinned)")
    if repo in PY36_SHORT_DESCRIPTION_REPOS and spec_py and _vkey(spec_py) < (3, 7) <= _vkey(python):
        env.py36_short_description = True
        env_dev.append("Python-3.6 unittest shortDescription shim (swebench's django parser expects 3.6 names)")
    if repo in FAKES:
        env.fakes = dict(FAKES[repo])
        env_dev.append(f"network fakes: {', '.join(FAKES[repo]['hosts'])} -> local httpbin on 127.0.0.1")
    env.deviations = env_dev
    inst_dev = ["install at build time; tests run offline (PIP_NO_INDEX, no build isolation)"]
    if repo_path is not None and subprocess.run(
            ["git", "-C", str(repo_path), "tag", "--points-at", instance["base_commit"]],
            capture_output=True, text=True).stdout.strip():
        inst_dev.append(f"snapshot tags removed, tagged {version}.0 (setuptools_scm)")
    return InstancePlan(
        instance_id=instance["instance_id"], repo=repo, version=version, base_commit=instance["base_commit"],
        image=instance_image_name(instance["instance_id"], instance=instance), env=env,
        pre_install=list(specs.get("pre_install", [])), install=specs.get("install", ""),
        repo_install=MAP_REPO_TO_INSTALL.get(repo) or "",
        build_requires=_build_requires(repo_path, instance["base_commit"]), deviations=inst_dev)
