"""Base images without a registry: a Debian root filesystem from ``debootstrap``, ``docker import``-ed.

One base per Python version: Debian's own ``python3`` of a suite (``PYTHON_SUITES``: bullseye 3.9, bookworm 3.11,
trixie 3.13), plus SWE-bench-like system packages (build-essential, python3-dev/venv, git, locales, locales-all,
tzdata) and what the builder itself uses inside (iptables for the build-time network guard, openssl for local test
CAs, iproute2). The same as ``docker/build_base_image.sh`` but parameterised by suite and package list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PYTHON_SUITES: dict[str, str] = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
BASE_REPOSITORY = "swe-srl/base"
BASE_PACKAGES = (
    "python3", "python3-venv", "python3-dev", "git", "ca-certificates", "procps", "build-essential", "pkg-config",
    "locales", "locales-all", "tzdata", "libffi-dev", "libmemcached-dev", "zlib1g-dev", "libjpeg-dev",
    "iptables", "iproute2", "openssl", "curl",
)
GITCONFIG = "[user]\n\tname = swe-srl\n\temail = sandbox@swe-srl.invalid\n[safe]\n\tdirectory = *\n"


def base_image_name(python: str) -> str:
    return f"{BASE_REPOSITORY}:py{python}-{PYTHON_SUITES[python]}"


def nearest_python(wanted: str | None) -> str:
    """The nearest Python with a Debian base at or above ``wanted`` (the newest when ``wanted`` is above all)."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".")[:2])

    avail = sorted(PYTHON_SUITES, key=key)
    if not wanted:
        return avail[0]
    for v in avail:
        if key(v) >= key(str(wanted)):
            return v
    return avail[-1]


def host_mirror() -> str | None:
    """$SWE_SRL_DEBIAN_MIRROR, else the first debian archive URI of the host's apt sources, else None."""
    if os.environ.get("SWE_SRL_DEBIAN_MIRROR"):
        return os.environ["SWE_SRL_DEBIAN_MIRROR"]
    texts = []
    for pattern in ("/etc/apt/sources.list.d/*.sources", "/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list"):
        for p in sorted(Path("/").glob(pattern.lstrip("/"))):
            try:
                texts.append(p.read_text())
            except OSError:
                pass
    for text in texts:
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0] not in ("URIs:", "deb"):
                continue
            uri = next((x for x in parts[1:] if "://" in x), "")
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return None


def image_exists(client: Any, name: str) -> bool:
    import docker.errors   # optional heavy dependency

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_base(client: Any, python: str, *, log_path: str | Path | None = None, force: bool = False,
               packages: tuple[str, ...] = BASE_PACKAGES) -> dict[str, Any]:
    """debootstrap the suite of ``python`` and import it as ``base_image_name(python)``; a no-op when it exists.
    Returns {"image", "python", "suite", "seconds", "size_bytes", "cached"}. Needs root and ``debootstrap``."""
    name, suite = base_image_name(python), PYTHON_SUITES[python]
    t0 = time.time()
    if not force and image_exists(client, name):
        img = client.images.get(name)
        return {"image": name, "python": python, "suite": suite, "seconds": round(time.time() - t0, 2),
                "size_bytes": img.attrs.get("Size"), "cached": True}
    if os.geteuid() != 0:
        raise RuntimeError(f"building {name} needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    root = Path(tempfile.mkdtemp(prefix=f"swe-srl-rootfs-{suite}-"))
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        mirror = host_mirror()
        cmd = ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages), suite, str(root)]
        if mirror:
            cmd.append(mirror)
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError(f"debootstrap {suite} failed (exit {r.returncode}; see {log_path})")
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            for p in (root / sub).glob("*"):
                if p.is_file():
                    p.unlink(missing_ok=True)
                elif p.is_dir() and sub != "var/cache/apt/archives":
                    shutil.rmtree(p, ignore_errors=True)
        (root / "testbed").mkdir(exist_ok=True)
        (root / "etc/gitconfig").write_text(GITCONFIG)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import",
                              "-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "-c", "ENV LANG=C.UTF-8", "-c", "WORKDIR /testbed", "-c", 'CMD ["/bin/bash"]',
                              "-c", f"LABEL swe-srl.layer=base swe-srl.python={python} swe-srl.suite={suite}",
                              "-m", f"swe-srl base ({suite} minbase, python {python})", "-", name],
                             stdin=tar.stdout, stdout=log, stderr=subprocess.STDOUT)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import of {name} failed")
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
        shutil.rmtree(root, ignore_errors=True)
    img = client.images.get(name)
    return {"image": name, "python": python, "suite": suite, "seconds": round(time.time() - t0, 2),
            "size_bytes": img.attrs.get("Size"), "cached": False}
