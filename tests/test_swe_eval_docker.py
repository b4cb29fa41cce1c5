"""SWE eval in real Docker on the synthetic instance (tests/fixtures/swe_instance), built locally FROM
swe-srl/sandbox-base:latest: gold -> resolved, empty -> empty_patch, wrong -> unresolved; agent mode with a
scripted generator; reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures" / "swe_instance"
sys.path.insert(0, str(FIX))
import synthetic  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def calc_instance(docker_client, sandbox_base_image):
    sha = synthetic.build_image(docker_client)
    return synthetic.instance(sha)


def _write_dataset(tmp_path: Path, rows: list[dict]) -> str:
    p = tmp_path / "instances.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_gold_empty_wrong(calc_instance, tmp_path):
    from swe_srl.swe_eval import EvalConfig, run_eval

    rows = [dict(calc_instance, instance_id=f"swe-srl__calc-{k}") for k in ("gold", "empty", "wrong")]
    preds = {"swe-srl__calc-gold": calc_instance["patch"], "swe-srl__calc-empty": "",
             "swe-srl__calc-wrong": synthetic.text("wrong.patch")}
    pf = tmp_path / "preds.jsonl"
    pf.write_text("".join(json.dumps({"instance_id": k, "model_name_or_path": "t", "model_patch": v}) + "\n"
                          for k, v in preds.items()))
    out = tmp_path / "out"
    s = run_eval(EvalConfig(dataset=_write_dataset(tmp_path, rows), predictions=str(pf), out_dir=str(out),
                            workers=2), log=lambda m: None)
    st = {r["instance_id"]: (r["status"], r["reason"]) for r in s["instances"]}
    assert st == {"swe-srl__calc-gold": ("resolved", None), "swe-srl__calc-empty": ("empty_patch", "empty_patch"),
                  "swe-srl__calc-wrong": ("unresolved", "tests_failed")}
    assert s["counts"] == {"resolved": 1, "unresolved": 1, "empty_patch": 1, "error": 0}
    assert abs(s["resolve_rate"] - 33.33) < 0.01
    assert (out / "report.md").read_text().count("| swe-srl/calc |") == 1 and (out / "report.png").stat().st_size
    wrong = next(r for r in s["instances"] if r["instance_id"] == "swe-srl__calc-wrong")
    assert wrong["tests"]["PASS_TO_PASS"]["failure"] == ["tests.test_ops.TestOps.test_clamp_low"]


def test_gold_flag_and_broken_instance_does_not_abort(calc_instance, tmp_path):
    from swe_srl.swe_eval import EvalConfig, run_eval

    broken = dict(calc_instance, instance_id="swe-srl__calc-noimage", image="swe-srl/does-not-exist:latest")
    garbage = dict(calc_instance, instance_id="swe-srl__calc-badpatch", patch="diff --git a/x b/x\nnot a patch\n")
    s = run_eval(EvalConfig(dataset=_write_dataset(tmp_path, [broken, calc_instance, garbage]), gold=True,
                            out_dir=str(tmp_path / "out")), log=lambda m: None)
    st = {r["instance_id"]: (r["status"], r["reason"]) for r in s["instances"]}
    assert st["swe-srl__calc-1"] == ("resolved", None)
    assert st["swe-srl__calc-noimage"][0] == "error" and "not found" in st["swe-srl__calc-noimage"][1]
    assert st["swe-srl__calc-badpatch"] == ("unresolved", "patch_apply_failed")
    assert s["model"] == "gold"


def test_agent_mode_scripted(calc_instance, tmp_path):
    """The model is not under test: a scripted generator plays view -> bad format -> str_replace -> submit."""
    from swe_srl.swe_eval import EvalConfig, run_eval

    class Scripted:
        name = "scripted"

        def __init__(self):
            self.prompts = []
            self.turns = [
                "<think>look at clamp</think>\n<function=bash>\n<parameter=command>grep -n 'return lo' calc/ops.py"
                "</parameter>\n</function>",
                "no think tags here",
                "<think>second return is wrong</think>\n<function=str_replace_editor>\n"
                "<parameter=command>str_replace</parameter>\n<parameter=path>/testbed/calc/ops.py</parameter>\n"
                "<parameter=old_str>    if x > hi:\n        return lo</parameter>\n"
                "<parameter=new_str>    if x > hi:\n        return hi</parameter>\n</function>",
                "<think>done</think>\n<function=submit>\n</function>",
            ]

        def generate(self, prompts, params):
            self.prompts.append(prompts[0])
            return [[self.turns[len(self.prompts) - 1]]]

    gen = Scripted()
    out = tmp_path / "out"
    s = run_eval(EvalConfig(dataset=_write_dataset(tmp_path, [calc_instance]), mode="agent", generator=gen,
                            model_name="scripted", out_dir=str(out), max_steps=6), log=lambda m: None)
    assert s["counts"]["resolved"] == 1, s["instances"]
    from swe_srl.swe_eval.agent import AGENT_SYSTEM_PROMPT

    last = gen.prompts[-1]
    assert last[0] == {"role": "system", "content": AGENT_SYSTEM_PROMPT} and synthetic.PROBLEM in last[1]["content"]
    assert len(last) == 2 + 2 * 3 and "return lo" in last[3]["content"]      # 3 rounds: grep, format error, edit
    assert "not valid (missing_think_open)" in last[5]["content"]
    gen_rec = json.loads((out / "generations.jsonl").read_text().splitlines()[0])
    assert gen_rec["reason"] == "submit" and gen_rec["steps"] == 4
    pred = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert "-        return lo\n+        return hi" in pred["model_patch"]


def test_missing_image_is_error_not_empty_patch(calc_instance, tmp_path):
    from swe_srl.swe_eval import docker_sandbox_factory, grade_in_sandbox

    inst = dict(calc_instance, instance_id="swe-srl__calc-missing", image="swe-srl/does-not-exist:latest")
    r = grade_in_sandbox(inst, inst["patch"], docker_sandbox_factory(), log_dir=tmp_path / "logs")
    assert r.status == "error" and "not found" in r.reason, r
    # without an image field the swebench instance image name is used, and is missing too
    del inst["image"]
    r = grade_in_sandbox(inst, inst["patch"], docker_sandbox_factory(), log_dir=tmp_path / "logs")
    assert r.status == "error" and "sweb.eval.x86_64.swe-srl__calc-missing:latest" in r.reason, r


@pytest.fixture(scope="module")
def bundled_images(docker_client, sandbox_base_image, tmp_path_factory):
    from swe_srl import sample_tasks as st

    root = tmp_path_factory.mktemp("bundled")
    out = {}
    for inst in st.eval_instances():
        repo = st.materialize_repo(inst["instance_id"], root / "repos" / inst["instance_id"])
        out[inst["instance_id"]] = dict(inst, image=st.build_instance_image(docker_client, inst["instance_id"], repo))
    return root, out


def test_bundled_tasks_same_status_in_local_and_docker_sandbox(bundled_images, tmp_path):
    """The quickstart's two branches: the SAME grader, a DockerSandbox of the task image or a LocalSandbox over the
    materialized repo, gives the same status for gold / empty / wrong patches of every bundled task."""
    from swe_srl.swe_eval import docker_sandbox_factory, grade_in_sandbox, local_sandbox_factory

    root, instances = bundled_images
    factories = {"docker": docker_sandbox_factory(), "local": local_sandbox_factory(root / "repos")}
    expected = {"gold": ("resolved", None), "empty": ("empty_patch", "empty_patch"),
                "wrong": ("unresolved", "tests_failed")}
    for iid, inst in instances.items():
        patches = {"gold": inst["patch"], "empty": "", "wrong": synthetic.bundled_wrong_patch(iid, tmp_path)}
        got = {(name, kind): grade_in_sandbox(inst, p, f, log_dir=tmp_path / name / kind, timeout=120)
               for name, f in factories.items() for kind, p in patches.items()}
        for kind in patches:
            d, loc = got[("docker", kind)], got[("local", kind)]
            assert (d.status, d.reason) == (loc.status, loc.reason) == expected[kind], (iid, kind, d, loc)
            assert d.tests.get("FAIL_TO_PASS") == loc.tests.get("FAIL_TO_PASS")
