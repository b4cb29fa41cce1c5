"""Which Docker image an instance runs in, and getting it onto this machine (``--source image``, the sandbox grader,
agent mode).

``ImageProvider.ensure(instance)``, in order, first success wins:

1. an image already present locally: the instance's ``image`` field; else its swebench instance image name under
   ``--namespace`` (e.g. ``swebench/sweb.eval.x86_64.django_1776_django-11099:latest``), then the locally built name
   (``sweb.eval.x86_64.django__django-11099:latest``, what ``swe-srl images build`` and swebench's own build make);
2. a pull (``pull=True``) of the names that carry a registry namespace (``<ns>/...``); a local name
   (``--namespace none``) is never pulled: there is no registry behind it;
3. ``builder(instance)`` when given (``--build``): builds the image and returns its name.

Otherwise ``ImageUnavailable`` (an infrastructure failure: the instance's status is ``error``, never the model's
``empty_patch``), with what was tried. Names found are remembered for the life of the provider.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from environments.sandbox import instance_image_name
from ..core.errors import SweSrlError

ImageBuilder = Callable[[dict[str, Any]], str]


class ImageUnavailable(SweSrlError, RuntimeError):
    """No image for an instance: not present locally, not pullable, not built."""


def instance_image(instance: dict[str, Any], namespace: str | None = None) -> str:
    """The instance's ``image`` field, else its swebench instance image name (under ``namespace``)."""
    if instance.get("image"):
        return instance["image"]
    custom = bool(instance.get("eval_script"))
    return instance_image_name(instance["instance_id"], namespace=namespace, instance=None if custom else instance)


def image_candidates(instance: dict[str, Any], namespace: str | None = None) -> list[str]:
    """Names under which the instance's image may exist locally, preferred first (see the module docstring)."""
    names = [instance_image(instance, namespace)]
    if not instance.get("image") and namespace:
        local = instance_image(instance, None)
        if local not in names:
            names.append(local)
    return names


def _split_tag(name: str) -> tuple[str, str]:
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:          # "host:5000/repo" has no tag
        return name, "latest"
    return repo, tag


def pullable(name: str) -> bool:
    """A name under a registry namespace (``ns/repo[:tag]``); bare local names are never pulled."""
    return "/" in _split_tag(name)[0]


class ImageProvider:
    def __init__(self, namespace: str | None = None, *, pull: bool = True, builder: ImageBuilder | None = None,
                 client: Any = None) -> None:
        self.namespace = namespace
        self.pull = pull
        self.builder = builder
        self._client = client
        self._found: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.pulled: list[str] = []
        self.built: list[str] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker   # optional heavy dependency

            self._client = docker.from_env(timeout=120)
        return self._client

    def _exists(self, name: str) -> bool:
        import docker.errors   # optional heavy dependency

        try:
            self.client.images.get(name)
            return True
        except docker.errors.ImageNotFound:
            return False

    def ensure(self, instance: dict[str, Any]) -> str:
        iid = instance["instance_id"]
        with self._lock:
            if iid in self._found:
                return self._found[iid]
            lock = self._locks.setdefault(iid, threading.Lock())
        with lock:                      # one pull / build per instance, even with --workers N
            if iid not in self._found:
                self._found[iid] = self._ensure(instance)
        return self._found[iid]

    def _ensure(self, instance: dict[str, Any]) -> str:
        names = image_candidates(instance, self.namespace)
        for n in names:
            if self._exists(n):
                return n
        tried = [f"{', '.join(names)}: not found locally"]
        if self.pull:
            for n in names:
                if not pullable(n):
                    continue
                repo, tag = _split_tag(n)
                try:
                    self.client.images.pull(repo, tag=tag)
                except Exception as e:       # registry unreachable, unknown repository, auth
                    tried.append(f"pull {n} failed: {type(e).__name__}: {str(e)[:200]}")
                    continue
                self.pulled.append(n)
                return n
            if not any(pullable(n) for n in names):
                tried.append("no registry name to pull (--namespace none)")
        if self.builder is not None:
            try:
                built = self.builder(instance)
            except Exception as e:
                tried.append(f"build failed: {type(e).__name__}: {str(e)[:300]}")
            else:
                self.built.append(built)
                return built
        else:
            tried.append("not built (pass --build, or run `swe-srl images build` first)")
        raise ImageUnavailable(f"image for {instance['instance_id']} not found: " + "; ".join(tried))
