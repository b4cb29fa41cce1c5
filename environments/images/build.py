"""Build the three layers (base per Python, env per repo+version, instance per task) and commit them as images.

Each non-base layer is built in a throw-away container of the layer below and committed (``container.commit``):
the steps that need the package index run behind a network guard set up inside that container with ``NET_ADMIN``
(``assets.GUARD_SH``: every outgoing packet dropped except TCP 443 to the pinned package-index addresses; no DNS);
a plain ``docker build`` cannot do that (its RUN steps get either the full network or none). Nothing is pulled; no
registry is contacted.

Resumable: an image whose ``swe-srl.plan`` label equals the plan's digest is kept (``cached``); a changed plan or
``force`` rebuilds it. One failing instance never stops the others: its record says ``failed`` with the error; its
build log is ``logs_dir/<instance_id>/build.log`` (env layers: ``logs_dir/_env/<image tag>.log``).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from swe_srl.core.io import AppendLog

from . import assets
from .base import base_image_name, build_base, image_exists
from .plan import VENV, EnvPlan, InstancePlan, env_commits, find_repo, plan_instance, use_repo_requirements
from swe_srl.core.errors import SweSrlError

INDEX_HOSTS = ("pypi.org", "files.pythonhosted.org")
BUILD_DIR = "/tmp/swe-srl-build"
STEP_TIMEOUT = 3600
MEM_LIMIT = "4g"
LAYER_LABEL = "swe-srl.layer"
# Test-time pip: no index, no build isolation (pip reads PIP_NO_BUILD_ISOLATION=0 as "--no-build-isolation").
TEST_ENV = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
CONSTRAINTS = "/opt/swe-srl/constraints.txt"       # build tools of SWE-bench's 2024 environments
CONSTRAINTS_TXT = "pip<24.1\nsetuptools<70\nwheel<0.44\nsetuptools_scm<8\n"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(SweSrlError, RuntimeError):
    pass


def host_ca_bundle() -> Path | None:
    """The host's CA bundle (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, Debian's default), for pip in builds."""
    for c in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"),
              "/etc/ssl/certs/ca-certificates.crt"):
        if c and Path(c).is_file():
            return Path(c)
    return None


def index_addresses(hosts: tuple[str, ...] = INDEX_HOSTS) -> dict[str, list[str]]:
    """IPv4 addresses of the package-index hosts, resolved on the host (pinned in the build container)."""
    out: dict[str, list[str]] = {}
    for h in hosts:
        try:
            out[h] = sorted({ai[4][0] for ai in socket.getaddrinfo(h, 443, socket.AF_INET, socket.SOCK_STREAM)})
        except OSError as e:
            raise BuildError(f"cannot resolve the package index host {h}: {e}") from None
    return out


def _tar(files: dict[str, tuple[bytes | str, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (data, mode) in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(raw), mode, int(time.time())
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


class BuildContainer:
    """A throw-away container of ``image`` (``sleep``), NET_ADMIN for the guard; steps stream to ``log``."""

    def __init__(self, client: Any, image: str, log: Callable[[bytes], None], *, network: bool):
        self.client, self.log, self.network = client, log, network
        kw: dict[str, Any] = dict(image=image, command=["sleep", "infinity"], detach=True, working_dir="/",
                                  labels={"swe-srl.build": "1", "swe-srl.owner": str(os.getpid())},
                                  cap_add=["NET_ADMIN"], mem_limit=MEM_LIMIT, memswap_limit=MEM_LIMIT)
        kw["network_mode"] = "bridge" if network else "none"
        self.container = client.containers.run(**kw)

    def put(self, files: dict[str, tuple[bytes | str, int]]) -> None:
        if not self.container.put_archive("/", _tar(files)):
            raise BuildError("put_archive failed")

    def put_dir(self, src: Path, dest_name: str) -> None:
        """``src``'s contents at ``/<dest_name>`` (a tar of ``src/.``, so an existing dir is not nested)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(src), arcname=dest_name)
        if not self.container.put_archive("/", buf.getvalue()):
            raise BuildError(f"copying {src} into the container failed")

    def run(self, script: str, *, env: dict[str, str] | None = None, name: str = "step",
            timeout: int = STEP_TIMEOUT) -> None:
        path = f"{BUILD_DIR}/{name}.sh"
        self.put({path: (script, 0o755)})
        api = self.client.api
        self.log(f"\n===== {name} =====\n".encode())
        eid = api.exec_create(self.container.id, ["timeout", "-k", "5", str(timeout), "bash", path],
                              environment=env or {}, workdir="/")["Id"]
        for chunk in api.exec_start(eid, stream=True):
            self.log(chunk)
        code = api.exec_inspect(eid)["ExitCode"]
        if code != 0:
            raise BuildError(f"{name} failed (exit {code})")

    def guard(self, addresses: dict[str, list[str]]) -> None:
        """Pin the index hosts and drop every other outgoing packet (fails closed)."""
        hosts = "".join(f"{ip} {h}\n" for h, ips in addresses.items() for ip in ips[:1])
        ips = " ".join(ips[0] for ips in addresses.values())
        self.run(f"cat >> /etc/hosts <<'EOF'\n{hosts}EOF\n" + assets.GUARD_SH.replace('IPS="$1"', f'IPS="{ips}"'),
                 name="network-guard", timeout=60)

    def commit(self, name: str, *, labels: dict[str, str], changes: list[str]) -> Any:
        self.run(f"rm -rf {BUILD_DIR} /root/.cache/pip /tmp/.swe-srl-services", name="cleanup", timeout=300)
        repo, tag = name.rsplit(":", 1)
        self.container.stop(timeout=2)
        labels = {"swe-srl.build": "", "swe-srl.owner": "", **labels}
        return self.container.commit(repository=repo, tag=tag, changes=changes, conf={"Labels": labels})

    def remove(self) -> None:
        try:
            self.container.remove(force=True, v=True)
        except Exception:
            pass


def _image_plan(client: Any, name: str) -> str | None:
    import docker.errors   # optional heavy dependency

    try:
        return (client.images.get(name).labels or {}).get("swe-srl.plan")
    except docker.errors.ImageNotFound:
        return None


def _size(client: Any, name: str) -> tuple[int, int]:
    """(image size, bytes this layer adds over its parent image)."""
    img = client.images.get(name)
    size = int(img.attrs.get("Size") or 0)
    parent = (img.labels or {}).get("swe-srl.parent")
    try:
        psize = int(client.images.get(parent).attrs.get("Size") or 0) if parent else 0
    except Exception:
        psize = 0
    return size, max(size - psize, 0)


def _pip(args: str) -> str:
    return f"python -m pip install --progress-bar off {args}"


def env_script(env: EnvPlan) -> str:
    lines = ["set -euxo pipefail", f"python3 -m venv {VENV}", "source /opt/miniconda3/bin/activate",
             "conda activate testbed", _pip(" ".join(shlex.quote(p) for p in ("pip<24.1", "setuptools<70",
                                                                                "wheel<0.44")))]
    if env.requirements.strip():
        lines.append(_pip(f"-r {BUILD_DIR}/requirements.txt"))
    if env.packages:
        lines.append(_pip(" ".join(shlex.quote(p) for p in env.packages)))
    if env.pip_packages:
        lines.append(_pip(" ".join(shlex.quote(p) for p in env.pip_packages)))
    if env.py36_short_description:
        lines.append('SP=$(python -c "import sysconfig;print(sysconfig.get_paths()[\'purelib\'])")')
        lines.append(f'cp {BUILD_DIR}/swe_srl_py36_compat.py "$SP/" && '
                     'echo "import swe_srl_py36_compat" > "$SP/swe_srl_py36_compat.pth"')
    if env.fakes.get("httpbin"):
        lines += [f"python3 -m venv {assets.HTTPBIN_VENV}",
                  f"{assets.HTTPBIN_VENV}/bin/python -m pip install --progress-bar off 'pip<24.1' "
                  "'setuptools<70' httpbin gunicorn",
                  f"mkdir -p {assets.FAKES_DIR}",
                  f"echo {shlex.quote(' '.join(env.fakes.get('hosts', [])))} > {assets.FAKES_DIR}/hosts",
                  assets.MAKE_CA]
    lines.append("python -m pip list")
    return "\n".join(lines) + "\n"


def instance_script(plan: InstancePlan) -> str:
    lines = ["set -euxo pipefail", "source /opt/miniconda3/bin/activate", "conda activate testbed",
             "cd /testbed", "chmod -R 777 /testbed"]
    if plan.repo_install:
        lines.append(plan.repo_install)
    if plan.build_requires:      # so the install needs no build isolation (at test time there is no index)
        lines.append(_pip(f"-c {CONSTRAINTS} " + " ".join(shlex.quote(r) for r in plan.build_requires)))
    lines += plan.pre_install
    for bundle in plan.env.fakes.get("ca_bundles", []):
        b = shlex.quote(bundle)
        lines.append(f"if [ -f {b} ]; then cat {assets.FAKES_DIR}/ca.crt >> {b}; fi")
    if plan.install:
        lines.append(f"PIP_CONSTRAINT={CONSTRAINTS} PIP_NO_BUILD_ISOLATION=0 {plan.install}")
    lines += ["git config --global user.email setup@swebench.config", "git config --global user.name SWE-bench",
              "git commit --allow-empty -am SWE-bench -q", "git status --short | head -20"]
    return "\n".join(lines) + "\n"


def offline_check_script(plan: InstancePlan) -> str:
    """The eval script's reinstall, as it will run at test time: no network, no index, no build isolation."""
    if not plan.install:
        return "true\n"
    return ("set -euxo pipefail\nsource /opt/miniconda3/bin/activate\nconda activate testbed\ncd /testbed\n"
            f"{plan.install}\ngit status --short | head -20\n")


def prepare_repo(repos_dir: str | Path | None, repo: str, commit: str, version: str, dest: Path) -> None:
    """``dest``: a git repo holding ``commit`` checked out (branch ``main``), no remote, no snapshot tags, tagged
    ``<version>.0`` (setuptools_scm). From ``repos_dir/<owner>__<name>[.git]``, else a GitHub clone."""
    src = find_repo(repos_dir, repo)
    url = f"file://{src.resolve()}" if src is not None else f"https://github.com/{repo}.git"

    def git(*args: str, check: bool = True, cwd: Path = dest) -> subprocess.CompletedProcess:
        r = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise BuildError(f"git {' '.join(args[:3])}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        return r

    dest.mkdir(parents=True, exist_ok=True)
    git("init", "-q")
    if git("fetch", "-q", "--depth", "1", "--no-tags", url, commit, check=False).returncode != 0:
        tags = []
        if src is not None:
            tags = subprocess.run(["git", "-C", str(src), "tag", "--points-at", commit], capture_output=True,
                                  text=True).stdout.split()
        ok = any(git("fetch", "-q", "--depth", "1", "--no-tags", url, f"refs/tags/{t}", check=False).returncode == 0
                 for t in tags)
        if not ok and git("fetch", "-q", "--no-tags", url, check=False).returncode != 0:
            where = f"{src}" if src is not None else f"{url} (no --repos; GitHub unreachable?)"
            raise BuildError(f"cannot fetch {repo}@{commit[:12]} from {where}")
    git("-c", "advice.detachedHead=false", "checkout", "-q", "-B", "main", commit)
    git("tag", f"{version}.0")


class Builder:
    """Builds instance images (and the base/env layers they need) for a list of SWE-bench rows."""

    def __init__(self, client: Any = None, *, repos_dir: str | Path | None = None,
                 logs_dir: str | Path = "image_build_logs", force: bool = False, base_image: str | None = None,
                 base_python: str | None = None, echo: Callable[[str], None] = lambda s: None):
        if client is None:
            import docker   # optional heavy dependency

            client = docker.from_env(timeout=600)
        self.client, self.repos_dir, self.force = client, repos_dir, force
        self.logs_dir = Path(logs_dir)
        self.base_image, self.base_python = base_image, base_python
        self.echo = echo
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._done: dict[str, dict[str, Any]] = {}     # layer image -> its record (built or cached, this run)
        self._addresses: dict[str, list[str]] | None = None
        if repos_dir:
            use_repo_requirements(repos_dir)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    @property
    def addresses(self) -> dict[str, list[str]]:
        if self._addresses is None:
            self._addresses = index_addresses()
        return self._addresses

    def _build_files(self) -> dict[str, tuple[bytes | str, int]]:
        files: dict[str, tuple[bytes | str, int]] = {
            "/opt/miniconda3/bin/activate": (assets.CONDA_SHIM, 0o755),
            assets.SERVICES: (assets.SERVICES_SH, 0o755),
            f"{BUILD_DIR}/swe_srl_py36_compat.py": (assets.PY36_COMPAT, 0o644),
            CONSTRAINTS: (CONSTRAINTS_TXT, 0o644),
        }
        ca = host_ca_bundle()
        if ca is not None:
            files[f"{BUILD_DIR}/host-ca.crt"] = (ca.read_bytes(), 0o644)
        return files

    def _net_env(self) -> dict[str, str]:
        env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "120", "SWE_SRL_NO_SERVICES": "1"}
        if host_ca_bundle() is not None:
            env.update(PIP_CERT=f"{BUILD_DIR}/host-ca.crt", SSL_CERT_FILE=f"{BUILD_DIR}/host-ca.crt")
        return env

    # -- layers ---------------------------------------------------------------------------------------------------
    def base(self, python: str) -> dict[str, Any]:
        name = self.base_image
        if name:                                          # a user-given base image
            if not image_exists(self.client, name):
                raise BuildError(f"base image {name} not found locally")
            return {"image": name, "cached": True, "seconds": 0.0, "size_bytes": _size(self.client, name)[0]}
        with self._lock_for(f"base:{python}"):
            key = base_image_name(python)
            if key not in self._done:
                log = self.logs_dir / "_base" / f"py{python}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                if not image_exists(self.client, key):
                    self.echo(f"base {key}: debootstrap (minutes, first time only)")
                self._done[key] = build_base(self.client, python, log_path=log, force=False)
            return self._done[key]

    def env(self, env: EnvPlan) -> dict[str, Any]:
        base = self.base(env.python)
        name = env.image
        with self._lock_for(name):
            if name in self._done:
                return self._done[name]
            t0 = time.time()
            if not self.force and _image_plan(self.client, name) == env.digest:
                rec = {"image": name, "cached": True, "seconds": round(time.time() - t0, 2)}
            else:
                log_path = self.logs_dir / "_env" / f"{name.split(':', 1)[1]}.log"
                self.echo(f"env {name}: building")
                self._layer(env.base_image, name, log_path, env_script(env), None, network=True,
                            files={f"{BUILD_DIR}/requirements.txt": (env.requirements, 0o644)},
                            labels={LAYER_LABEL: "env", "swe-srl.plan": env.digest, "swe-srl.parent": env.base_image,
                                    "swe-srl.repo": env.repo, "swe-srl.version": env.version,
                                    "swe-srl.python": env.python, "swe-srl.spec_python": env.spec_python or "",
                                    "swe-srl.deviations": json.dumps(env.deviations)},
                            changes=[f"ENV PATH={PATH}", "WORKDIR /testbed", 'CMD ["/bin/bash"]'])
                rec = {"image": name, "cached": False, "seconds": round(time.time() - t0, 2), "log": str(log_path)}
            rec["size_bytes"], rec["layer_bytes"] = _size(self.client, name)
            rec["base"] = base
            self._done[name] = rec
            return rec

    def _layer(self, parent: str, name: str, log_path: Path, script: str, offline_script: str | None, *,
               network: bool, files: dict[str, tuple[bytes | str, int]], labels: dict[str, str],
               changes: list[str], repo_dir: Path | None = None) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as fh:
            def log(b: bytes) -> None:
                fh.write(b)
                fh.flush()

            c = BuildContainer(self.client, parent, log, network=network)
            try:
                c.put({**self._build_files(), **files})
                if repo_dir is not None:
                    c.put_dir(repo_dir, "testbed")
                if network:
                    c.guard(self.addresses)
                c.run(script, env=self._net_env(), name="install")
                if offline_script is not None:
                    c.run("ip link set eth0 down 2>/dev/null || true; iptables -w -P OUTPUT DROP\n" + offline_script,
                          env={**TEST_ENV, "SWE_SRL_NO_SERVICES": "1"}, name="offline-reinstall")
                c.commit(name, labels=labels, changes=changes)
            finally:
                c.remove()

    def instance(self, plan: InstancePlan) -> dict[str, Any]:
        t0 = time.time()
        rec: dict[str, Any] = {"instance_id": plan.instance_id, "repo": plan.repo, "version": plan.version,
                               "image": plan.image, "python": plan.env.python, "spec_python": plan.env.spec_python,
                               "deviations": plan.env.deviations + plan.deviations}
        log_path = self.logs_dir / plan.instance_id / "build.log"
        try:
            env = self.env(plan.env)
            rec["env"] = {k: v for k, v in env.items() if k != "base"}
            rec["base"] = env["base"]
            t1 = time.time()
            if not self.force and _image_plan(self.client, plan.image) == plan.digest:
                rec.update(status="cached", instance_seconds=round(time.time() - t1, 2))
            else:
                tmp = Path(tempfile.mkdtemp(prefix="swe-srl-repo-"))
                try:
                    prepare_repo(self.repos_dir, plan.repo, plan.base_commit, plan.version, tmp / "testbed")
                    self._layer(env["image"], plan.image, log_path, instance_script(plan),
                                offline_check_script(plan), network=True, files={},
                                labels={LAYER_LABEL: "instance", "swe-srl.plan": plan.digest,
                                        "swe-srl.parent": env["image"], "swe-srl.instance_id": plan.instance_id,
                                        "swe-srl.repo": plan.repo, "swe-srl.version": plan.version,
                                        "swe-srl.python": plan.env.python,
                                        "swe-srl.spec_python": plan.env.spec_python or "",
                                        "swe-srl.deviations": json.dumps(rec["deviations"])},
                                changes=[*(f"ENV {k}={v}" for k, v in TEST_ENV.items()), f"ENV PATH={PATH}",
                                         "WORKDIR /testbed", 'CMD ["/bin/bash"]'],
                                repo_dir=tmp / "testbed")
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                rec.update(status="built", instance_seconds=round(time.time() - t1, 2), log=str(log_path))
            rec["size_bytes"], rec["layer_bytes"] = _size(self.client, plan.image)
        except Exception as e:  # one instance never stops the others
            rec.update(status="failed", error=f"{type(e).__name__}: {str(e)[:500]}", log=str(log_path))
        rec["seconds"] = round(time.time() - t0, 2)
        return rec


def _has_commit(repos_dir: str | Path | None, row: dict[str, Any]) -> bool:
    src = find_repo(repos_dir, row["repo"])
    return src is not None and subprocess.run(["git", "-C", str(src), "cat-file", "-e", row["base_commit"] + "^{commit}"],
                                              capture_output=True).returncode == 0


def interleave(plans: list[InstancePlan]) -> list[InstancePlan]:
    """Round-robin over env layers, so parallel workers build different env layers instead of waiting on one."""
    groups: dict[str, list[InstancePlan]] = {}
    for p in plans:
        groups.setdefault(p.env.image, []).append(p)
    out: list[InstancePlan] = []
    queues = list(groups.values())
    while queues:
        out += [q.pop(0) for q in queues]
        queues = [q for q in queues if q]
    return out


def build_images(instances: list[dict[str, Any]], *, repos_dir: str | Path | None = None, workers: int = 1,
                 logs_dir: str | Path = "image_build_logs", force: bool = False, base_image: str | None = None,
                 base_python: str | None = None, client: Any = None, env_rows: list[dict[str, Any]] | None = None,
                 echo: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """Build (or keep) the instance images of ``instances``; one record per instance, also appended to
    ``logs_dir/builds.jsonl``. Planning errors (no spec, no repo) are ``failed`` records too.
    ``env_rows``: the rows env layers pick their requirements commit from (``env_commits``; default: the whole
    dataset given as ``instances``); pass the full dataset when building a subset, so that a subset, a rerun and the
    full build share the same env layers."""
    b = Builder(client, repos_dir=repos_dir, logs_dir=logs_dir, force=force, base_image=base_image,
                base_python=base_python, echo=echo)
    commits = env_commits(instances)
    if env_rows:
        ids = {(i["repo"], str(i["version"])) for i in instances}
        commits.update({k: v for k, v in env_commits([r for r in env_rows if (r["repo"], str(r["version"])) in ids
                                                      and _has_commit(repos_dir, r)]).items()})
    results: list[dict[str, Any]] = []
    plans: list[InstancePlan] = []
    for inst in instances:
        try:
            plans.append(plan_instance(inst, repos_dir, base_image=base_image, base_python=base_python,
                                       env_commit=commits[(inst["repo"], str(inst["version"]))]))
        except Exception as e:
            results.append({"instance_id": inst.get("instance_id"), "status": "failed",
                            "error": f"plan: {type(e).__name__}: {str(e)[:500]}"})
    log = AppendLog(Path(logs_dir) / "builds.jsonl")
    try:
        for r in results:
            log.append(r)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            futs = {pool.submit(b.instance, p): p for p in interleave(plans)}
            for f in as_completed(futs):
                r = f.result()
                log.append(r)
                results.append(r)
                echo(f"{r['instance_id']}: {r['status']} ({r['seconds']:.0f}s)"
                     + (f" {r.get('error')}" if r["status"] == "failed" else ""))
    finally:
        log.close()
    return results


# -- ls / rm ------------------------------------------------------------------------------------------------------
def list_images(client: Any = None, layer: str | None = None) -> list[dict[str, Any]]:
    """Images this builder made (label ``swe-srl.layer``): name, layer, instance, python, sizes, deviations."""
    if client is None:
        import docker

        client = docker.from_env(timeout=120)
    out = []
    for img in client.images.list(filters={"label": LAYER_LABEL}):
        lab = img.labels or {}
        if layer and lab.get(LAYER_LABEL) != layer:
            continue
        out.append({"image": (img.tags or [img.short_id])[0], "layer": lab.get(LAYER_LABEL),
                    "instance_id": lab.get("swe-srl.instance_id", ""), "python": lab.get("swe-srl.python", ""),
                    "spec_python": lab.get("swe-srl.spec_python", ""), "size_bytes": int(img.attrs.get("Size") or 0),
                    "created": img.attrs.get("Created", ""),
                    "deviations": json.loads(lab.get("swe-srl.deviations") or "[]")})
    return sorted(out, key=lambda r: ({"base": 0, "env": 1, "instance": 2}.get(r["layer"] or "", 3), r["image"]))


def remove_images(names: list[str], client: Any = None) -> list[str]:
    """``docker rmi`` of the given images (only ones carrying the builder's label); returns what was removed."""
    import docker.errors

    if client is None:
        import docker

        client = docker.from_env(timeout=120)
    removed = []
    for n in names:
        try:
            img = client.images.get(n)
        except docker.errors.ImageNotFound:
            continue
        if LAYER_LABEL not in (img.labels or {}):
            raise ValueError(f"{n} was not built by swe-srl images build; not removing it")
        client.images.remove(n, noprune=False)
        removed.append(n)
    return removed
