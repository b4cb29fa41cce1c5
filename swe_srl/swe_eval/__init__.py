"""SWE-bench evaluation: oracle file edit / end-to-end (Agentless-mini style) / agent modes, graded by one path
(``grade_in_sandbox``: swebench's eval script in a Sandbox, swebench's own report) or by the official swebench
harness for prebuilt images. Entry point: ``run_eval(EvalConfig(...))`` (``swe-srl eval``)."""

from .dataset import load_instances, oracle_files
from .edits import answer_to_patch, apply_edits, make_unified_diff, parse_edits, validate_patch
from .grading import (EMPTY_PATCH, ERROR, RESOLVED, STATUSES, UNRESOLVED, InstanceResult, docker_sandbox_factory,
                      grade_in_sandbox, local_sandbox_factory, register_log_parser, instance_test_spec)
from .images import ImageProvider, ImageUnavailable, image_candidates, instance_image
from .runner import EvalConfig, EvalSetupError, run_eval
from .selfcheck import check_instance, gold_answer

__all__ = ["EvalConfig", "run_eval", "load_instances", "oracle_files", "answer_to_patch", "apply_edits",
           "parse_edits", "make_unified_diff", "validate_patch", "InstanceResult", "RESOLVED", "UNRESOLVED",
           "EMPTY_PATCH", "ERROR", "STATUSES", "grade_in_sandbox", "docker_sandbox_factory", "local_sandbox_factory",
           "register_log_parser", "instance_test_spec", "ImageProvider", "ImageUnavailable", "image_candidates",
           "instance_image", "EvalSetupError", "check_instance", "gold_answer"]
