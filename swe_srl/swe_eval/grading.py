"""The one SWE grading path: swebench's eval script, run in any Sandbox, graded by swebench's own report.

``grade_in_sandbox(instance, patch, sandbox_factory)``, for every instance, whatever runs it:

1. the instance's swebench ``TestSpec`` (``instance_test_spec``): ``make_test_spec`` for real SWE-bench rows; a TestSpec
   whose ``eval_script`` is the instance's own for custom rows (the bundled sample tasks, the synthetic fixture),
   their ``log_parser`` registered where swebench looks it up (``register_log_parser``);
2. a sandbox from ``sandbox_factory(instance)``: a ``DockerSandbox`` of the instance image by default
   (``docker_sandbox_factory``), or a ``LocalSandbox`` over a materialized repository (``local_sandbox_factory``,
   NOT isolated, for the bundled tasks without Docker);
3. the patch is written and swebench's ``GIT_APPLY_CMDS`` are tried in order, as swebench's ``run_instance`` does;
   then the eval script runs. Everything goes to ``LOG_DIR/<instance_id>/test_output.txt`` with swebench's markers
   (``>>>>> Applied Patch`` / ``>>>>> Patch Apply Failed``, the eval script's ``>>>>> Start/End Test Output``,
   ``>>>>> Tests Timed Out``);
4. swebench's ``get_eval_report(test_spec, prediction, test_output.txt, include_tests_status=True)`` decides
   (``get_logs_eval`` + the PASS_AND_FAIL / FAIL_ONLY rule); its report is saved as ``report.json`` beside the log.

Statuses: ``resolved`` | ``unresolved`` | ``empty_patch`` | ``error``. ``error`` is an infrastructure failure (no
image, the container or sandbox failed to start or broke, the test run timed out (``tests_timeout``), the harness
crashed): the instance was not measured, it is never counted as the model's ``empty_patch`` / ``unresolved`` and a
rerun grades it again. A patch that does not apply (``patch_apply_failed``), tests that fail (``tests_failed``) or
print no test section (``no_test_output``) are ``unresolved``. The official ``swebench.harness.run_evaluation``
path (``harness.py``) maps its reports to the same statuses with ``status_of``.

Log parsers of custom rows (``log_parser`` field): ``unittest`` (``parse_log_unittest``, ``python -m unittest -v``
output), ``pytest`` (swebench's ``parse_log_pytest``), ``swebench`` (swebench's parser of the row's repo; the
default when swebench knows the repo, else ``pytest``), or ``module:function`` taking ``(log, test_spec)``.
"""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from environments.images.build import LAYER_LABEL
from environments.images.sandbox import eval_sandbox_factory
from environments.sandbox import DEFAULT_WORKDIR, DockerSandbox, LocalSandbox, Sandbox

from ..core.io import write_json_atomic
from .dataset import normalize_instance
from .images import ImageProvider, instance_image

RESOLVED, UNRESOLVED, EMPTY_PATCH, ERROR = "resolved", "unresolved", "empty_patch", "error"
STATUSES = (RESOLVED, UNRESOLVED, EMPTY_PATCH, ERROR)

APPLY_TIMEOUT = 120
SWEBENCH_TIMEOUT_NOTE = "Timeout error:"      # what swebench's run_instance appends to a timed-out test output

SandboxFactory = Callable[[dict[str, Any]], Sandbox]


@dataclass
class InstanceResult:
    instance_id: str
    status: str
    reason: str | None = None
    tests: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    repo: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- log parsers -------------------------------------------------------------------------------------------------
def parse_log_unittest(log: str, test_spec: Any = None) -> dict[str, str]:
    """``python -m unittest -v`` lines ``test_x (mod.Class.test_x) ... ok`` -> {"mod.Class.test_x": "PASSED"}."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        m = re.match(r"^(\w+) \(([\w.]+)\)(?:\s+\S.*?)?\s+\.\.\.\s+(.*)$", line.rstrip())
        if not m:
            continue
        meth, where, result = m.groups()
        name = where if where.endswith("." + meth) else f"{where}.{meth}"
        r = result.strip()
        if r == "ok":
            out[name] = "PASSED"
        elif r.startswith("FAIL"):
            out[name] = "FAILED"
        elif r.startswith("ERROR"):
            out[name] = "ERROR"
        elif r.startswith("skipped"):
            out[name] = "SKIPPED"
        elif r.startswith("expected failure"):
            out[name] = "XFAIL"
        elif r.startswith("unexpected success"):
            out[name] = "FAILED"
    return out


def log_parser(name: str | None, repo: str | None) -> Callable[[str, Any], dict[str, str]]:
    """The parser a ``log_parser`` field names (see the module docstring)."""
    from swebench.harness.log_parsers import MAP_REPO_TO_PARSER

    if name in (None, ""):
        name = "swebench" if repo in MAP_REPO_TO_PARSER else "pytest"
    if name == "swebench":
        if repo not in MAP_REPO_TO_PARSER:
            raise ValueError(f"no swebench log parser for repo {repo!r}; set the instance's log_parser")
        return MAP_REPO_TO_PARSER[repo]
    if name == "unittest":
        return parse_log_unittest
    if name == "pytest":
        from swebench.harness.log_parsers.python import parse_log_pytest

        return parse_log_pytest
    if ":" in name:
        mod, fn = name.split(":", 1)
        return getattr(importlib.import_module(mod), fn)
    raise ValueError(f"log_parser: unknown {name!r} (unittest | pytest | swebench | module:function)")


_REGISTRY_LOCK = threading.Lock()


def register_log_parser(repo: str, version: str, parser: Callable[[str, Any], dict[str, str]],
                        test_cmd: str = "") -> None:
    """The hook through which a custom repo is graded by swebench itself.

    swebench's ``get_logs_eval`` looks the parser up in ``MAP_REPO_TO_PARSER[repo]`` and reads
    ``MAP_REPO_VERSION_TO_SPECS[repo][version]["test_cmd"]``; this adds both entries (idempotent, thread-safe).
    A repo swebench already parses keeps its parser: registering another one raises ValueError."""
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
    from swebench.harness.log_parsers import MAP_REPO_TO_PARSER

    with _REGISTRY_LOCK:
        current = MAP_REPO_TO_PARSER.get(repo)
        if current is not None and current is not parser:
            raise ValueError(f"repo {repo!r} already has the log parser {getattr(current, '__name__', current)!r}; "
                             f"a custom instance of it cannot use {getattr(parser, '__name__', parser)!r} "
                             "(set log_parser to 'swebench' or give the instance its own repo name)")
        MAP_REPO_TO_PARSER[repo] = parser
        MAP_REPO_VERSION_TO_SPECS.setdefault(repo, {}).setdefault(version, {"test_cmd": test_cmd or "eval_script"})


@functools.lru_cache(maxsize=1)
def _instance_spec_cls() -> type:
    from swebench.harness.test_spec.test_spec import TestSpec

    @dataclass
    class InstanceTestSpec(TestSpec):
        """A swebench TestSpec whose eval script is the instance's own ``eval_script``."""

        custom_eval_script: str = ""

        @property
        def eval_script(self) -> str:  # type: ignore[override]
            return self.custom_eval_script

    return InstanceTestSpec


def instance_test_spec(instance: dict[str, Any], *, namespace: str | None = None) -> Any:
    """swebench's TestSpec of an instance: ``make_test_spec`` for SWE-bench rows, the instance's own eval script
    (and registered log parser) for custom rows that carry ``eval_script``."""
    inst = normalize_instance(instance)
    if not inst.get("eval_script"):
        from swebench.harness.test_spec.test_spec import make_test_spec

        return make_test_spec(inst, namespace=namespace)
    repo = inst.get("repo") or "swe-srl/custom"
    version = str(inst.get("version") or "0")
    register_log_parser(repo, version, log_parser(inst.get("log_parser"), repo), inst.get("test_cmd") or "")
    return _instance_spec_cls()(
        instance_id=inst["instance_id"], repo=repo, version=version, repo_script_list=[], eval_script_list=[],
        env_script_list=[], arch="x86_64", FAIL_TO_PASS=list(inst.get("FAIL_TO_PASS", [])),
        PASS_TO_PASS=list(inst.get("PASS_TO_PASS", [])), language="py", docker_specs={}, namespace=namespace,
        custom_eval_script=inst["eval_script"])


# --- sandboxes -------------------------------------------------------------------------------------------------------
def docker_sandbox_factory(namespace: str | None = None, images: ImageProvider | None = None) -> SandboxFactory:
    """Instances -> a (not started) DockerSandbox of the instance image, without network. With ``images``, the image
    is first made available (present locally, pulled or built: ``ImageProvider.ensure``, which raises
    ``ImageUnavailable``); without, the instance image name is used as is (a missing one fails at start)."""

    built = eval_sandbox_factory(lazy_client=True)

    def factory(instance: dict[str, Any]) -> Sandbox:
        image = images.ensure(instance) if images is not None else instance_image(instance, namespace)
        if is_built_instance_image(image):   # our `swe-srl images build` images: services + the network block
            return built({**instance, "image": image})
        return DockerSandbox(image, workdir=instance.get("workdir") or DEFAULT_WORKDIR, network=False)

    return factory


@functools.lru_cache(maxsize=4096)
def is_built_instance_image(image: str) -> bool:
    """True for instance images made by ``swe-srl images build`` (label ``swe-srl.layer=instance``)."""
    import docker   # optional heavy dependency

    try:
        labels = docker.from_env(timeout=60).images.get(image).labels or {}
    except docker.errors.DockerException:
        return False
    return labels.get(LAYER_LABEL) == "instance"


def local_sandbox_factory(repos_dir: str | Path) -> SandboxFactory:
    """Instances -> a LocalSandbox over ``repos_dir/<instance_id>`` (a git repo holding the base commit). NOT
    isolated: the eval script runs on the host. For the bundled sample tasks on machines without Docker."""
    root = Path(repos_dir)

    def factory(instance: dict[str, Any]) -> Sandbox:
        return LocalSandbox(root / instance["instance_id"], instance.get("base_commit"),
                            workdir=instance.get("workdir") or DEFAULT_WORKDIR)

    return factory


# --- grading -----------------------------------------------------------------------------------------------------
def status_of(entry: dict[str, Any] | None, log_text: str) -> tuple[str, str | None]:
    """(status, reason) from swebench's report entry of an instance (None: no report) and its logs."""
    from swebench.harness.constants import APPLY_PATCH_FAIL, TESTS_TIMEOUT

    if entry is not None and entry.get("patch_successfully_applied"):
        return (RESOLVED, None) if entry.get("resolved") else (UNRESOLVED, "tests_failed")
    if APPLY_PATCH_FAIL in log_text:
        return UNRESOLVED, "patch_apply_failed"
    if TESTS_TIMEOUT in log_text or SWEBENCH_TIMEOUT_NOTE in log_text:
        return ERROR, "tests_timeout"           # not measured (a slow or overloaded machine): retried on rerun
    if entry is not None:
        return UNRESOLVED, "no_test_output"
    return ERROR, None


def grade_log_file(test_spec: Any, prediction: dict[str, Any], log_path: str | Path, *,
                   report_path: str | Path | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """(status, reason, tests) of a test log, by swebench's ``get_eval_report`` (``tests`` holds its
    ``tests_status`` plus the parsed ``status_map``); the report is also written to ``report_path`` if given."""
    from swebench.harness.grading import get_eval_report, get_logs_eval

    report = get_eval_report(test_spec=test_spec, prediction=prediction, test_log_path=str(log_path),
                             include_tests_status=True)
    if report_path is not None:
        write_json_atomic(report_path, report)
    entry = report[prediction["instance_id"]]
    status, reason = status_of(entry, Path(log_path).read_text(errors="replace"))
    tests: dict[str, Any] = dict(entry.get("tests_status") or {})
    if entry.get("patch_successfully_applied"):
        tests["status_map"] = get_logs_eval(test_spec, str(log_path))[0]
    return status, reason, tests


def _git_apply_cmds() -> list[str]:
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS

    return list(GIT_APPLY_CMDS)


def grade_in_sandbox(instance: dict[str, Any], patch: str, sandbox_factory: SandboxFactory | None = None, *,
                     timeout: float = 1800, log_dir: str | Path | None = None, namespace: str | None = None,
                     model_name: str = "model") -> InstanceResult:
    """Grade ``patch`` on ``instance`` (see the module docstring). Never raises: an infrastructure failure is
    status ``error`` with the reason. Logs, the patch, the eval script and swebench's report go to
    ``log_dir/<instance_id>/`` (a temporary directory, removed afterwards, when ``log_dir`` is None)."""
    from swebench.harness.constants import APPLY_PATCH_FAIL, APPLY_PATCH_PASS, LOG_REPORT, LOG_TEST_OUTPUT, \
        TESTS_TIMEOUT

    iid = instance["instance_id"]
    t0 = time.time()
    res = InstanceResult(iid, ERROR, repo=instance.get("repo", ""))
    if not (patch or "").strip():
        res.status, res.reason = EMPTY_PATCH, "empty_patch"
        return res
    tmp = None if log_dir is not None else tempfile.mkdtemp(prefix="swe-srl-grade-")
    out = Path(log_dir if log_dir is not None else tmp) / iid
    out.mkdir(parents=True, exist_ok=True)
    (out / "patch.diff").write_text(patch)
    log_path = out / LOG_TEST_OUTPUT
    log: list[str] = []
    prediction = {"instance_id": iid, "model_name_or_path": model_name, "model_patch": patch}
    try:
        spec = instance_test_spec(instance, namespace=namespace)
        (out / "eval.sh").write_text(spec.eval_script)
        sb = (sandbox_factory or docker_sandbox_factory(namespace))(instance)
        try:
            sb.start()
            scratch = f"/tmp/swe-srl-grade-{uuid.uuid4().hex[:12]}"
            sb.write_file(f"{scratch}/patch.diff", patch if patch.endswith("\n") else patch + "\n")
            applied, r = False, None
            for cmd in _git_apply_cmds():
                r = sb.run(f"{cmd} {scratch}/patch.diff", timeout=APPLY_TIMEOUT)
                if r.exit_code == 0:
                    log.append(f"{APPLY_PATCH_PASS}:\n{r.output}")
                    applied = True
                    break
                log.append(f"Failed to apply patch to the sandbox: {cmd}")
            if not applied:
                log.append(f"{APPLY_PATCH_FAIL}:\n{r.output if r is not None else ''}")
            else:
                sb.write_file(f"{scratch}/eval.sh", spec.eval_script)
                r = sb.run(f"/bin/bash {scratch}/eval.sh", timeout=timeout)
                log.append(r.output)
                if r.timed_out:
                    log.append(f"\n\n{TESTS_TIMEOUT}\n{SWEBENCH_TIMEOUT_NOTE} {timeout} seconds exceeded.")
            try:
                sb.run(f"rm -rf {scratch}", timeout=60)      # a LocalSandbox's /tmp is the host's
            except Exception:
                pass
        finally:
            sb.close()
        log_path.write_text("\n".join(log))
        res.status, res.reason, res.tests = grade_log_file(spec, prediction, log_path,
                                                           report_path=None if tmp else out / LOG_REPORT)
    except Exception as e:  # one instance never aborts the run
        res.status, res.reason, res.tests = ERROR, f"{type(e).__name__}: {str(e)[:300]}", {}
        log.append(f"error: {res.reason}")
        log_path.write_text("\n".join(log))
    finally:
        res.seconds = round(time.time() - t0, 3)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return res
