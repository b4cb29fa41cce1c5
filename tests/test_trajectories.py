"""Trajectory readers: every shared file parses, step counts = actions, golden steps per format, bad input."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest

from environments.prompting import SYSTEM_PROMPT, build_messages, truncate_middle_chars
from environments.trajectories import TrajectoryFormatError, discover, iter_file, read_trajectories
from environments.trajectories.aci import parse_sweagent_action
from swe_srl.core import parse_completion

ROOT = "swe_trajectories"


def _loose(v):
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return ast.literal_eval(v)


def _expected_actions(path: Path) -> list[int]:
    """Independent count of agent actions per trajectory in a file (think / role-protocol / auto-exit excluded)."""
    name = path.name
    if name.endswith(".jsonl"):
        out = []
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "history" in row:
                out.append(sum(1 for e in row["history"] if e.get("source") == "agent"
                               and e.get("action") in ("run", "read", "edit", "finish", "run_ipython", "browse")))
            else:
                out.append(sum(m["content"].count("<function=") for m in row["messages"] if m["role"] == "assistant"))
        return out
    obj = json.loads(path.read_text())
    if name.endswith(".traj.json"):
        return [sum(len(_loose(m.get("tool_calls")) or []) for m in obj["messages"] if m["role"] == "assistant")]
    if name.endswith(".traj"):
        steps = obj.get("trajectory") or [h for h in obj["history"] if h.get("role") == "assistant" and "action" in h]
        heads = [s["action"].split()[0] if s["action"].strip() else "" for s in steps]
        return [sum(1 for h in heads if h and h not in ("plan", "succeed", "fail") and not h.startswith("exit_"))]
    # OpenHands llm_completions: all tool calls (+ the final response's) minus think
    calls = [tc for m in obj["messages"] if m.get("role") == "assistant" for tc in (_loose(m.get("tool_calls")) or [])]
    calls += obj["response"]["choices"][0]["message"].get("tool_calls") or []
    return [sum(1 for tc in calls if tc["function"]["name"] != "think")]


def test_every_shared_file_parses_with_action_counts(shared_data):
    files, ignored = discover([shared_data / ROOT])
    assert len(files) >= 170
    assert all(not f.endswith((".traj", ".traj.json", ".jsonl")) for f in ignored)
    formats = set()
    for f in files:
        got = []
        for unit, item in iter_file(f.path):
            assert not isinstance(item, Exception), item
            got.append(len(item.steps))
            formats.add(item.format)
            for st in item.steps:
                assert st.action.startswith(f"<function={st.tool}>") and st.action.endswith("</function>")
                assert parse_completion("<think>x</think>" + st.action, expect_tool_call=True).action == st.action
        assert got == _expected_actions(f.path), f.path
    assert formats == {"sweagent_0x", "sweagent_1x", "minisweagent", "openhands_completions", "openhands_output",
                       "swesmith_sft"}


def _one(shared_data, rel):
    return read_trajectories(shared_data / ROOT / rel)


def test_golden_coder_multirole(shared_data):
    (t,) = _one(shared_data, "sweagent_traj/coder_swebench_lite/trajs/django__django-11179.traj")
    assert t.format == "sweagent_0x" and t.resolved is True and t.repo == "django/django"
    assert t.meta["excluded_actions"] == {"plan": 2, "succeed": 2}
    assert t.issue.startswith("delete() on instances of models without any dependencies doesn't clear PKs.")
    s0, s1, s2 = t.steps[:3]
    assert s0.action == ("<function=open>\n<parameter=path>django/db/models/deletion.py</parameter>\n"
                         "<parameter=line_number>276</parameter>\n</function>")
    assert s0.observation.startswith("[File: /django__django/django/db/models/deletion.py (327 lines total)]")
    assert s0.meta["role"] == "Programmer" and s2.meta["role"] == "Tester"
    assert s1.tool == "edit" and s1.action.startswith(
        "<function=edit>\n<parameter=start_line>276</parameter>\n<parameter=end_line>280</parameter>\n"
        "<parameter=replacement_text>            instance = list(instances)[0]\n")
    assert "end_of_edit" not in s1.action
    assert s2.action == "<function=find_file>\n<parameter=file_name>deletion.py</parameter>\n</function>"
    assert t.steps[-1].action == "<function=submit>\n</function>" and t.steps[-1].meta["role"] == "Manager"
    assert t.patch and "instance.pk = None" in t.patch


def test_golden_sweagent_1x(shared_data):
    (t,) = _one(shared_data, "swesmith_samples/trajectories/pandas-dev__pandas.95280573.pr_53856/"
                             "pandas-dev__pandas.95280573.pr_53856.traj")
    assert t.format == "sweagent_1x" and t.resolved is False and t.meta["has_query"]
    assert t.issue.startswith("BUG: to_sql fails with arrow date column")
    assert t.steps[1].action == ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                                 "<parameter=path>/testbed/pandas/io/sql.py</parameter>\n</function>")
    assert t.steps[2].observation == "1030:    def insert_data(self) -> tuple[list[str], list[np.ndarray]]:"
    assert isinstance(t.steps[0].meta["query"], list)
    (m,) = _one(shared_data, "sweagent_traj/sweagent_official_demos/trajectories/demonstrations/replay__marshmallow-"
                             "code__marshmallow-1867__function_calling_replace_from_source/marshmallow-code__"
                             "marshmallow-1867.traj")
    assert m.steps[1].action == "<function=open>\n<parameter=path>setup.py</parameter>\n</function>"
    assert m.meta["image"].startswith("swebench/sweb.eval.x86_64.marshmallow-code_1776_marshmallow-1867")


def test_golden_minisweagent(shared_data):
    (t,) = _one(shared_data, "minisweagent_traj/deepseek-chat_swebench_lite_first100/django__django-14915/"
                             "django__django-14915.traj.json")
    assert t.format == "minisweagent" and t.resolved is True and len(t.steps) == 53
    assert t.steps[0].action == ("<function=bash>\n<parameter=command>find /testbed -type f -name \"*.py\" | grep -i "
                                 "modelchoice | head -20</parameter>\n</function>")
    assert t.steps[0].observation == ("<returncode>0</returncode>\n<output>\n/testbed/tests/model_forms/"
                                      "test_modelchoicefield.py\n</output>")
    assert t.steps[-1].action == "<function=submit>\n</function>"
    assert t.steps[-1].raw_action.startswith("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")


def test_golden_openhands(shared_data):
    (path,) = (shared_data / ROOT).glob("openhands_llm_completions/*/llm_completions/django__django-11206/*.json")
    (t,) = read_trajectories(path)
    assert t.format == "openhands_completions" and t.instance_id == "django__django-11206" and len(t.steps) == 16
    assert t.steps[0].action == "<function=bash>\n<parameter=command>ls -R /workspace/django__django__3.0</parameter>\n</function>"
    assert t.steps[0].observation.startswith("ls -R /workspace/django__django__3.0\r\n/workspace/django__django__3.0:")
    assert t.steps[1].action == ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>"
                                 "/workspace/django__django__3.0/django/utils/numberformat.py</parameter>\n</function>")
    assert t.steps[-1].tool == "finish" and t.steps[-1].observation is None  # the final response's call
    rows = _one(shared_data, "openhands_output_jsonl/multi_swe_bench_example/output.jsonl")
    assert [r.instance_id for r in rows] == ["ponylang__ponyc-4595", "ponylang__ponyc-4593"]
    r = rows[0]
    assert r.meta["excluded_actions"] == {"think": 1} and r.repo == "ponylang/ponyc"
    assert r.steps[0].action == "<function=bash>\n<parameter=command>ls -l /workspace/ponylang__ponyc__0.1</parameter>\n</function>"
    assert r.steps[0].observation.startswith("total 300\n")
    assert r.steps[-1].tool == "finish" and r.patch.startswith("diff --git a/src/libponyc/ast/parser.c")


def test_golden_swesmith_sft(shared_data):
    rows = _one(shared_data, "swesmith_samples/ft_xml_example.jsonl")
    t = rows[0]
    assert t.format == "swesmith_sft" and t.instance_id == "pandas-dev__pandas.95280573.pr_53652" and t.resolved
    assert t.steps[1].action == ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>"
                                 "/testbed/pandas/core/indexes/base.py</parameter>\n<parameter=view_range>[6035, 6050]"
                                 "</parameter>\n</function>")
    assert rows[1].steps[0].observation.startswith("/testbed/docs/conf.py")  # "Observation: " prefix stripped
    assert t.steps[-1].action == "<function=submit>\n</function>"


@pytest.mark.parametrize("text,expected", [
    ("open \"setup.py\"", "<function=open>\n<parameter=path>setup.py</parameter>\n</function>"),
    ("goto 120\n", "<function=goto>\n<parameter=line_number>120</parameter>\n</function>"),
    ("scroll_down", "<function=scroll_down>\n</function>"),
    ('search_dir "translation.E004"', "<function=search_dir>\n<parameter=search_term>translation.E004</parameter>\n</function>"),
    ("search_file foo src/a.py", "<function=search_file>\n<parameter=search_term>foo</parameter>\n<parameter=file>src/a.py</parameter>\n</function>"),
    ("create reproduce.py", "<function=create>\n<parameter=filename>reproduce.py</parameter>\n</function>"),
    ("edit 3:4\n    x = 1\n\nend_of_edit", "<function=edit>\n<parameter=start_line>3</parameter>\n<parameter=end_line>4</parameter>\n<parameter=replacement_text>    x = 1</parameter>\n</function>"),
    ("str_replace_editor view /t/a.py  --view_range 5 9", "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/t/a.py</parameter>\n<parameter=view_range>[5, 9]</parameter>\n</function>"),
    ("rover_search_class /repo Mul", "<function=bash>\n<parameter=command>rover_search_class /repo Mul</parameter>\n</function>"),
    ("mkdir app\ntouch app/x.py", "<function=bash>\n<parameter=command>mkdir app\ntouch app/x.py</parameter>\n</function>"),
    ("search_dir a b c d", "<function=bash>\n<parameter=command>search_dir a b c d</parameter>\n</function>"),
])
def test_aci_parsing(text, expected):
    assert parse_sweagent_action(text).to_text() == expected


@pytest.mark.parametrize("name,content,reason", [
    ("bad.traj", "{not json", "invalid JSON"),
    ("empty.traj", "", "invalid JSON"),
    ("list.traj", "[1, 2]", "unrecognized trajectory format"),
    ("nohist.traj", json.dumps({"trajectory": [], "info": {}}), "no 'history'"),
    ("badstep.traj", json.dumps({"trajectory": [{"action": 3}], "history": [], "info": {}}), "trajectory[0].action"),
    ("mini.traj.json", json.dumps({"trajectory_format": "mini-swe-agent-1", "messages": [{"role": "system"}]}),
     "no user message"),
    ("bin.traj", b"\xff\xfe\x00garbage", "invalid JSON"),
    ("bin2.traj", b"{\"a\": \"\xff\"}", "not UTF-8"),
])
def test_malformed_files_give_one_line_reason(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    items = list(iter_file(p))
    assert len(items) == 1 and isinstance(items[0][1], TrajectoryFormatError)
    msg = str(items[0][1])
    assert reason in msg and str(p) in msg and "\n" not in msg
    with pytest.raises(TrajectoryFormatError):
        read_trajectories(p)


def test_jsonl_bad_row_skips_only_that_row(tmp_path, shared_data):
    good = (shared_data / ROOT / "swesmith_samples/ft_xml_example.jsonl").read_text().splitlines()[0]
    p = tmp_path / "mixed.jsonl"
    p.write_text(good + "\n{broken\n" + json.dumps({"foo": 1}) + "\n" + json.dumps({"messages": "not json",
                                                                                   "instance_id": "x"}) + "\n")
    items = list(iter_file(p))
    assert [isinstance(i, TrajectoryFormatError) for _, i in items] == [False, True, True, True]
    assert [k.rsplit(":", 1)[1] for k, _ in items] == ["1", "2", "3", "4"]


def test_build_messages_history_and_truncation():
    hist = [(f"<function=bash>\n<parameter=command>c{i}</parameter>\n</function>", "o" * 50 if i else None)
            for i in range(5)]
    msgs = build_messages("the issue", hist)
    assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [m["role"] for m in msgs] == ["system", "user"] + ["assistant", "user"] * 5
    assert msgs[3]["content"] == "[no observation recorded]"
    k2 = build_messages("the issue", hist, history_k=2, obs_max_chars=10)
    assert len(k2) == 6 and "[3 earlier action/observation round(s) omitted]" in k2[1]["content"]
    assert k2[2]["content"].endswith("c3</parameter>\n</function>")
    assert k2[3]["content"] == "ooooo\n[... 40 chars truncated ...]\nooooo"
    assert len(build_messages("i", hist, history_k=0)) == 2
    assert truncate_middle_chars("abc", 5) == "abc"


# -- the bundled sample trajectories (never skip) --------------------------------------------------------------
def test_every_bundled_sample_parses_with_action_counts(sample_trajectories):
    files, ignored = discover([sample_trajectories[0].parents[1]])
    assert sorted(f.path for f in files) == sorted(sample_trajectories)
    assert all(f.endswith("task.json") for f in ignored) and len(ignored) == 4
    formats = Counter()
    for f in files:
        got = []
        for unit, item in iter_file(f.path):
            assert not isinstance(item, Exception), item
            assert unit == str(f.path)
            got.append(len(item.steps))
            formats[item.format] += 1
            for st in item.steps:
                assert st.action.startswith(f"<function={st.tool}>") and st.action.endswith("</function>")
                assert parse_completion("<think>x</think>" + st.action, expect_tool_call=True).action == st.action
        assert got == _expected_actions(f.path), f.path
    assert formats == {"minisweagent": 2, "sweagent_1x": 2}


def test_golden_bundled_minisweagent(sample_trajectories):
    path = next(p for p in sample_trajectories if p.parent.name == "sample__intervals-1")
    raw = json.loads(path.read_text())
    (t,) = read_trajectories(path)
    assert (t.format, t.instance_id, t.repo, t.resolved) == ("minisweagent", "sample__intervals-1", "sample/intervals",
                                                            None)
    assert "merge() keeps intervals that touch at an end point apart" in t.issue
    assert "<pr_description>" not in t.issue
    calls = [m for m in raw["messages"] if m["role"] == "assistant"]
    tools = [m for m in raw["messages"] if m["role"] == "tool"]
    assert [s.tool for s in t.steps] == ["bash"] * len(calls)
    for s, c, o in zip(t.steps, calls, tools):
        cmd = json.loads(c["tool_calls"][0]["function"]["arguments"])["command"]
        assert s.action == f"<function=bash>\n<parameter=command>{cmd}</parameter>\n</function>"
        assert s.observation == o["content"]
        assert s.thought and "```bash" not in s.action
    assert t.patch == raw["info"]["submission"]


def test_golden_bundled_sweagent_1x(sample_trajectories):
    path = next(p for p in sample_trajectories if p.parent.name == "sample__moneyfmt-3")
    raw = json.loads(path.read_text())
    (t,) = read_trajectories(path)
    assert (t.format, t.instance_id, t.repo) == ("sweagent_1x", "sample__moneyfmt-3", "sample/moneyfmt")
    task = json.loads((path.parent / "task.json").read_text())
    assert t.base_commit == task["base_commit"] and t.meta["image"] == "python:3.11-slim"
    assert [s.tool for s in t.steps] == [x["messages"][-2]["tool_calls"][0]["function"]["name"]
                                         for x in raw["trajectory"]]
    first = t.steps[0]
    args = json.loads(raw["trajectory"][0]["messages"][-2]["tool_calls"][0]["function"]["arguments"])
    assert first.tool == "str_replace_editor" and f"<parameter=path>{args['path']}</parameter>" in first.action
    assert first.observation == raw["trajectory"][0]["observation"]
    assert t.steps[-1].tool == "submit" and t.patch == raw["info"]["submission"]
