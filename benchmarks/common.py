"""Shared helpers for benchmarks: environment description and result files under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from swe_srl.core.io import versions as package_versions

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "transformers", "trl", "accelerate", "peft", "vllm", "datasets", "cydifflib", "rapidfuzz",
            "docker", "swebench", "math-verify")


def environment_info() -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    device = "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    except Exception:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except Exception:
        commit = ""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "device": device,
        "versions": versions,
        "git_commit": commit,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "environment": environment_info(), **results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
