"""`swe-srl collect` on downloaded trajectory *datasets*: row files (.parquet / .arrow / .jsonl / .json arrays),
--dataset hub ids, the generic chat-row reader and its adapters, success / ids / model filters, eval-set
decontamination, future-leak steps, per-format prompts and the 32k-token warning.

Real rows: ``../shared/data/swe_trajectories/hf_dataset_rows/`` (nine datasets; tests skip without it), counted
here independently from the raw JSON. Layouts absent there (nebius SWE-rebench-openhands and CoderForge: described
by their columns only; R2E-Gym SFT, nvidia SWE-Hero / Open-SWE-Traces: absent) are small fixtures authored from
their documented layouts in ``tests/fixtures/hf_rows/`` — the SWE-Hero / Open-SWE-Traces fixture assumes a plain
OpenAI chat layout since no schema of those sets was at hand.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from environments.collect import FILTER_REASONS, CollectError, CollectOptions, build_steps, collect_swe
from environments.prompting import SYSTEM_PROMPT
from environments.trajectories import discover, iter_file, read_trajectories
from environments.trajectories.datasets import iter_json_array, iter_row_file, row_success
from swe_srl.cli import app
from swe_srl.core import read_steps

HF = "swe_trajectories/hf_dataset_rows"
FIX = Path(__file__).parent / "fixtures" / "hf_rows"
FAST = dict(history_k=2, obs_max_chars=400)


def _ledger(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]


# -- independent action counts from the raw rows -----------------------------------------------------------------
def _msgs(row: dict) -> list[dict]:
    for k in ("messages", "trajectory"):
        v = row.get(k)
        if isinstance(v, str):
            v = json.loads(v)
        if isinstance(v, list):
            return v
    raise AssertionError(sorted(row))


def _text(m: dict) -> str:
    c = m.get("content", m.get("text"))
    if isinstance(c, list):
        return "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c or ""


def raw_action_count(row: dict) -> int:
    """Agent actions of one raw row, counted from its own protocol (think / prose-only turns are not actions)."""
    msgs = _msgs(row)
    calls = [tc for m in msgs if m.get("role") == "assistant" for tc in (m.get("tool_calls") or [])]
    if calls:
        return sum(1 for tc in calls if tc["function"]["name"] != "think")
    if any(m.get("role") == "ai" for m in msgs):                                       # nebius SWE-agent
        return sum(1 for m in msgs if m.get("role") == "ai" and "```" in (m.get("text") or ""))
    if "fail" in row and "exp_name" in row:                                              # MoatlessTools
        return sum(1 for m in msgs if m["role"] == "assistant")
    asst = [_text(m) for m in msgs if m["role"] == "assistant"]
    if any("```bash" in t for t in asst):                                                # mini-swe-agent text
        return sum(1 for t in asst if "```bash" in t or "<function=" in t)
    return sum(t.count("<function=") - t.count("<function=think>") for t in asst)      # XML text calls


def test_every_hf_dataset_folder_collects(shared_data, tmp_path):
    """Each dataset folder: the default run skips only what a filter names; with every row kept, 0 rows are
    skipped and each row's actions (= steps) equal the independent count from the raw rows."""
    folders = sorted(p for p in (shared_data / HF).iterdir() if p.is_dir())
    assert len(folders) == 9
    formats = set()
    for folder in folders:
        rows = [r for f in sorted(folder.glob("*.json")) for r in json.loads(f.read_text())]
        default = collect_swe([str(folder)], tmp_path / folder.name / "d", CollectOptions(**FAST), progress=False)
        reasons = {r for pf in default["trajectories"]["per_format"].values() for r in pf["skip_reasons"]}
        assert reasons <= set(FILTER_REASONS), (folder.name, reasons)
        out = tmp_path / folder.name / "all"
        m = collect_swe([str(folder)], out, CollectOptions(**FAST, only_resolved=False), progress=False)
        t = m["trajectories"]
        assert (t["read"], t["skipped"]) == (len(rows), 0), (folder.name, t)
        got = [e["n_actions"] for e in _ledger(out)]
        assert got == [raw_action_count(r) for r in rows], folder.name
        assert m["steps"]["total"] == sum(got) == len(read_steps(out / "steps.jsonl"))
        formats |= set(t["per_format"])
    assert formats == {"chat_tools", "swesmith_sft", "openhands_text", "sweagent_text", "minisweagent", "moatless"}


def test_success_fields_of_real_rows(shared_data):
    by = {}
    for folder in sorted((shared_data / HF).iterdir()):
        for f in sorted(folder.glob("*.json")):
            for _, t in iter_file(f):
                by.setdefault(folder.name, []).append((t.resolved, t.meta["success_field"]))
    assert set(by["nebius__SWE-agent-trajectories"]) == {(True, "target")}
    assert set(by["SWE-Gym__OpenHands-Sampled-Trajectories"]) == {(True, "resolved")}
    assert set(by["ricdomolm__mini-coder-trajs-400k"]) == {(True, "verified")}
    assert set(by["SWE-Gym__MoatlessTools-Sampled-Trajectories"]) == {(False, "fail")}       # fail: true
    assert set(by["nvidia__SWE-Zero-openhands-trajectories"]) == {(None, None)}              # execution-free
    smith = by["SWE-bench__SWE-smith-trajectories"]
    assert smith[:5] == [(True, "resolved")] * 5       # the row's own flag (the old reader ignored it)
    assert {f for _, f in smith[5:]} == {"dataset:SWE-bench/SWE-smith-trajectories (all successful)"}


def _smith_rows(shared_data) -> list[dict]:
    rows = json.loads((shared_data / HF / "SWE-bench__SWE-smith-trajectories" / "sample_raw.json").read_text())
    return [{**r, "messages": json.dumps(r["messages"])} for r in rows]      # the hub stores messages as a string


def test_swesmith_rows_as_parquet_and_arrow_cli(shared_data, tmp_path):
    rows = _smith_rows(shared_data)
    rows[1] = {**rows[1], "resolved": False}
    table = pa.Table.from_pylist(rows)
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(table, d / "xml-00000-of-00001.parquet", row_group_size=2)
    with pa.OSFile(str(d / "data.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table, max_chunksize=2)                  # the datasets cache layout (IPC stream)
    want = [raw_action_count(r) for r in rows]
    runner = CliRunner()
    for name in ("xml-00000-of-00001.parquet", "data.arrow"):
        out = tmp_path / f"o_{name}"
        r = runner.invoke(app, ["collect", "--trajectories", str(d / name), "--out", str(out),
                                "--no-progress", "--history", "2"])
        assert r.exit_code == 0, r.output
        m = json.loads((out / "manifest.json").read_text())
        pf = m["trajectories"]["per_format"]["swesmith_sft"]
        # --only-resolved is on by default for dataset inputs and honours each row's own flag
        assert (pf["read"], pf["used"], pf["skip_reasons"]) == (5, 4, {"not_resolved": 1})
        led = _ledger(out)
        assert [e["unit"] for e in led] == [f"{d / name}:{i}" for i in range(1, 6)]
        assert [e["n_actions"] for e in led] == want
        assert m["steps"]["total"] == sum(w for i, w in enumerate(want) if i != 1)
        assert m["filters"] == {"not_resolved": 1}
    # a directory of dataset files
    m = collect_swe([str(d)], tmp_path / "dir", CollectOptions(**FAST, only_resolved=False), progress=False)
    assert m["files"]["input_files"] == 2 and m["trajectories"]["read"] == 10


def test_streamed_json_array_reader_equals_json_load(shared_data, tmp_path):
    p = shared_data / HF / "StephenZhu__SWE-Play-trajectories" / "sample_raw.json"
    assert list(iter_json_array(p, chunk=997)) == json.loads(p.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text('[{"messages": [], "instance_id": "a"}, {"oops"')
    items = list(iter_file(bad))
    assert [type(x).__name__ for _, x in items][-1] == "TrajectoryFormatError"
    assert "invalid JSON" in str(items[-1][1]) and "\n" not in str(items[-1][1])


def test_coder_issue_turn_and_rover_tool(shared_data, tmp_path):
    trajs = shared_data / "swe_trajectories/sweagent_traj/coder_swebench_lite/trajs"
    (t,) = read_trajectories(trajs / "django__django-11179.traj")
    recs, info = build_steps(t)
    issue_turn = recs[0].prompt[1]["content"]
    assert "delete() on instances of models without any dependencies doesn't clear PKs." in issue_turn
    for manager_text in ("INSTRUCTION:", "Plan one", "end_of_plan", "IMPORTANT TIPS", "Programmer"):
        assert manager_text not in issue_turn
    assert len(issue_turn) < 600
    assert info["excluded_actions"] == {"plan": 2, "succeed": 2}
    (s,) = read_trajectories(trajs / "sympy__sympy-17655.traj")
    rover = [st for st in s.steps if st.raw_action.startswith("rover_search_class")]
    assert rover and all(st.tool == "rover_search_class" for st in rover)
    assert rover[0].action == ("<function=rover_search_class>\n<parameter=class_name>Mul</parameter>\n"
                               "<parameter=project_path>/sympy__sympy</parameter>\n</function>")
    sp = build_steps(s)[0][0].prompt[0]["content"]
    assert "- rover_search_class: a command of this agent.  <parameter=project_path>  <parameter=class_name>" in sp
    # non-actions are counted by kind in the manifest (actions == steps, non-actions apart)
    m = collect_swe([str(trajs / "django__django-11179.traj"), str(trajs / "sympy__sympy-17655.traj")],
                    tmp_path / "c", CollectOptions(**FAST), progress=False)
    non = m["steps"]["non_actions_not_steps"]
    assert non["plan"] >= 2 and non["succeed"] >= 2
    assert m["steps"]["total"] == sum(pf["actions"] for pf in m["trajectories"]["per_format"].values())


# -- authored fixtures (no shared data needed) ------------------------------------------------------------------
def _read(name: str):
    return [t for _, t in iter_file(FIX / name)]


def test_fixture_layouts_map_tools_and_observations():
    tool, tool_bad = _read("swesmith_tool.jsonl")
    assert tool.format == "chat_tools" and (tool.resolved, tool_bad.resolved) == (True, False)
    assert [s.tool for s in tool.steps] == ["str_replace_editor", "str_replace_editor", "bash", "submit"]
    assert tool.steps[0].observation.startswith("Here's the result of running `cat -n`")   # prefix stripped
    assert tool.issue == "Calling `fmt.money(-0)` prints `-$0.00` instead of `$0.00`."
    (ticks,) = _read("swesmith_ticks.jsonl")
    assert ticks.format == "swesmith_ticks" and ticks.meta["excluded_actions"] == {"message": 1}
    assert ticks.steps[0].action == ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                                     "<parameter=path>/testbed/fmt.py</parameter>\n<parameter=view_range>[1, 2]"
                                     "</parameter>\n</function>")
    assert ticks.steps[0].observation.startswith("     1\tdef money")
    assert [s.tool for s in ticks.steps] == ["str_replace_editor", "bash", "submit"]
    reb, reb0 = _read("nebius_rebench_openhands.jsonl")        # JSON-string trajectory + tools, resolved int
    assert reb.format == "chat_tools" and (reb.resolved, reb0.resolved) == (True, False)
    assert [s.tool for s in reb.steps] == ["bash", "str_replace_editor", "bash", "finish"]
    assert reb.meta["excluded_actions"] == {"think": 1}
    assert "Negative zero keeps its sign" in reb.steps[0].thought           # think text joins the next action
    assert [s.observation for s in reb.steps[1:3]] == ["     1\tdef money(x):", "On branch main"]  # by call id
    assert reb.meta["tools_available"] == ["bash", "str_replace_editor", "finish"]
    cf, cf_half = _read("coderforge.jsonl")                     # dict arguments, reward float
    assert (cf.resolved, cf_half.resolved, cf.meta["success_field"]) == (True, False, "reward")
    assert cf.steps[0].tool == "search_code"                    # unknown tool: its own name, never bash
    assert cf.steps[0].action == ("<function=search_code>\n<parameter=path>/repo</parameter>\n"
                                  "<parameter=query>def money</parameter>\n</function>")
    (r2e,) = [t for _, t in iter_file(FIX / "R2E-Gym__R2EGym-SFT-Trajectories" / "train.jsonl")]
    assert r2e.format == "r2egym" and r2e.resolved is True      # documented as all successful
    assert [s.tool for s in r2e.steps] == ["search", "str_replace_editor", "bash", "finish"]
    assert r2e.steps[2].action == "<function=bash>\n<parameter=command>python -c 'import fmt'</parameter>\n</function>"
    assert r2e.steps[0].observation.startswith("Found 1 matches")
    (hero,) = _read("swe_hero_open_swe_traces.jsonl")           # tool messages without ids: matched in order
    assert [s.observation for s in hero.steps] == ["fmt.py", None]


def test_success_ids_and_model_filters(tmp_path):
    files = [str(FIX / n) for n in ("swesmith_tool.jsonl", "nebius_rebench_openhands.jsonl", "coderforge.jsonl")]
    m = collect_swe(files, tmp_path / "a", CollectOptions(**FAST), progress=False)
    pf = m["trajectories"]["per_format"]["chat_tools"]
    assert (pf["read"], pf["used"], pf["skip_reasons"]) == (6, 3, {"not_resolved": 3})      # on by default
    m = collect_swe(files, tmp_path / "b", CollectOptions(**FAST, only_resolved=False), progress=False)
    assert m["trajectories"]["skipped"] == 0
    ids = tmp_path / "ids.txt"
    ids.write_text("sample__moneyfmt.a1b2c3d4.func_pm__x1\nsample__moneyfmt-21\n")
    m = collect_swe(files, tmp_path / "c", CollectOptions(**FAST, ids_file=str(ids)), progress=False)
    assert m["trajectories"]["used"] == 2 and m["filters"] == {"not_in_ids_file": 4}
    m = collect_swe(files, tmp_path / "d", CollectOptions(**FAST, model_filter=r"^claude-3-7"), progress=False)
    assert m["filters"] == {"model_filtered": 4, "not_resolved": 1} and m["trajectories"]["used"] == 1
    with pytest.raises(CollectError, match="--model-filter"):
        collect_swe(files, tmp_path / "e", CollectOptions(model_filter="("), progress=False)
    # success field rules
    assert row_success({"reward": 1.0}) == (True, "reward") and row_success({"reward": 0.99})[0] is False
    assert row_success({"resolved": 1}) == (True, "resolved") and row_success({"fail": True}) == (False, "fail")
    assert row_success({}, split="filtered_reward1") == (True, "split:filtered_reward1")
    assert row_success({}, dataset="R2E-Gym/R2EGym-SFT-Trajectories")[0] is True
    assert row_success({"ok": "yes"}, field="ok") == (True, "ok") and row_success({"x": 1}, field="all")[0]


def test_split_name_success_from_file_layout(tmp_path):
    rows = [json.loads(x) for x in (FIX / "coderforge.jsonl").read_text().splitlines()]
    rows = [{**r, "messages": json.dumps(r["messages"])} for r in rows]
    for r in rows:
        r.pop("reward")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "filtered_reward1-00000-of-00001.parquet")
    ts = [t for _, t in iter_file(tmp_path / "filtered_reward1-00000-of-00001.parquet")]
    assert [(t.resolved, t.meta["success_field"]) for t in ts] == [(True, "split:filtered_reward1")] * 2


def test_exclude_eval_sets(shared_data, tmp_path):
    root = shared_data / "swe_trajectories"
    oh, mini = root / "openhands_llm_completions", root / "minisweagent_traj"
    m = collect_swe([str(oh), str(mini)], tmp_path / "a", CollectOptions(**FAST, exclude_eval="verified,lite"),
                    progress=False)
    # an instance in both sets is named by the first set given
    assert sum(m["hazards"]["eval_contaminated"].values()) == 89 and m["hazards"]["eval_contaminated"]["verified"] >= 40
    assert m["trajectories"]["used"] == 0 and m["filters"] == {"eval_contaminated": 89}
    m = collect_swe([str(oh), str(mini)], tmp_path / "a2", CollectOptions(**FAST, exclude_eval="lite"), progress=False)
    assert m["hazards"]["eval_contaminated"]["lite"] >= 49 and m["trajectories"]["used"] > 0
    ids = tmp_path / "my_eval.jsonl"
    ids.write_text(json.dumps({"instance_id": "django__django-14915"}) + "\n")
    m = collect_swe([str(mini)], tmp_path / "b", CollectOptions(**FAST, exclude_eval=str(ids)), progress=False)
    assert m["hazards"]["eval_contaminated"] == {"my_eval.jsonl": 1} and m["trajectories"]["used"] == 48
    # ADP-suffixed ids of SWE-Gym rows are not SWE-bench instances: nothing dropped
    m = collect_swe([str(root / "hf_dataset_rows" / "SWE-Gym__OpenHands-Sampled-Trajectories")], tmp_path / "c",
                    CollectOptions(**FAST, exclude_eval="verified,lite"), progress=False)
    assert m["hazards"]["eval_contaminated"] == {} and m["trajectories"]["used"] == 5
    with pytest.raises(CollectError, match="--exclude-eval nope"):
        collect_swe([str(mini)], tmp_path / "d", CollectOptions(exclude_eval="nope"), progress=False)


def test_future_leak_policies(tmp_path):
    src = [str(FIX / "future_leak.jsonl")]
    m = collect_swe(src, tmp_path / "a", CollectOptions(), progress=False)
    assert m["filters"] == {"future_leak": 1} and m["trajectories"]["used"] == 1
    assert m["hazards"]["future_leak"] == {"trajectories_with_leak": 1, "trajectories_dropped": 1,
                                           "steps_dropped": 0, "leak_steps": 2}
    assert "step 0 lists 1 commit(s) newer than the base commit" in (tmp_path / "a" / "ledger.jsonl").read_text()
    m = collect_swe(src, tmp_path / "b", CollectOptions(future_leak="drop-steps"), progress=False)
    recs = read_steps(tmp_path / "b" / "steps.jsonl")
    leaky = [r for r in recs if r.instance_id == "sample__moneyfmt-51"]
    assert len(leaky) == 2 and m["hazards"]["future_leak"]["steps_dropped"] == 2
    assert all("9999999" not in msg["content"] for r in leaky for msg in r.prompt)    # not in any history either
    m = collect_swe(src, tmp_path / "c", CollectOptions(future_leak="keep"), progress=False)
    assert m["steps"]["total"] == 6 and m["hazards"]["future_leak"]["leak_steps"] == 2


def test_prompts_document_the_formats_tools(sample_trajectories, tmp_path):
    mini = next(p for p in sample_trajectories if p.name.endswith(".traj.json"))
    swea = next(p for p in sample_trajectories if p.suffix == ".traj")
    sp_mini = build_steps(read_trajectories(mini)[0])[0][0].prompt[0]["content"]
    sp_swea = build_steps(read_trajectories(swea)[0])[0][0].prompt[0]["content"]
    assert "fresh subshell" in sp_mini and "- bash:" in sp_mini and "- submit:" in sp_mini
    for other in ("- str_replace_editor:", "- open:", "- scroll_up", "- goto:", "- finish:"):
        assert other not in sp_mini
    assert "persistent shell" in sp_swea and "- str_replace_editor:" in sp_swea and "- goto:" not in sp_swea
    assert sp_mini != SYSTEM_PROMPT and len(sp_mini) < len(SYSTEM_PROMPT) / 2
    (reb, _) = _read("nebius_rebench_openhands.jsonl")
    (cf, _) = _read("coderforge.jsonl")
    assert "- finish:" in build_steps(reb)[0][0].prompt[0]["content"]
    assert "- search_code: a tool of this agent.  <parameter=path>  <parameter=query>" in \
        build_steps(cf)[0][0].prompt[0]["content"]


def test_long_prompts_warn_loudly_and_token_percentiles(tmp_path):
    row = json.loads((FIX / "swe_hero_open_swe_traces.jsonl").read_text().splitlines()[0])
    msgs = json.loads(row["messages"])
    msgs[3]["content"] = "x" * 130_000                           # one 130k-char observation: > 32k tokens after it
    p = tmp_path / "long.jsonl"
    p.write_text(json.dumps({**row, "messages": msgs}) + "\n")
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["collect", "--trajectories", str(p), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    st = m["prompt_tokens_per_format"]["chat_tools"]
    assert st["count"] == 2 and st["over_32k"] == 1 and st["method"].startswith("estimate")
    assert m["warnings"] and "--max-prompt-tokens 32768" in m["warnings"][0]
    assert "WARNING" in r.output and "--max-prompt-tokens" in r.output


def test_dataset_hub_unreachable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")        # nothing listens there: unreachable at once
    r = CliRunner().invoke(app, ["collect", "--dataset", "SWE-bench/SWE-smith-trajectories@tool", "--out",
                                 str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code == 2
    msg = [x for x in r.output.splitlines() if "--dataset" in x]
    assert msg and "cannot be reached" in r.output and "--trajectories" in r.output
    r = CliRunner().invoke(app, ["collect", "--dataset", "not a valid id!", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "HF_ID[:config][@split]" in r.output


def _many_rows(n: int) -> list[dict]:
    base = [json.loads(x) for x in (FIX / "nebius_rebench_openhands.jsonl").read_text().splitlines()]
    return [{**base[i % 2], "instance_id": f"sample__moneyfmt-{1000 + i}"} for i in range(n)]


def test_dataset_file_resumes_by_row(tmp_path):
    f = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(_many_rows(40)), f, row_group_size=7)
    assert len(list(iter_row_file(f))) == 40
    opts = dict(history_k=2, only_resolved=False)
    ref = tmp_path / "ref"
    collect_swe([str(f)], ref, CollectOptions(**opts), progress=False)
    out = tmp_path / "resumed"
    m = collect_swe([str(f)], out, CollectOptions(**opts, limit=13), progress=False)
    assert m["trajectories"]["read"] == 13
    m = collect_swe([str(f)], out, CollectOptions(**opts), progress=False)
    assert m["this_run"]["units_ok"] == 27 and m["trajectories"]["read"] == 40
    assert (out / "steps.jsonl").read_bytes() == (ref / "steps.jsonl").read_bytes()
    assert Counter(e["unit"].rsplit(":", 1)[1] for e in _ledger(out)) == Counter(str(i) for i in range(1, 41))


def test_dataset_discovery_keeps_native_walks_unchanged(shared_data):
    """A walk of the native trajectories root ignores dataset .json arrays beside them (reports/configs are .json
    too); a dataset folder walked on its own yields its .json arrays."""
    files, _ = discover([shared_data / "swe_trajectories"])
    assert not any(str(f.path).endswith("sample_raw.json") for f in files)
    files, _ = discover([shared_data / HF])
    assert len(files) == 10 and all(str(f.path).endswith(".json") for f in files)


def test_cli_dataset_options(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("sample__moneyfmt-11\nsample__moneyfmt-12\nsample__moneyfmt-21\n")
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["collect", "--trajectories", str(FIX / "nebius_rebench_openhands.jsonl"),
                                 "--trajectories", str(FIX / "coderforge.jsonl"), "--out", str(out), "--no-progress",
                                 "--no-only-resolved", "--ids-file", str(ids), "--model-filter", "^qwen",
                                 "--future-leak", "keep", "--success-field", "auto", "--format", "chat_tools"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    # rows naming no model (the rebench fixture) do not pass a --model-filter
    assert m["trajectories"]["used"] == 1 and m["filters"] == {"not_in_ids_file": 1, "model_filtered": 2}
    assert m["options"]["only_resolved"] is False and m["options"]["future_leak"] == "keep"
    assert "non-actions (not steps): think=2" in r.output
    r = CliRunner().invoke(app, ["collect", "--trajectories", str(FIX), "--out", str(tmp_path / "x"),
                                 "--future-leak", "sometimes"])
    assert r.exit_code == 2 and "--future-leak" in r.output
