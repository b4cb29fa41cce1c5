"""Shared test fixtures: location of ../shared/data (the large real-data layer; $SWE_SRL_SHARED_DATA overrides it,
e.g. SWE_SRL_SHARED_DATA=/nonexistent to check that the tests on the bundled samples still run), the bundled sample
trajectories (always present), and a Docker gate that fails under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SWE_SRL_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: the sample tasks shipped in the package: 2 mini-swe-agent ``.traj.json`` + 2 SWE-agent 1.x ``.traj`` trajectories
SAMPLE_SWE = REPO / "swe_srl" / "sample_tasks" / "swe"


@pytest.fixture(scope="session")
def sample_trajectories() -> list[Path]:
    """The bundled expert trajectories, one per sample task, sorted by task id (never skips)."""
    files = sorted(p for p in SAMPLE_SWE.glob("*/*") if p.name.endswith((".traj", ".traj.json")))
    assert len(files) == 4, files
    return files


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED_DATA} missing in CI")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_client():
    """A live Docker client; skips without an engine, but FAILS under CI=true (CI must run these)."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as e:  # pragma: no cover - depends on the machine
        if IN_CI:
            pytest.fail(f"Docker engine required under CI=true: {e}")
        pytest.skip(f"no Docker engine: {e}")
    return client


SANDBOX_BASE_IMAGE = os.environ.get("SWE_SRL_SANDBOX_IMAGE", "swe-srl/sandbox-base:latest")


@pytest.fixture(scope="session")
def sandbox_base_image(docker_client) -> str:
    """The local sandbox base image (docker/build_base_image.sh); skips without it, but FAILS under CI=true."""
    try:
        docker_client.images.get(SANDBOX_BASE_IMAGE)
    except Exception:
        msg = f"{SANDBOX_BASE_IMAGE} missing: run bash docker/build_base_image.sh"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return SANDBOX_BASE_IMAGE
