"""Sandboxes: where expert actions (replay) and model actions (agent evaluation) are executed.

    from environments.sandbox import make_sandbox
    with make_sandbox("docker", image="swe-srl/sandbox-base:latest", repo_path="repo", base_commit="abc123") as sb:
        res = sb.run("pytest -q", timeout=300)     # CommandResult(exit_code, output, timed_out)
        patch = sb.diff()                            # git diff vs the base commit, new files included

Backends: DockerSandbox (isolated container, the default for anything untrusted) and LocalSandbox (temporary copy
+ subprocess, NOT isolated). Container ownership labels and pruning of dead owners' containers: ``lifecycle``.
See docs/sandboxes.md.
"""

from __future__ import annotations

from .base import DEFAULT_WORKDIR, LABEL, CommandResult, Sandbox, SandboxError
from .docker_sandbox import DockerSandbox, close_live_sandboxes, live_sandbox_containers, remove_sandbox_containers
from .lifecycle import owner_labels, owner_state, prune, prune_orphans_once
from .images import BASE_IMAGE, build_repo_image, instance_image_name
from .local_sandbox import LocalSandbox


def make_sandbox(backend: str, *, image: str | None = None, repo_path=None, base_commit: str | None = None,
                 **kw) -> Sandbox:
    """A not-yet-started sandbox (use it as a context manager or call start())."""
    if backend == "docker":
        return DockerSandbox(image or BASE_IMAGE, repo_path=repo_path, base_commit=base_commit, **kw)
    if backend == "local":
        if repo_path is None:
            raise ValueError("the local backend needs repo_path")
        allowed = {k: v for k, v in kw.items() if k in ("workdir", "env", "isolation")}
        return LocalSandbox(repo_path, base_commit, **allowed)
    raise ValueError(f"unknown sandbox backend {backend!r} (docker|local)")


__all__ = ["BASE_IMAGE", "build_repo_image", "instance_image_name", "CommandResult", "DEFAULT_WORKDIR", "DockerSandbox", "LABEL", "LocalSandbox", "Sandbox",
           "SandboxError", "close_live_sandboxes", "live_sandbox_containers", "make_sandbox", "owner_labels",
           "owner_state", "prune", "prune_orphans_once", "remove_sandbox_containers"]
