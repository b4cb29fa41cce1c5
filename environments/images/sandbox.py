"""Eval sandboxes of built instance images: a DockerSandbox with no network and ``NET_ADMIN`` inside its own
(empty) network namespace, so the image's ``services.sh`` can install the default block: private ranges routed to
``lo`` and DROPped, so a test that dials e.g. 10.255.255.1 waits for its timeout (as behind a firewall) and nothing
ever leaves the container. Without NET_ADMIN (a plain DockerSandbox) such tests fail fast instead (no route)."""

from __future__ import annotations

from typing import Any, Callable

from environments.sandbox import DEFAULT_WORKDIR, DockerSandbox, Sandbox, instance_image_name

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
