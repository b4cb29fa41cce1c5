"""Eval integrity (issue #12 item 2): an infrastructure failure is ``error`` with its reason, never the model's
``empty_patch`` / ``unresolved``; errors are retried on rerun while real results are kept; the report gives both
resolve rates; image selection (local / pull / build, ``--namespace``), the harness command (cache level, namespace
none, relative dataset). Docker tests use the synthetic instance (tests/fixtures/swe_instance) built locally."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from swe_srl.swe_eval.grading import ERROR, EMPTY_PATCH, RESOLVED, UNRESOLVED, InstanceResult, local_sandbox_factory
from swe_srl.swe_eval.harness import harness_command
from swe_srl.swe_eval.images import ImageProvider, ImageUnavailable, image_candidates
from swe_srl.swe_eval.report import summarize, to_markdown
from swe_srl.swe_eval.runner import EvalConfig, EvalSetupError, run_eval

FIX = Path(__file__).parent / "fixtures" / "swe_instance"
sys.path.insert(0, str(FIX))
import synthetic  # noqa: E402

VERIFIED_ROW = {"instance_id": "django__django-11099", "repo": "django/django", "version": "3.0",
                "base_commit": "d26b2424437dabeeca94d7900b37d2df4410da0c", "patch": "", "test_patch": "",
                "FAIL_TO_PASS": [], "PASS_TO_PASS": []}
FIX_ANSWER = ("<think>the second branch returns lo</think>\n```python\n### calc/ops.py\n<<<<<<< SEARCH\n"
              "    if x > hi:\n        return lo\n=======\n    if x > hi:\n        return hi\n>>>>>>> REPLACE\n```\n")


class DockerDouble:
    """A docker client double for OUR image decision logic only: ``images.get`` / ``images.pull`` over a set of
    present names; a pull succeeds only for names in ``registry``."""

    def __init__(self, present=(), registry=()):
        import docker.errors

        self.present, self.registry, self.pulls = set(present), set(registry), []
        errors = docker.errors
        outer = self

        class Images:
            def get(self, name):
                if name not in outer.present:
                    raise errors.ImageNotFound(f"No such image: {name}")
                return object()

            def pull(self, repo, tag="latest"):
                outer.pulls.append(f"{repo}:{tag}")
                if f"{repo}:{tag}" not in outer.registry:
                    raise errors.APIError("registry unreachable")
                outer.present.add(f"{repo}:{tag}")

        self.images = Images()


# --- image selection -------------------------------------------------------------------------------------------
def test_image_candidates_and_namespace_none():
    pytest.importorskip("swebench")
    ns = image_candidates(VERIFIED_ROW, "swebench")
    assert ns == ["swebench/sweb.eval.x86_64.django_1776_django-11099:latest",
                  "sweb.eval.x86_64.django__django-11099:latest"]
    assert image_candidates(VERIFIED_ROW, None) == ["sweb.eval.x86_64.django__django-11099:latest"]
    assert image_candidates({**VERIFIED_ROW, "image": "my/img:1"}, "swebench") == ["my/img:1"]


def test_provider_local_then_pull_then_build():
    pytest.importorskip("docker")
    pytest.importorskip("swebench")
    ns_name, local = image_candidates(VERIFIED_ROW, "swebench")
    # present locally under the namespaced name, or only under the locally built name: used, nothing pulled
    d = DockerDouble(present={ns_name})
    assert ImageProvider("swebench", client=d).ensure(VERIFIED_ROW) == ns_name and d.pulls == []
    d = DockerDouble(present={local})
    assert ImageProvider("swebench", client=d).ensure(VERIFIED_ROW) == local and d.pulls == []
    # missing: pulled when the registry answers
    d = DockerDouble(registry={ns_name})
    p = ImageProvider("swebench", client=d)
    assert p.ensure(VERIFIED_ROW) == ns_name and d.pulls == [ns_name] and p.pulled == [ns_name]
    # no registry answers, no builder: ImageUnavailable that says what was tried
    d = DockerDouble()
    with pytest.raises(ImageUnavailable) as e:
        ImageProvider("swebench", client=d).ensure(VERIFIED_ROW)
    assert "not found locally" in str(e.value) and "pull " + ns_name + " failed" in str(e.value)
    assert "swe-srl images build" in str(e.value)
    # --no-pull: never pulls
    d = DockerDouble(registry={ns_name})
    with pytest.raises(ImageUnavailable):
        ImageProvider("swebench", pull=False, client=d).ensure(VERIFIED_ROW)
    assert d.pulls == []
    # --namespace none: a local name is never pulled; --build builds it
    d = DockerDouble(registry={local})
    built = []
    p = ImageProvider(None, client=d, builder=lambda inst: built.append(inst["instance_id"]) or local)
    assert p.ensure(VERIFIED_ROW) == local and d.pulls == [] and built == ["django__django-11099"]
    assert p.ensure(VERIFIED_ROW) == local and built == ["django__django-11099"]      # remembered
    # a failing build is reported as such
    def boom(inst):
        raise RuntimeError("pip install failed")
    with pytest.raises(ImageUnavailable, match="build failed: RuntimeError: pip install failed"):
        ImageProvider(None, client=DockerDouble(), builder=boom).ensure(VERIFIED_ROW)


def test_agent_mode_honours_namespace(monkeypatch, tmp_path):
    """The agent's sandboxes come from the same provider as the grader's: the namespaced image."""
    pytest.importorskip("docker")
    from swe_srl.swe_eval import runner

    inst = {**synthetic.instance("0" * 40, instance_id="swe-srl__calc-ns")}
    del inst["image"]
    ds = tmp_path / "ds.jsonl"
    ds.write_text(json.dumps(inst) + "\n")
    want = "myns/sweb.eval.x86_64.swe-srl_1776_calc-ns:latest"
    seen = {}

    def run_agent(instance, gen, params, *, max_steps, sandbox_factory):
        seen["image"] = sandbox_factory(instance).image
        return {"model_patch": "", "reason": "submit", "steps": 1, "trajectory": [], "seconds": 0.0}

    monkeypatch.setattr(runner, "run_agent", run_agent)
    cfg = EvalConfig(dataset=str(ds), mode="agent", namespace="myns", generator=object(), model_name="m",
                     out_dir=str(tmp_path / "out"), predictions_only=True, docker_client=DockerDouble(present={want}))
    run_eval(cfg, log=lambda m: None)
    assert seen["image"] == want


# --- harness command ---------------------------------------------------------------------------------------------
def test_harness_command_cache_level_namespace_relative_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ds.jsonl").write_text("{}\n")
    cmd = harness_command("p.jsonl", ["a__b-1"], dataset_name="ds.jsonl", run_id="r", report_dir="rep",
                          namespace=None)
    arg = {cmd[i]: cmd[i + 1] for i in range(3, len(cmd) - 1) if cmd[i].startswith("--")}
    assert arg["--cache_level"] == "instance"                     # default keeps pulled / built instance images
    assert arg["--namespace"] == "none"                           # not dropped (swebench's default is swebench)
    assert arg["--dataset_name"] == str(tmp_path / "ds.jsonl")    # absolute: the harness runs in OUT/harness
    assert arg["--predictions_path"] == str(tmp_path / "p.jsonl")
    cmd = harness_command("p.jsonl", ["a__b-1"], dataset_name="SWE-bench/SWE-bench_Verified", run_id="r",
                          report_dir="rep", namespace="swebench", cache_level="env")
    arg = {cmd[i]: cmd[i + 1] for i in range(3, len(cmd) - 1) if cmd[i].startswith("--")}
    assert (arg["--cache_level"], arg["--namespace"], arg["--dataset_name"]) == ("env", "swebench",
                                                                                "SWE-bench/SWE-bench_Verified")
    with pytest.raises(ValueError):
        harness_command("p", [], dataset_name="d", run_id="r", report_dir="x", cache_level="all")
    with pytest.raises(EvalSetupError, match="--cache-level"):
        run_eval(EvalConfig(dataset="ds.jsonl", gold=True, cache_level="everything"))


def test_cli_namespace_none_and_options(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from swe_srl import swe_eval
    from swe_srl.cli import app

    got = {}

    def fake_run_eval(cfg, log):
        got["cfg"] = cfg
        return {"predictions": "p", "total": 0, "non_empty": 0, "errors": 0}

    monkeypatch.setattr(swe_eval, "run_eval", fake_run_eval)
    r = CliRunner().invoke(app, ["eval", "--gold", "--dataset", "rel.jsonl", "--namespace", "none", "--no-pull",
                                 "--cache-level", "env", "--source", "image", "--predictions-only"])
    assert r.exit_code == 0, r.output
    cfg = got["cfg"]
    assert (cfg.namespace, cfg.pull, cfg.cache_level, cfg.build, cfg.dataset) == (None, False, "env", False,
                                                                                  "rel.jsonl")
    r = CliRunner().invoke(app, ["eval", "--gold", "--predictions-only"])
    assert got["cfg"].namespace == "swebench" and got["cfg"].cache_level == "instance" and got["cfg"].pull


def test_build_default_builder_uses_images_build(monkeypatch, tmp_path):
    """--build without an injected builder calls environments.images.build.build_images for the one instance; a
    failed build record is an error of that instance (H6's builder itself is tested in its own tests)."""
    from swe_srl.swe_eval import runner

    calls = []

    def build_images(instances, *, repos_dir, client, logs_dir):
        calls.append((instances[0]["instance_id"], repos_dir, Path(logs_dir).name))
        ok = instances[0]["instance_id"] != "django__django-2"
        return [{"instance_id": instances[0]["instance_id"], "image": "sweb.eval.x86_64.built:latest",
                 "status": "built" if ok else "failed", **({} if ok else {"error": "BuildError: pip", "log": "l"})}]

    monkeypatch.setattr(runner.image_build, "build_images", build_images)
    cfg = EvalConfig(build=True, namespace=None, repos_dir="R", out_dir=str(tmp_path), docker_client=DockerDouble())
    p = runner.make_image_provider(cfg)
    assert p.ensure(VERIFIED_ROW) == "sweb.eval.x86_64.built:latest"
    assert calls == [("django__django-11099", "R", "image_build_logs")]
    with pytest.raises(ImageUnavailable, match="build failed: RuntimeError: BuildError: pip"):
        p.ensure({**VERIFIED_ROW, "instance_id": "django__django-2"})


# --- report ------------------------------------------------------------------------------------------------------
def test_report_counts_and_both_resolve_rates():
    rs = [InstanceResult("a", RESOLVED, repo="r"), InstanceResult("b", UNRESOLVED, "tests_failed", repo="r"),
          InstanceResult("c", EMPTY_PATCH, "empty_patch", repo="r"),
          InstanceResult("d", ERROR, "image for d not found", repo="q")]
    s = summarize(rs)
    assert s["counts"] == {"resolved": 1, "unresolved": 1, "empty_patch": 1, "error": 1}
    assert (s["total"], s["graded"], s["resolve_rate"], s["resolve_rate_graded"]) == (4, 3, 25.0, 33.33)
    assert s["errors"] == [{"instance_id": "d", "reason": "image for d not found"}]
    assert s["per_repo"]["q"]["resolve_rate_graded"] == 0.0 and s["per_repo"]["r"]["resolve_rate_graded"] == 33.33
    md = to_markdown({**s, "model": "m", "mode": "oracle", "split": "x"})
    assert "25.00%" in md and "33.33%" in md and "| d | image for d not found |" in md


# --- retry errors, keep results (no Docker: LocalSandbox over the bundled tasks) --------------------------------
def test_errors_retried_real_results_kept(tmp_path):
    pytest.importorskip("swebench")
    from swe_srl import sample_tasks as st

    rows = st.eval_instances()[:3]
    for r in rows:
        st.materialize_repo(r["instance_id"], tmp_path / "repos" / r["instance_id"])
    local = local_sandbox_factory(tmp_path / "repos")
    broken = {rows[0]["instance_id"]}
    calls = []

    def factory(inst):          # the infrastructure: a sandbox that fails to start for the ids in `broken`
        calls.append(inst["instance_id"])
        if inst["instance_id"] in broken:
            raise RuntimeError("container start failed")
        return local(inst)

    ds = tmp_path / "ds.jsonl"
    ds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = tmp_path / "preds.jsonl"
    patches = [r["patch"] for r in rows[:2]]            # the third instance has no prediction at all
    preds.write_text("".join(json.dumps({"instance_id": r["instance_id"], "model_name_or_path": "m",
                                         "model_patch": p}) + "\n" for r, p in zip(rows, patches)))
    cfg = EvalConfig(dataset=str(ds), predictions=str(preds), out_dir=str(tmp_path / "out"), sandbox_factory=factory,
                     timeout=300)
    s = run_eval(cfg, log=lambda m: None)
    st_ = {r["instance_id"]: (r["status"], r["reason"]) for r in s["instances"]}
    assert st_[rows[0]["instance_id"]] == (ERROR, "RuntimeError: container start failed")
    assert st_[rows[1]["instance_id"]] == (RESOLVED, None)
    assert st_[rows[2]["instance_id"]] == (ERROR, "no_prediction")
    assert s["counts"] == {"resolved": 1, "unresolved": 0, "empty_patch": 0, "error": 2} and s["graded"] == 1
    assert s["resolve_rate"] == 33.33 and s["resolve_rate_graded"] == 100.0
    # rerun with the infrastructure fixed: only the error is graded again, the real result is kept
    broken.clear()
    calls.clear()
    s = run_eval(cfg, log=lambda m: None)
    assert calls == [rows[0]["instance_id"]] and s["kept_from_previous_run"] == 1
    assert s["counts"] == {"resolved": 2, "unresolved": 0, "empty_patch": 0, "error": 1}
    # a changed patch is graded again (the result store is keyed by the patch's sha256)
    preds.write_text("".join(json.dumps({"instance_id": r["instance_id"], "model_name_or_path": "m",
                                         "model_patch": p}) + "\n" for r, p in zip(rows, ["", patches[1]])))
    calls.clear()
    s = run_eval(cfg, log=lambda m: None)
    assert calls == [] and s["counts"]["empty_patch"] == 1 and s["counts"]["resolved"] == 1   # empty: no sandbox


# --- real Docker ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_image(docker_client, sandbox_base_image):
    return docker_client


def _remove(client, name):
    try:
        client.images.remove(name, force=True)
    except Exception:
        pass


class FixGen:
    name = "fix"

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        return [[FIX_ANSWER] for _ in prompts]


def _no_image_instance(tmp_path, iid):
    from environments.sandbox import instance_image_name

    sha = synthetic.make_repo(tmp_path / f"probe-{iid}")     # deterministic commit: same as the image's
    inst = synthetic.instance(sha, instance_id=iid)
    del inst["image"]                                         # the eval looks for the instance image name
    ds = tmp_path / f"{iid}.jsonl"
    ds.write_text(json.dumps(inst) + "\n")
    return inst, ds, instance_image_name(iid)


@pytest.mark.docker
def test_oracle_missing_image_is_error_then_rerun_grades(base_image, tmp_path):
    client = base_image
    inst, ds, name = _no_image_instance(tmp_path, "swe-srl__calc-integrity")
    _remove(client, name)
    gen = FixGen()
    cfg = EvalConfig(dataset=str(ds), mode="oracle", source="image", namespace=None, generator=gen,
                     model_name="fix", out_dir=str(tmp_path / "out"), timeout=300)
    try:
        s = run_eval(cfg, log=lambda m: None)
        r = s["instances"][0]
        assert (r["status"], s["counts"]["empty_patch"], s["counts"]["error"]) == (ERROR, 0, 1), r
        assert "not found" in r["reason"] and name in r["reason"] and r["reason"].startswith("prediction: source_")
        assert gen.calls == 0 and not (tmp_path / "out" / "predictions.jsonl").read_text().strip()
        assert s["resolve_rate"] == 0.0 and s["graded"] == 0
        # the image appears (built under the name the eval looks for): the rerun generates and grades it
        synthetic.build_image(client, tag=name)
        s = run_eval(cfg, log=lambda m: None)
        r = s["instances"][0]
        assert (r["status"], r["reason"]) == (RESOLVED, None) and gen.calls == 1, r
        assert s["counts"] == {"resolved": 1, "unresolved": 0, "empty_patch": 0, "error": 0}
    finally:
        _remove(client, name)


@pytest.mark.docker
def test_build_flag_builds_missing_image_and_no_registry_is_error(base_image, tmp_path):
    client = base_image
    inst, ds, name = _no_image_instance(tmp_path, "swe-srl__calc-build")
    _remove(client, name)
    built = []

    def builder(instance):
        built.append(instance["instance_id"])
        synthetic.build_image(client, tag=name)
        return name

    try:
        s = run_eval(EvalConfig(dataset=str(ds), gold=True, namespace=None, build=True, image_builder=builder,
                                out_dir=str(tmp_path / "out"), timeout=300), log=lambda m: None)
        assert s["instances"][0]["status"] == RESOLVED and built == ["swe-srl__calc-build"]
        assert s["images_built"] == [name]
    finally:
        _remove(client, name)
    # a namespaced name nobody has: the pull is tried, no registry answers, the instance is an error
    s = run_eval(EvalConfig(dataset=str(ds), gold=True, namespace="swe-srl-no-such-ns",
                            out_dir=str(tmp_path / "out2"), timeout=300), log=lambda m: None)
    r = s["instances"][0]
    assert r["status"] == ERROR and "pull swe-srl-no-such-ns/" in r["reason"] and "failed" in r["reason"], r


@pytest.mark.docker
def test_agent_mode_runs_in_namespaced_image(base_image, tmp_path):
    client = base_image
    inst, ds, _ = _no_image_instance(tmp_path, "swe-srl__calc-agentns")
    from environments.sandbox import instance_image_name

    name = instance_image_name("swe-srl__calc-agentns", namespace="swe-srl-test")
    synthetic.build_image(client, tag=name)

    class Scripted:
        name = "scripted"
        turns = ["<think>fix</think>\n<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n"
                 "<parameter=path>/testbed/calc/ops.py</parameter>\n<parameter=old_str>    if x > hi:\n"
                 "        return lo</parameter>\n<parameter=new_str>    if x > hi:\n        return hi</parameter>\n"
                 "</function>", "<think>done</think>\n<function=submit>\n</function>"]

        def __init__(self):
            self.n = 0

        def generate(self, prompts, params):
            self.n += 1
            return [[self.turns[self.n - 1]]]

    try:
        s = run_eval(EvalConfig(dataset=str(ds), mode="agent", namespace="swe-srl-test", generator=Scripted(),
                                model_name="scripted", out_dir=str(tmp_path / "out"), max_steps=4, timeout=300),
                     log=lambda m: None)
        assert s["instances"][0]["status"] == RESOLVED, s["instances"]
        # without the namespace the local name does not exist: an error of the prediction step, not empty_patch
        s = run_eval(EvalConfig(dataset=str(ds), mode="agent", namespace=None, generator=Scripted(),
                                model_name="scripted", out_dir=str(tmp_path / "out-nons"), max_steps=4),
                     log=lambda m: None)
        r = s["instances"][0]
        assert r["status"] == ERROR and r["reason"].startswith("prediction: error") and "not found" in r["reason"]
    finally:
        _remove(client, name)


# --- edit-path self-check ------------------------------------------------------------------------------------------
DUP = "def f():\n    return 1\n\n\ndef g():\n    return 1\n\n\ndef h():\n    return 1\n"


class DictSource:
    def __init__(self, files):
        self.files = files

    def read(self, instance, paths):
        return {p: self.files[p] for p in paths}

    def list_files(self, instance):
        return sorted(self.files)


def _diff(old: str, new: str, path="m.py") -> str:
    from swe_srl.swe_eval.edits import make_unified_diff

    return make_unified_diff({path: old}, {path: new}, context=0)


def test_selfcheck_widens_ambiguous_search_and_detects_mismatch():
    pytest.importorskip("unidiff")
    from swe_srl.swe_eval.edits import apply_edits, parse_edits
    from swe_srl.swe_eval.selfcheck import check_instance, gold_answer

    new = DUP.replace("def h():\n    return 1", "def h():\n    return 3")
    patch = _diff(DUP, new)                                  # no context: "    return 1" occurs 3 times
    ans = gold_answer(patch, {"m.py": DUP})
    edits = parse_edits(ans)
    assert len(edits) == 1 and DUP.count(edits[0].search) == 1 and "def h" in edits[0].search
    assert apply_edits({"m.py": DUP}, edits).files == {"m.py": new}
    inst = {"instance_id": "x__y-1", "repo": "x/y", "patch": patch}
    r = check_instance(inst, DictSource({"m.py": DUP}))
    assert r["ok"] and r["identical_files"] == 1 and r["blocks"] == 1, r
    # base files that are not what the patch was made on: reported with the cause, not "identical"
    r = check_instance(inst, DictSource({"m.py": DUP.replace("return 1", "return 0")}))
    assert not r["ok"] and r["cause"].startswith("conversion: hunk_mismatch"), r
    # a file that cannot be read: a source error
    r = check_instance(inst, DictSource({}))
    assert not r["ok"] and r["cause"].startswith("source_error"), r


def test_selfcheck_real_repos_all_identical(shared_data):
    """All instances of ../shared/data/repos: the gold patch through the model-output edit path gives exactly the
    gold files (and matches the committed benchmarks/results/edit_path_selfcheck.json)."""
    from swe_srl.swe_eval.dataset import load_instances
    from swe_srl.swe_eval.selfcheck import check_instance, summarize_checks
    from swe_srl.swe_eval.sources import RepoDirSource

    repos = shared_data / "repos"
    ids = [i for v in json.loads((repos / "instances.json").read_text()).values() for i in v]
    rows = load_instances(dataset=shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl", instance_ids=ids)
    s = summarize_checks([check_instance(r, RepoDirSource(repos)) for r in rows])
    assert s["failures"] == [] and s["identical"] == s["instances"] == len(ids) == 77
    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" /
                            "edit_path_selfcheck.json").read_text())
    assert {k: committed[k] for k in ("instances", "identical", "identical_files", "hunks")} == \
        {k: s[k] for k in ("instances", "identical", "identical_files", "hunks")}
