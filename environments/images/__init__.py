"""SWE-bench instance images built locally, without a registry, layered like swebench's harness:

    base      swe-srl/base:py<3.9|3.11|3.13>-<suite>   Debian (debootstrap + docker import), one per Python version
    env       swe-srl/env:<owner>__<name>-<version>-py<X>-<digest>   the spec's dependencies, one per repo+version
    instance  sweb.eval.x86_64.<instance id>:latest    /testbed at base_commit, installed (swebench's instance key)

    from environments.images import build_images
    records = build_images(rows, repos_dir="../shared/data/repos", workers=2)

See docs/swebench-local.md: what is built from swebench's specs, and what could not match them exactly.
"""

from .base import PYTHON_SUITES, base_image_name, build_base, nearest_python
from .build import Builder, build_images, list_images, remove_images
from .plan import EnvPlan, InstancePlan, env_commits, plan_instance, use_repo_requirements
from .sandbox import eval_sandbox_factory

__all__ = ["Builder", "EnvPlan", "InstancePlan", "PYTHON_SUITES", "base_image_name", "build_base", "build_images",
           "env_commits", "eval_sandbox_factory", "list_images", "nearest_python", "plan_instance", "remove_images",
           "use_repo_requirements"]
