"""collect_math: instances per solution, title hint, first-step option, split, manifest, resume, input formats."""

from __future__ import annotations

import json

import pytest

from math_srl.collect import collect_math, detect_fields, load_rows
from math_srl.prompts import MATH_SRL_SYSTEM_PROMPT
from swe_srl.core import read_steps

SOL3 = "1. **Set up**: Let $x=2$.\n2. **Square**: $x^2=4$.\n3. **Answer**: So $\\boxed{4}$."
SOL4 = "Intro text.\n\n1. **A** a.\n2. **B** b.\n3. **C** c.\n4. **D** $\\boxed{7}$."
ROWS = [
    {"id": "p1", "problem": "Find $x^2$ if $x=2$.", "solution": SOL3},
    {"id": "p2", "problem": "Q2", "solution": SOL4},
    {"id": "p3", "problem": "Q3", "solution": "42"},                       # answer only
    {"id": "p4", "problem": "", "solution": SOL3},                         # no question
]


def _write(tmp_path, rows, name="in.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


def test_instances_and_manifest(tmp_path):
    m = collect_math(_write(tmp_path, ROWS), tmp_path / "out", val_size=0)
    recs = read_steps(tmp_path / "out" / "steps.jsonl")
    assert [(r.instance_id, r.step_index, r.num_steps) for r in recs] == [
        ("p1", 1, 3), ("p1", 2, 3), ("p2", 1, 4), ("p2", 2, 4), ("p2", 3, 4)]   # N-1 per solution, k >= 2
    r = recs[1]
    assert r.task == "math" and r.tool is None
    assert r.prompt[0] == {"role": "system", "content": MATH_SRL_SYSTEM_PROMPT}
    assert r.prompt[1]["content"].startswith("Find $x^2$ if $x=2$.\n\nPartial solution so far:\n1. **Set up**")
    assert "2. **Square**: $x^2=4$." in r.prompt[1]["content"] and "3. **Answer**" not in r.prompt[1]["content"]
    assert r.target == "3. **Answer**: So $\\boxed{4}$."
    assert r.meta["split"] == "train" and r.meta["answer"] == "4" and r.meta["source_format"] == "numbered_bold"
    assert recs[2].prompt[1]["content"].startswith("Q2\n\nPartial solution so far:\nIntro text.\n\n1. **A** a.")
    assert m["counts"]["steps"] == 5 and m["counts"]["questions_ok"] == 2
    assert m["skipped"] == {"answer_only": 1, "missing_question": 1}
    assert m["styles"] == {"numbered_bold": 2}
    assert m["solution_steps"]["max"] == 4 and m["target_chars"]["count"] == 5
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"] == m["counts"]


def test_first_step_and_title_hint(tmp_path):
    collect_math(_write(tmp_path, ROWS[:1]), tmp_path / "o", include_first_step=True, title_hint=True, val_size=0)
    recs = read_steps(tmp_path / "o" / "steps.jsonl")
    assert [r.step_index for r in recs] == [0, 1, 2]
    assert recs[0].prompt[1]["content"] == "Find $x^2$ if $x=2$.\n\nNext step title: 1. **Set up**"
    assert recs[0].target == "Let $x=2$."
    assert recs[2].prompt[1]["content"].endswith("Next step title: 3. **Answer**")
    assert recs[2].target == "So $\\boxed{4}$." and recs[2].meta["title_hint"] is True


def test_validation_split_by_question_is_seeded(tmp_path):
    rows = [{"id": f"q{i}", "problem": f"P{i}", "solution": SOL3} for i in range(20)]
    src = _write(tmp_path, rows)
    m1 = collect_math(src, tmp_path / "a", val_size=5, seed=3)
    m2 = collect_math(src, tmp_path / "b", val_size=5, seed=3)
    val = m1["split"]["val_questions"]
    assert len(val) == 5 and val == m2["split"]["val_questions"]
    assert collect_math(src, tmp_path / "c", val_size=5, seed=4)["split"]["val_questions"] != val
    recs = read_steps(tmp_path / "a" / "steps.jsonl")
    assert {r.instance_id for r in recs if r.meta["split"] == "val"} == set(val)
    assert m1["counts"]["val_steps"] == 10 and m1["counts"]["train_steps"] == 30


def test_resume_and_option_guard(tmp_path):
    src = _write(tmp_path, ROWS)
    out = tmp_path / "out"
    collect_math(src, out, val_size=0)
    before = (out / "steps.jsonl").read_bytes()
    m = collect_math(src, out, val_size=0)   # resume: nothing redone, nothing duplicated
    assert (out / "steps.jsonl").read_bytes() == before and m["counts"]["steps"] == 5
    with pytest.raises(ValueError, match=r"other options \(title_hint: False -> True\)"):
        collect_math(src, out, val_size=0, title_hint=True)
    with pytest.raises(ValueError, match=r"other options \(input: "):
        collect_math(_write(tmp_path, ROWS, name="in2.jsonl"), out, val_size=0)
    assert collect_math(src, out, val_size=0, title_hint=True, resume=False)["counts"]["steps"] == 5


def test_input_formats_and_field_detection(tmp_path):
    rows = [{"question": "Q", "deepseek_attempt": SOL3, "solution": "x"}]
    (tmp_path / "a.json").write_text(json.dumps({"train": rows}))
    assert load_rows(tmp_path / "a.json") == rows
    assert detect_fields(rows) == ("question", "deepseek_attempt")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "r.parquet")
    m = collect_math(tmp_path / "r.parquet", tmp_path / "pq", val_size=0, limit=2)
    assert m["counts"]["steps"] == 5
    with pytest.raises(ValueError, match="solution_field"):
        detect_fields(rows, solution_field="nope")


def test_structured_only_drops_prose(tmp_path):
    rows = ROWS[:1] + [{"id": "prose", "problem": "Q", "solution": ("We compute the value carefully. " * 8 + "\n\n") * 3}]
    m = collect_math(_write(tmp_path, rows), tmp_path / "o", val_size=0, structured_only=True)
    assert m["skipped"] == {"unstructured": 1}


def test_real_files(shared_data, tmp_path):
    m = collect_math(shared_data / "s1k_questions_solutions" / "s1k.json", tmp_path / "s1k")
    c = m["counts"]
    assert (c["rows"], c["questions_ok"], c["steps"], c["val_questions"]) == (1000, 552, 2579, 60)
    assert m["skipped"] == {"answer_only": 375, "too_few_steps": 73}
    assert m["styles"]["numbered_bold"] == 212
    m5 = collect_math(shared_data / "math_eval" / "math500" / "test.jsonl", tmp_path / "m500")
    assert (m5["counts"]["questions_ok"], m5["counts"]["steps"]) == (216, 351)
    assert m5["options"]["question_field"] == "problem" and m5["options"]["solution_field"] == "solution"


def test_rewrite_mode_in_collect(tmp_path):
    class Fake:
        name = "fake"
        calls = 0

        def generate(self, prompts, params):
            Fake.calls += len(prompts)
            return [["SOLUTION:\n1. **Start** We start.\n2. **Finish** We finish with $\\boxed{1}$."] for _ in prompts]

    rows = ROWS[:1] + [{"id": "prose", "problem": "Q", "solution": ("We compute the value carefully. " * 8 + "\n\n") * 3}]
    src = _write(tmp_path, rows)
    m = collect_math(src, tmp_path / "o", val_size=0, rewrite="unstructured", rewrite_generator=Fake())
    assert Fake.calls == 1 and m["counts"]["steps"] == 3 and m["styles"] == {"numbered_bold": 2}
    recs = read_steps(tmp_path / "o" / "steps.jsonl")
    assert recs[-1].target.startswith("2. **Finish**") and recs[-1].meta["rewritten"] is True
    collect_math(src, tmp_path / "o", val_size=0, rewrite="unstructured", rewrite_generator=Fake())
    assert Fake.calls == 1   # resume: finished questions are not rewritten again
