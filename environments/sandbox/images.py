"""Local instance images: a git repo at its base commit baked into ``/testbed`` on top of the local base image.
Built from an in-memory build context; no registry is contacted (``pull=False``)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

BASE_IMAGE = "swe-srl/sandbox-base:latest"


def build_repo_image(client: Any, repo: str | Path, tag: str, *, base_image: str = BASE_IMAGE,
                     workdir: str = "/testbed", labels: dict[str, str] | None = None) -> str:
    """``docker build`` of ``FROM base_image`` + ``COPY repo workdir``; returns the tag."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        df = f"FROM {base_image}\nCOPY repo {workdir}\nWORKDIR {workdir}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        tar.addfile(info, io.BytesIO(df))
        tar.add(str(repo), arcname="repo")
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False,
                        labels=labels or {})
    return tag


LOCAL_TAG = "latest"


def instance_image_name(instance_id: str, *, namespace: str | None = None, tag: str = LOCAL_TAG,
                        arch: str = "x86_64", instance: dict[str, Any] | None = None) -> str:
    """The one name of an SWE-bench instance image, used by collect, replay, eval and the harness.

    With an instance row (repo/version/base_commit/test_patch...) and swebench installed, this is swebench's own
    ``TestSpec.instance_image_key``. Otherwise the same formula is applied to the id: ``sweb.eval.<arch>.<id
    lowercased>:<tag>`` for local images; under a namespace (prebuilt images on a registry) the name is
    ``<namespace>/...`` with ``__`` spelled ``_1776_`` (registry repository names cannot hold ``__``).
    """
    if instance is not None and instance.get("repo") and instance.get("version") is not None:
        try:
            from swebench.harness.test_spec.test_spec import make_test_spec
        except ImportError:
            pass
        else:
            try:
                spec = make_test_spec(instance, namespace=namespace, instance_image_tag=tag, arch=arch)
            except (KeyError, TypeError):
                pass                        # repo/version unknown to swebench: same formula below
            else:
                return spec.instance_image_key
    key = f"sweb.eval.{arch}.{instance_id.lower()}:{tag}"
    if namespace:
        key = f"{namespace}/{key}".replace("__", "_1776_")
    return key
