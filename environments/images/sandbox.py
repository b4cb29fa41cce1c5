"""Eval sandboxes of built instance images: a DockerSandbox with no network and ``NET_ADMIN`` inside its own
(empty) network namespace, so the image's ``services.sh`` can install the default block: private ranges routed to
``lo`` and DROPped, so a test that dials e.g. 10.255.255.1 waits for its timeout (as behind a firewall) and nothing
ever leaves the container. Without NET_ADMIN (a plain DockerSandbox) such tests fail fast instead (no route)."""

from __future__ import annotations

import os
from typing import Any, Callable

from environments.sandbox import DEFAULT_WORKDIR, LABEL, DockerSandbox, Sandbox, SandboxError, instance_image_name

from . import assets
from .build import index_addresses

EVAL_CAPS = ("NET_ADMIN",)


class _Containers:
    def __init__(self, containers: Any, caps: tuple[str, ...]):
        self._containers, self._caps = containers, caps

    def create(self, **kw: Any) -> Any:
        if kw.get("network_mode") != "none":       # capabilities only for containers without a network
            raise ValueError("eval sandboxes of built images run without a network")
        kw["cap_add"] = sorted(set(kw.get("cap_add") or []) | set(self._caps))
        return self._containers.create(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._containers, name)


class CapClient:
    """A docker client whose ``containers.create`` adds capabilities (and insists on ``network_mode=none``)."""

    def __init__(self, client: Any, caps: tuple[str, ...] = EVAL_CAPS):
        self._client = client
        self.containers = _Containers(client.containers, caps)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def eval_sandbox_factory(client: Any = None, *, mem_limit: str = "3g", cpus: float = 1.0,
                         lazy_client: bool = False) -> Callable[[dict[str, Any]], Sandbox]:
    """Instances -> a (not started) network-less DockerSandbox of the instance image, with NET_ADMIN.
    ``lazy_client``: connect to the engine at the first sandbox, not now."""
    held: dict[str, Any] = {}

    def cap_client() -> Any:
        if "client" not in held:
            if client is None:
                import docker   # optional heavy dependency

                held["client"] = CapClient(docker.from_env(timeout=300))
            else:
                held["client"] = CapClient(client)
        return held["client"]

    if not lazy_client:
        cap_client()

    def factory(instance: dict[str, Any]) -> Sandbox:
        image = instance.get("image") or instance_image_name(instance["instance_id"], instance=instance)
        return DockerSandbox(image, workdir=instance.get("workdir") or DEFAULT_WORKDIR, network=False,
                             client=cap_client(), mem_limit=mem_limit, cpus=cpus)

    return factory


def index_only_network(sandbox: Any, *, addresses: dict[str, list[str]] | None = None,
                       guard_image: str | None = None) -> None:
    """Restrict a started DockerSandbox that has a network (``network=True``) to the package index only: the index
    hosts are pinned in its ``/etc/hosts`` and ``assets.GUARD_SH`` (every outgoing packet dropped except TCP 443 to
    those addresses; no DNS, no IPv6, so no private or other public address) is installed in its network namespace
    by a short-lived sidecar container (``network_mode=container:<id>``, ``NET_ADMIN``). The sandbox itself never gets
    NET_ADMIN, so nothing it runs can lift the guard. Raises SandboxError when the guard cannot be installed (the
    caller must then not run anything in the sandbox)."""
    container = getattr(sandbox, "container", None)
    if container is None or not getattr(sandbox, "network", False):
        raise SandboxError("index_only_network: needs a started DockerSandbox created with network=True")
    try:
        addrs = addresses if addresses is not None else index_addresses()
    except Exception as e:  # noqa: BLE001 - BuildError (cannot resolve) and anything else: fail closed
        raise SandboxError(f"network guard: {e}") from None
    ips = " ".join(v[0] for v in addrs.values() if v)
    if not ips:
        raise SandboxError("network guard: no package index address")
    hosts = "".join(f"{v[0]} {h}\n" for h, v in addrs.items() if v)
    res = sandbox.run(f"cat >> /etc/hosts <<'EOF'\n{hosts}EOF", timeout=60, workdir="/")
    if res.exit_code != 0:
        raise SandboxError(f"network guard: cannot pin the index hosts: {res.output[-300:]}")
    script = assets.GUARD_SH.replace('IPS="$1"', f'IPS="{ips}"')
    client = sandbox.client
    candidates = [guard_image] if guard_image else [sandbox.image] + sorted(
        t for img in client.images.list(name="swe-srl/base") for t in img.tags)   # images with iptables
    last = ""
    for image in dict.fromkeys(candidates):
        try:
            client.containers.run(
                image, ["sh", "-c", script], entrypoint=[], network_mode=f"container:{container.id}",
                cap_add=["NET_ADMIN"], remove=True, detach=False, stdout=True, stderr=True,
                labels={LABEL: "1", "swe-srl.owner": str(os.getpid()), "swe-srl.role": "network-guard"})
            return
        except Exception as e:  # noqa: BLE001 - ContainerError (no iptables / guard failed), ImageNotFound: next
            last = f"{image}: {str(e)[-300:]}"
    raise SandboxError(f"network guard failed (the sandbox keeps no network access): {last}")
