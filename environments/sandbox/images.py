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
    """The one name of an SWE-bench instance image, used by collect, replay, eval, the image builder and the harness.

    With swebench installed the name is swebench's own ``TestSpec.instance_image_key`` (read from a TestSpec that
    carries only the naming fields, so nothing is fetched: ``make_test_spec`` would download requirement files for
    some repos). That is ``sweb.eval.<arch>.<id lowercased>:<tag>`` for local images and, under a namespace
    (prebuilt images on a registry), ``<namespace>/...`` with ``__`` spelled ``_1776_``. Without swebench the same
    formula is applied here. ``instance`` (a dataset row) may supply the id.
    """
    if instance is not None:
        instance_id = instance.get("instance_id", instance_id)
    try:
        from swebench.harness.test_spec.test_spec import TestSpec
    except ImportError:
        key = f"sweb.eval.{arch}.{instance_id.lower()}:{tag}"
        return f"{namespace}/{key}".replace("__", "_1776_") if namespace else key
    spec = TestSpec(instance_id=instance_id, repo=(instance or {}).get("repo", ""),
                    version=(instance or {}).get("version", ""), repo_script_list=[], eval_script_list=[],
                    env_script_list=[], arch=arch, FAIL_TO_PASS=[], PASS_TO_PASS=[], language="py", docker_specs={},
                    namespace=namespace, instance_image_tag=tag)
    return spec.instance_image_key
